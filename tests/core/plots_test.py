"""Tests for twr_jax.core.plots and the launch.plot launcher."""

import json
import os
import subprocess
import sys

from matplotlib import image as mpl_image
import numpy as np
import pytest

from twr_jax.core import plots

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _records(scale=1.0, steps=(10, 20, 30, 40)):
  """A synthetic metrics.jsonl: train every step, valid every other one."""
  records = []
  for step in steps:
    records.append({'step': step, 'split': 'train', 'loss': 90 * scale / step,
                    'rec': 80.0, 'kl': 5.0 * scale, 'kl_twr': 2.0 * scale})
    if step % 20 == 0:
      records.append({'step': step, 'split': 'valid',
                      'loss': 95 * scale / step,
                      'kl': 4.0 * scale, 'mi': float('nan') if step == 20
                      else 3.0, 'au': 7, 'ppl': 120.0})
  records.append({'step': steps[-1], 'split': 'test', 'loss': 1.0})
  return records


def _profile(peak):
  bins = list(np.linspace(0.05, 0.95, 10))
  return {'bins': bins, 'kl': [peak * b * (1 - b) for b in bins]}


def _interpolation():
  alphas = [round(0.1 * i, 1) for i in range(11)]
  fall = [1 - a for a in alphas]
  return {
      'alphas': alphas,
      'rouge': {
          'x1': {'rouge1': fall, 'rouge2': [0.8 * v for v in fall],
                 'rougeL': [0.9 * v for v in fall]},
          'x2': {'rouge1': fall[::-1], 'rouge2': [0.8 * v for v in fall[::-1]],
                 'rougeL': [0.9 * v for v in fall[::-1]]},
      },
      'num_pairs': 2,
  }


def _assert_png(path, min_width=500, min_height=350):
  assert os.path.getsize(path) > 0
  pixels = mpl_image.imread(path)
  height, width = pixels.shape[:2]
  assert width >= min_width and height >= min_height, (width, height)
  # Something was drawn: the image is not one flat colour.
  assert pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max() > 0.05


def test_training_curves(tmp_path):
  path = tmp_path / 'new' / 'dir' / 'curves.png'
  runs = {':twr': _records(), ':vae': _records(scale=2.0),
          # A run that logged no MI, AU or kl_twr is drawn where it can be.
          'sparse': [{'step': 5, 'split': 'train', 'loss': 3.0}]}
  assert plots.plot_training_curves(runs, path) == path
  _assert_png(path, min_width=1200, min_height=850)


def test_training_curves_with_no_records(tmp_path):
  path = plots.plot_training_curves({'empty': []}, tmp_path / 'empty.png')
  _assert_png(path, min_width=1200, min_height=850)


def test_kl_profile(tmp_path):
  path = tmp_path / 'kl.png'
  assert plots.plot_kl_profile({'twr': _profile(4.0), 'vae': _profile(1.0)},
                               path) == path
  _assert_png(path)


def test_kl_profile_rejects_ragged_profile(tmp_path):
  with pytest.raises(ValueError, match='3 x values but 2 y values'):
    plots.plot_kl_profile({'bad': {'bins': [0.1, 0.5, 0.9], 'kl': [1, 2]}},
                          tmp_path / 'bad.png')


def test_interpolation(tmp_path):
  path = str(tmp_path / 'interp.png')
  assert plots.plot_interpolation(_interpolation(), path) == path
  _assert_png(path)


def test_interpolation_rejects_ragged_curve(tmp_path):
  result = _interpolation()
  result['rouge']['x2']['rougeL'] = [0.5]
  with pytest.raises(ValueError, match='x2 rougeL'):
    plots.plot_interpolation(result, tmp_path / 'bad.png')


def _write_workdir(workdir, variant, records, splits=('test',),
                   interpolation=True, peak=3.0):
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    for record in records:
      f.write(json.dumps(record) + '\n')
  if variant is not None:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      json.dump({'variant': variant, 'model': {'latent': 4}}, f)
  for split in splits:
    with open(os.path.join(workdir, f'eval_{split}.json'), 'w') as f:
      json.dump({'standard': {'kl_profile': _profile(peak), 'kl': 1.0},
                 'compat': {'kl': 2.0}}, f)
  if interpolation:
    with open(os.path.join(workdir, 'interpolation.json'), 'w') as f:
      json.dump(_interpolation(), f)


def _run_launcher(*args):
  return subprocess.run(
      [sys.executable, '-m', 'launch.plot', *args], cwd=ROOT,
      capture_output=True, text=True, timeout=120,
  )


def test_launcher(tmp_path):
  main, other = str(tmp_path / 'run_twr'), str(tmp_path / 'run_vae')
  _write_workdir(main, 'twr', _records(), splits=('test', 'valid'))
  _write_workdir(other, 'vae', _records(scale=2.0), splits=('test',),
                 interpolation=False, peak=1.0)
  out = tmp_path / 'figures'
  result = _run_launcher(f'--workdir={main}', f'--compare={other}',
                         f'--out={out}')
  assert result.returncode == 0, result.stderr
  names = ['training_curves.png', 'kl_profile_test.png',
           'kl_profile_valid.png', 'interpolation.png']
  assert sorted(result.stdout.split()) == sorted(str(out / n) for n in names)
  for name in names:
    _assert_png(out / name)


def test_launcher_overlays_interpolations_of_compared_runs(tmp_path):
  main, other = str(tmp_path / 'run_twr'), str(tmp_path / 'run_bn')
  _write_workdir(main, 'twr', _records(), splits=())
  _write_workdir(other, 'bn_vae', _records(scale=2.0), splits=())
  out = tmp_path / 'figures'
  result = _run_launcher(f'--workdir={main}', f'--compare={other}',
                         f'--out={out}')
  assert result.returncode == 0, result.stderr
  names = ['training_curves.png', 'interpolation.png',
           'interpolation_compare.png']
  assert sorted(result.stdout.split()) == sorted(str(out / n) for n in names)
  _assert_png(out / 'interpolation_compare.png')


def test_launcher_names_missing_metrics(tmp_path):
  result = _run_launcher(f'--workdir={tmp_path}')
  assert result.returncode != 0
  assert os.path.join(str(tmp_path), 'metrics.jsonl') in result.stderr


def test_plot_workdirs_defaults_to_workdir_and_labels(tmp_path):
  # Two runs of one variant, and one without config.json.
  seeds = [str(tmp_path / name) for name in ('seed0', 'seed1', 'bare')]
  _write_workdir(seeds[0], 'twr', _records(), splits=(), interpolation=False)
  _write_workdir(seeds[1], 'twr', _records(), splits=(), interpolation=False)
  _write_workdir(seeds[2], None, _records(), splits=(), interpolation=False)
  assert plots._run_labels(seeds) == ['twr (seed0)', 'twr (seed1)', 'bare']
  written = plots.plot_workdirs(seeds[0], seeds[1:])
  assert written == [os.path.join(seeds[0], 'training_curves.png')]
  _assert_png(written[0])


def test_optional_dependencies_stay_optional():
  # Only twr_jax.core.plots may import matplotlib. nltk and rouge-score are
  # runtime dependencies (BLEU and ROUGE), imported where a score is
  # computed: nltk pulls in scipy.stats, over half of a launcher's start-up.
  # And without matplotlib, twr_jax.core.plots says how to get it.
  code = '''
import importlib, pkgutil, sys
import twr_jax
for module in pkgutil.walk_packages(twr_jax.__path__, 'twr_jax.'):
  if module.name != 'twr_jax.core.plots':
    importlib.import_module(module.name)
# Not scipy itself: JAX's own imports are not ours to pin (nltk brought it).
loaded = sorted({m.split('.')[0] for m in sys.modules}
                & {'matplotlib', 'nltk', 'rouge_score'})
assert not loaded, loaded
sys.modules['matplotlib'] = None  # Makes `import matplotlib` fail.
try:
  import twr_jax.core.plots
except ImportError as e:
  assert "pip install 'twr_jax[plots]'" in str(e), e
else:
  raise AssertionError('twr_jax.core.plots imported without matplotlib')
'''
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
