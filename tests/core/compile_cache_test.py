"""The persistent compilation cache helper and growing bucket boundaries."""

import os
import subprocess
import sys

import numpy as np
import pytest

from configs import default
from configs import synthetic as synthetic_config
from twr_jax import tasks
from twr_jax.core import compile_cache
from twr_jax.lm import input_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def test_fixed_boundaries_are_the_multiples_of_bucket_size():
  assert input_pipeline.bucket_boundaries(202, 8) == list(range(8, 209, 8))
  assert len(input_pipeline.bucket_boundaries(202, 8)) == 26


def test_growing_boundaries_by_hand():
  # 8, 16 (8 + 8 > 12), 24 (= 1.5 * 16), 36 -> 40, 60 -> 64, 96, 144, 216.
  assert input_pipeline.bucket_boundaries(202, 8, 1.5) == [
      8, 16, 24, 40, 64, 96, 144, 216]
  assert input_pipeline.bucket_boundaries(5, 8, 1.5) == [8]


@pytest.mark.parametrize('growth', [0.5, float('nan')])
def test_growth_below_one_is_rejected(growth):
  with pytest.raises(ValueError, match='growth must be >= 1'):
    input_pipeline.bucket_boundaries(10, 8, growth)
  c = synthetic_config.get_config()
  c.data.bucket_growth = growth
  with pytest.raises(ValueError, match='config.data.bucket_growth'):
    tasks.validate(c)


def _sequences(lengths):
  return [np.arange(n, dtype=np.int32) + 1 for n in lengths]


def test_growth_one_batches_equal_the_fixed_buckets():
  rng = np.random.default_rng(0)
  seqs = _sequences(rng.integers(2, 60, 300))
  plain = input_pipeline.Batcher(seqs, 16, 8, 3)
  same = input_pipeline.Batcher(seqs, 16, 8, 3, bucket_growth=1.0)
  assert plain.shapes == same.shapes == sorted(
      {input_pipeline.bucket_length(len(s), 8) for s in seqs})
  for step in range(2 * plain.num_batches):
    a, b = plain.train_batch(step), same.train_batch(step)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_growing_buckets_hold_every_sentence_once_in_fewer_shapes():
  rng = np.random.default_rng(1)
  lengths = rng.integers(2, 203, 400)
  seqs = _sequences(lengths)
  batcher = input_pipeline.Batcher(seqs, 16, 8, 0, bucket_growth=1.5)
  assert batcher.shapes == [8, 16, 24, 40, 64, 96, 144, 216]
  seen = []
  for batch in batcher.eval_batches():
    real = batch['weights'] > 0
    t = batch['tokens'].shape[1]
    lower = max([b for b in batcher.shapes if b < t], default=0)
    # Each row is in the smallest bucket that holds it.
    assert np.all((batch['lengths'][real] <= t)
                  & (batch['lengths'][real] > lower))
    for i, row, n in zip(batch['index'][real], batch['tokens'][real],
                         batch['lengths'][real]):
      np.testing.assert_array_equal(row[:n], seqs[i])
      assert not row[n:].any()
    seen.extend(batch['index'][real].tolist())
  assert sorted(seen) == list(range(len(seqs)))


def test_default_config_keeps_fixed_buckets():
  assert default.get_config().data.bucket_growth == 1.0


def test_cache_off_values_and_jax_own_variable(monkeypatch):
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  assert os.environ[compile_cache.ENV] == ''  # conftest: off in tests.
  assert compile_cache.enable() is None
  assert compile_cache.enable('off') is None
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', '/somewhere')
  assert compile_cache.enable('/elsewhere') == '/somewhere'  # Left to JAX.


def test_enabled_cache_stores_compiled_programs(tmp_path):
  cache = tmp_path / 'cache'
  code = (
      'import jax, jax.numpy as jnp\n'
      'from twr_jax.core import compile_cache\n'
      'print(compile_cache.enable())\n'
      # Tiny programs compile in under MIN_COMPILE_SECONDS: store them too.
      "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)\n"
      'jax.jit(lambda x: jnp.tanh(x) @ x)(jnp.ones((4, 4))).block_until_ready()\n'
  )
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  env[compile_cache.ENV] = str(cache)
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  out = subprocess.run([sys.executable, '-c', code], env=env, cwd=ROOT,
                       capture_output=True, text=True, check=True).stdout
  assert out.strip() == str(cache)
  assert any(cache.iterdir())
