"""The README's library example runs, and the package installs what it says."""

import os
import re
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_library_example_runs(tmp_path):
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  section = readme[readme.index('## Using it as a library'):]
  code = re.search(r'```python\n(.*?)```', section, re.S).group(1)
  assert 'train_and_evaluate' in code and 'evaluate_run' in code
  # Same code, in a temporary folder and at the size of train_test's
  # tiny_config(**ONE_BUCKET), so that the test is quick: generate_test and
  # multihost_test train that config too, so the session's compilation cache
  # may already hold its programs.
  code = code.replace('/tmp/twr_lib', str(tmp_path / 'lib'))
  code = code.replace('num_steps = 300', 'num_steps = 8').replace(
      'iw_samples=50', 'iw_samples=3')
  code = code.replace(
      "config = synthetic.get_config('twr')\n",
      "config = synthetic.get_config('twr')\n"
      'config.data.synthetic.update(num_train=96, num_valid=32, num_test=32)\n'
      'config.data.bucket_size = 24\n'
      'config.model.update(emb_dim=8, hidden=16, latent=4)\n'
      'config.train.update(batch_size=16, log_every_steps=2,'
      ' eval_every_steps=4)\n'
      'config.eval.update(batch_size=16, mi_group_size=8)\n')
  assert all(s in code for s in ('num_steps = 8', 'iw_samples=3', 'num_train'))
  namespace = {}
  exec(compile(code, 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
  assert namespace['results']['valid']['sentences'] == 32


def test_wheel_holds_package_configs_launchers_and_entry_points(tmp_path):
  subprocess.run(
      [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--quiet', '-w',
       str(tmp_path), ROOT], check=True, capture_output=True)
  wheel, = [f for f in os.listdir(tmp_path) if f.endswith('.whl')]
  with zipfile.ZipFile(tmp_path / wheel) as z:
    names = z.namelist()
    entry_points = z.read(next(n for n in names
                               if n.endswith('entry_points.txt'))).decode()
  for path in ('twr_jax/train.py', 'twr_jax/configs/ptb.py',
               'twr_jax/configs/default.py', 'twr_jax/launch/train.py'):
    assert path in names, path
  assert not any(n.startswith(('configs/', 'launch/', 'tests/')) for n in names)
  for script in ('twr-train', 'twr-evaluate', 'twr-generate',
                 'twr-interpolate', 'twr-plot'):
    assert f'{script} = twr_jax.launch.' in entry_points


def test_short_config_names_resolve_to_shipped_files():
  import configs  # pylint: disable=g-import-not-at-top
  path = configs.config_path('ptb:twr_mean')
  assert path.endswith(os.path.join('configs', 'ptb.py') + ':twr_mean')
  assert os.path.exists(path.partition(':')[0])
  assert configs.config_path('my/own.py:x') == 'my/own.py:x'
  assert configs.resolve_config_flags(
      ['prog', '--config', 'yelp', '--workdir=w'])[2].endswith('yelp.py')
