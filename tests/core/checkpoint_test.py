"""Tests of twr_jax.core.checkpoint: damaged checkpoints, shapes, steps."""

import glob
import os

import numpy as np
import pytest

from twr_jax import errors
from twr_jax.core import checkpoint

# A failed read of a damaged checkpoint leaves TensorStore callbacks that
# later post to Orbax's closed asyncio loop from another thread ("Event loop
# is closed", reported by Python as an unraisable exception, at a moment that
# depends on thread timing, so in this test or a later one). It is Orbax's
# cleanup after the error this module provokes on purpose, not a fault of
# the restore, which has already fallen back or raised.
pytestmark = pytest.mark.filterwarnings(
    'ignore::pytest.PytestUnraisableExceptionWarning')


def state(value: float, hidden: int = 3):
  return dict(params={'dec': {'kernel': np.full((2, hidden), value,
                                                np.float32)}},
              opt_state=(np.zeros((2,), np.float32),), step=np.asarray(1))


@pytest.fixture
def three_steps(tmp_path):
  """A workdir with steps 1, 2, 3 in checkpoints/last (params = step)."""
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=3)
  for s in (1, 2, 3):
    ckpt.save(s, state(float(s)))
  ckpt.close()
  return str(tmp_path)


def restore(workdir, step=None, target=None):
  ckpt = checkpoint.Checkpointer(workdir, keep=3)
  try:
    restored, found = ckpt.restore(target or state(0.0), step)
    return restored, found, getattr(ckpt, 'damaged', None)
  finally:
    ckpt.close()


def array_files(workdir, step):
  files = glob.glob(os.path.join(workdir, 'checkpoints', 'last', str(step),
                                 '**', 'd', '*'), recursive=True)
  assert files
  return files


@pytest.mark.parametrize('damage', ['deleted', 'zero_length'])
def test_damaged_latest_falls_back_to_newest_intact(three_steps, damage):
  for f in array_files(three_steps, 3):
    if damage == 'deleted':
      os.remove(f)
    else:
      open(f, 'w').close()
  restored, step, damaged = restore(three_steps)
  assert (step, damaged) == (2, [3])
  np.testing.assert_array_equal(restored['params']['dec']['kernel'], 2.0)


def test_delete_damaged_lets_the_step_be_saved_again(three_steps):
  for f in array_files(three_steps, 3):
    os.remove(f)
  ckpt = checkpoint.Checkpointer(three_steps, keep=3)
  ckpt.restore(state(0.0))
  ckpt.delete_damaged()
  ckpt.save(3, state(30.0))
  ckpt.close()
  restored, step, _ = restore(three_steps)
  assert step == 3
  np.testing.assert_array_equal(restored['params']['dec']['kernel'], 30.0)


def test_leftover_temporary_folder_is_not_a_step(three_steps):
  os.makedirs(os.path.join(three_steps, 'checkpoints', 'last',
                           '4.orbax-checkpoint-tmp-1700000000', 'default'))
  _, step, damaged = restore(three_steps)
  assert (step, damaged) == (3, [])


def test_missing_step_lists_the_kept_steps(three_steps):
  with pytest.raises(errors.RunError, match=r'step 7.*\[1, 2, 3\]'):
    restore(three_steps, step=7)


def test_asked_for_damaged_step_is_an_error(three_steps):
  for f in array_files(three_steps, 2):
    os.remove(f)
  with pytest.raises(errors.RunError, match='damaged'):
    restore(three_steps, step=2)


def test_shape_mismatch_names_the_parameter(three_steps):
  with pytest.raises(errors.RunError,
                     match=r"\['dec'\]\['kernel'\].*float32\[2, 3\].*"
                           r'float32\[2, 5\]'):
    restore(three_steps, target=state(0.0, hidden=5))


def test_relative_workdir(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  ckpt = checkpoint.Checkpointer('run', keep=3)
  ckpt.save(1, state(1.0))
  ckpt.close()
  assert os.path.isdir(tmp_path / 'run' / 'checkpoints' / 'last' / '1')
  assert restore('run')[1] == 1
