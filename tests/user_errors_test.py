"""User errors (issue 13, cases 5 and 6): batch sizes checked against the
device count before any work, and one clear block instead of a traceback."""

import os
import subprocess
import sys

from absl import flags
import pytest

from configs import default
from configs import synthetic as synthetic_config
from twr_jax import errors
from twr_jax import train
from twr_jax.core import cli
from twr_jax.core import config_checks
from twr_jax.core import parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
  c = synthetic_config.get_config()
  c.data.synthetic.update(num_train=96, num_valid=32, num_test=32)
  c.model.update(emb_dim=8, hidden=16, latent=4)
  c.train.update(batch_size=16, num_steps=4, log_every_steps=2)
  c.eval.update(batch_size=16, mi_group_size=8)
  return default.set_fields(c, overrides)


def _launch(module, *args, env=None):
  full = {k: v for k, v in os.environ.items() if k != cli.VERBOSE_ENV}
  full.update(JAX_PLATFORMS='cpu', **(env or {}))
  return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT,
                        env=full, capture_output=True, text=True, timeout=300)


def _block(stderr: str) -> list[str]:
  """The error block: stderr from its first 'XxxError: ' line (log lines
  may come before it)."""
  lines = stderr.splitlines()
  starts = [i for i, line in enumerate(lines)
            if line.split(':', 1)[0] in ('ConfigError', 'DataError',
                                         'RunError')]
  assert starts, stderr
  return lines[starts[0]:]


# ----------------------------------------------------------------------------
# Case 5: device counts.


def test_check_batch_sizes_names_every_field_and_the_nearest_multiples():
  config = tiny_config(**{'train.batch_size': 63, 'eval.batch_size': 64})
  three = parallel.Layout(mode='pmap', num_devices=3)
  with pytest.raises(errors.ConfigError) as e:
    config_checks.check_batch_sizes(config, three)
  message = str(e.value)
  assert 'train.batch_size' not in message
  assert message.startswith(
      'config.eval.batch_size = 64 does not split over 3 devices: use a'
      ' multiple of 3, e.g. --config.eval.batch_size=63 or 66\n')
  config.train.batch_size = 2
  with pytest.raises(errors.ConfigError) as e:
    config_checks.check_batch_sizes(config, three)
  lines = str(e.value).splitlines()
  # Below the device count, only the multiple above is offered.
  assert lines[0].endswith('e.g. --config.train.batch_size=3')
  assert lines[1].startswith('config.eval.batch_size = 64')
  assert lines[2] == '(or run on one device with --config.train.parallel=jit)'
  # Fine: multiples of 3, or one device under jit.
  config.train.batch_size, config.eval.batch_size = 63, 66
  config_checks.check_batch_sizes(config, three)
  config.eval.batch_size = 64
  config_checks.check_batch_sizes(config, parallel.Layout('jit', 1))


def test_training_stops_before_any_step_on_an_eval_batch_size(tmp_path):
  # conftest.py gives 4 CPU devices; 6 rows do not split over them. Before,
  # the run trained, then failed in its first evaluation.
  workdir = tmp_path / 'run'
  config = tiny_config(**{'eval.batch_size': 6})
  with pytest.raises(errors.ConfigError,
                     match='config.eval.batch_size = 6 does not split over 4'):
    train.train_and_evaluate(config, str(workdir))
  assert not (workdir / 'checkpoints').exists()
  assert not (workdir / 'metrics.jsonl').exists()


# ----------------------------------------------------------------------------
# Case 6: one block, no traceback; --verbose shows it.


def test_user_error_is_found_through_the_flag_parsers_wrappers():
  original = errors.ConfigError('unknown variant')
  try:
    try:
      try:
        raise original
      except errors.ConfigError as e:
        raise type(e)('Error whilst parsing config file: Traceback ...')
    except ValueError as e:
      raise flags.IllegalFlagValueError(f'flag --config=x.py:nope: {e}')
  except flags.Error as e:
    assert cli.user_error(e) is original
  assert cli.user_error(RuntimeError('bug')) is None
  assert cli.format_error(original, 'flag --config=x: ') == (
      'ConfigError: flag --config=x: unknown variant\n'
      '(for the traceback: --verbose or TWR_JAX_VERBOSE=1)\n')


def test_unknown_variant_one_block_with_the_allowed_list(tmp_path):
  workdir = str(tmp_path / 'w')
  proc = _launch('launch.train', '--config=configs/synthetic.py:nope',
                 f'--workdir={workdir}')
  assert proc.returncode == cli.EXIT_USER_ERROR, proc.stderr
  assert 'Traceback' not in proc.stderr
  lines = _block(proc.stderr)
  assert lines[0] == (
      'ConfigError: flag --config=configs/synthetic.py:nope: unknown variant'
      " 'nope'; the variants (--config=FILE:VARIANT) are:")
  assert lines[1] == ', '.join(default.VARIANTS)
  assert lines[2].startswith('(for the traceback: --verbose')
  assert len(lines) == 3
  proc = _launch('launch.train', '--config=configs/synthetic.py:nope',
                 f'--workdir={workdir}', '--verbose')
  assert proc.returncode != 0
  assert 'Traceback' in proc.stderr and 'apply_variant' in proc.stderr


def test_data_error_in_main_is_one_block(tmp_path):
  data = tmp_path / 'data'
  data.mkdir()
  for split in ('train', 'valid', 'test'):
    (data / f'{split}.txt').write_text('a b\n\nc d\n')
  args = ['--config=configs/ptb.py:twr', f'--config.data.dir={data}',
          f'--workdir={tmp_path / "w"}']
  proc = _launch('launch.train', *args)
  assert proc.returncode == cli.EXIT_USER_ERROR, proc.stderr
  assert _block(proc.stderr) == [
      f'DataError: {data}/train.txt:2: line is blank (every line must hold'
      ' one sentence or document)',
      '(for the traceback: --verbose or TWR_JAX_VERBOSE=1)']
  assert 'Traceback' not in proc.stderr
  proc = _launch('launch.train', *args, env={'TWR_JAX_VERBOSE': '1'})
  assert proc.returncode != 0
  assert 'Traceback' in proc.stderr and 'DataError' in proc.stderr


def test_workdir_and_flag_errors_are_one_block(tmp_path):
  proc = _launch('launch.evaluate', f'--workdir={tmp_path / "nope"}')
  assert proc.returncode == cli.EXIT_USER_ERROR, proc.stderr
  assert _block(proc.stderr)[0].startswith(
      f'RunError: {tmp_path / "nope"}: not a training run (no config.json)')
  assert 'Traceback' not in proc.stderr


def test_device_count_error_through_the_launcher(tmp_path):
  # The reproduction: 3 devices, the batch sizes of a 64-row config.
  proc = _launch(
      'launch.train', '--config=configs/synthetic.py',
      f'--workdir={tmp_path / "w"}', '--config.train.batch_size=63',
      env={'XLA_FLAGS': '--xla_force_host_platform_device_count=3'})
  assert proc.returncode == cli.EXIT_USER_ERROR, proc.stderr
  block = _block(proc.stderr)
  assert block[0].startswith(
      'ConfigError: config.eval.batch_size = 64 does not split over 3'
      ' devices')
  assert len(block) == 3  # The field, the jit alternative, the hint.
  assert 'Traceback' not in proc.stderr
