"""Tests for twr_jax.core.schedules against the original training loops."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from twr_jax.core import schedules


def _he_linear(num_steps, kl_start, warm_up, train_size, batch_size):
  """He et al.'s `text.py` loop: the weight each of the first steps uses."""
  kl_weight = kl_start
  anneal_rate = (1.0 - kl_start) / (warm_up * (train_size / batch_size))
  weights = []
  for _ in range(num_steps):
    kl_weight = min(1.0, kl_weight + anneal_rate)
    weights.append(kl_weight)
  return np.array(weights)


def _sentence_vae_logistic(step, k, x0):
  """Sentence-VAE's `kl_anneal_function('logistic', step, k, x0)`."""
  return float(1 / (1 + np.exp(-k * (step - x0))))


def _frange_cycle_linear(n_iter, start=0.0, stop=1.0, n_cycle=4, ratio=0.5):
  """Fu et al.'s reference loop, verbatim."""
  L = np.ones(n_iter) * stop  # pylint: disable=invalid-name
  period = n_iter / n_cycle
  step = (stop - start) / (period * ratio)
  for c in range(n_cycle):
    v, i = start, 0
    while v <= stop and (int(i + c * period) < n_iter):
      L[int(i + c * period)] = v
      v += step
      i += 1
  return L


def _all_steps(schedule, num_steps):
  """β for steps 0..num_steps-1, traced once as the train step would."""
  return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(num_steps)))


_CONFIGS = {
    'constant': dict(beta=0.3),
    'linear': dict(start=0.1, warmup_epochs=1.5, train_size=100, batch_size=32),
    'logistic': dict(),
    'cyclical': dict(total_steps=40, cycles=3, ratio=0.5),
}


class KLScheduleTest(parameterized.TestCase):

  def test_constant(self):
    schedule = schedules.make_kl_schedule('constant', beta=0.3)
    np.testing.assert_array_equal(_all_steps(schedule, 5),
                                  np.float32([0.3] * 5))

  @parameterized.parameters(
      (0.1, 10.0, 42068, 32, 14_000),  # PTB-sized; reaches 1 near step 13146.
      (0.1, 1.5, 100, 32, 30),
      (0.0, 2.0, 64, 64, 5),
      (1.0, 10.0, 1000, 32, 5),  # kl_start 1: He et al.'s "no annealing".
  )
  def test_linear_matches_he_et_al_loop(self, start, warm_up, size, batch,
                                        num_steps):
    schedule = schedules.make_kl_schedule(
        'linear', start=start, warmup_epochs=warm_up, train_size=size,
        batch_size=batch)
    np.testing.assert_allclose(
        _all_steps(schedule, num_steps),
        _he_linear(num_steps, start, warm_up, size, batch), rtol=0, atol=1e-6)

  def test_linear_first_step_already_annealed(self):
    schedule = schedules.make_kl_schedule(
        'linear', start=0.1, warmup_epochs=1.5, train_size=100, batch_size=32)
    # One increment of 0.9 / 4.6875 before the first batch's loss.
    np.testing.assert_allclose(schedule(0), 0.1 + 0.192, rtol=1e-6)

  @parameterized.parameters((0.0025, 2500, 6000), (0.01, 10, 50))
  def test_logistic_matches_sentence_vae(self, k, x0, num_steps):
    schedule = schedules.make_kl_schedule(
        'logistic', logistic_k=k, logistic_x0=x0)
    expected = [_sentence_vae_logistic(s, k, x0) for s in range(num_steps)]
    np.testing.assert_allclose(_all_steps(schedule, num_steps), expected,
                               rtol=0, atol=1e-6)
    self.assertEqual(float(schedule(x0)), 0.5)

  @parameterized.parameters(
      (1000, 4, 0.5),
      (40, 3, 0.5),
      (10, 3, 1.0),
      (100, 6, 0.3),
      (7, 7, 1.0),
      (1, 1, 0.5),
      (50, 4, 1.5),
      # Sizes where float64 rounding of int(i + c*period) makes the reference
      # skip an index mid-ramp (a lone 1.0); a closed form would miss these.
      (122, 14, 0.5),
      (230, 14, 0.9),
      (906, 14, 1.0),
  )
  def test_cyclical_matches_reference_loop(self, n_iter, n_cycle, ratio):
    expected = _frange_cycle_linear(n_iter, n_cycle=n_cycle, ratio=ratio)
    np.testing.assert_array_equal(
        schedules._frange_cycle_linear(n_iter, n_cycle, ratio), expected)
    schedule = schedules.make_kl_schedule(
        'cyclical', total_steps=n_iter, cycles=n_cycle, ratio=ratio)
    np.testing.assert_allclose(
        _all_steps(schedule, n_iter + 5),
        np.concatenate([expected, np.ones(5)]), rtol=0, atol=1e-6)

  @parameterized.parameters(*_CONFIGS)
  def test_scalar_float32_and_jit_equal_eager(self, kind):
    schedule = schedules.make_kl_schedule(kind, **_CONFIGS[kind])
    jitted = jax.jit(schedule)
    for step in (0, 1, 7, 39, 40, 41, 2500, 10**6):
      eager = schedule(step)
      self.assertEqual(eager.shape, ())
      self.assertEqual(eager.dtype, jnp.float32)
      self.assertEqual(jitted(jnp.int32(step)), eager)
      self.assertEqual(schedule(jnp.int32(step)), eager)

  def test_unknown_kind_lists_the_allowed_ones(self):
    with self.assertRaisesRegex(
        ValueError, "'sigmoid'.*constant.*linear.*logistic.*cyclical"):
      schedules.make_kl_schedule('sigmoid')

  @parameterized.parameters(
      ('linear', dict(), 'requires train_size, batch_size'),
      ('linear', dict(train_size=10), 'requires batch_size'),
      ('cyclical', dict(), 'requires total_steps'),
      ('linear', dict(train_size=10, batch_size=2, warmup_epochs=0), '> 0'),
      ('cyclical', dict(total_steps=10, ratio=0.0), 'ratio > 0'),
      ('cyclical', dict(total_steps=0), 'total_steps >= 1'),
  )
  def test_bad_arguments_are_named(self, kind, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      schedules.make_kl_schedule(kind, **kwargs)


if __name__ == '__main__':
  absltest.main()
