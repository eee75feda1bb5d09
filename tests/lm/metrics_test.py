"""Tests for twr_jax.lm.metrics."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from scipy import special
from scipy import stats

from twr_jax.lm import metrics


def _reference_mi(mu, logvar, z):
  """He et al.'s `calc_mi`, one pair (i, k) at a time, via scipy densities."""
  batch = mu.shape[0]
  std = np.exp(0.5 * logvar)
  entropy = np.mean([stats.norm.entropy(scale=std[i]).sum()
                     for i in range(batch)])
  log_q = np.empty((batch, batch))
  for i in range(batch):
    for k in range(batch):
      log_q[i, k] = stats.norm.logpdf(z[i], mu[k], std[k]).sum()
  log_qz = [special.logsumexp(log_q[i]) - np.log(batch) for i in range(batch)]
  return -entropy - np.mean(log_qz)


def _posteriors(seed, batch, latent, unit_norm_noise=False):
  """Random posteriors and one sample each.

  With `unit_norm_noise` every noise entry is ±1, so |ε_i|² = latent exactly
  and the Monte Carlo average of log q(z_i|x_i) equals the negative entropy
  with no sampling error; that makes the MI bounds below exact.
  """
  rng = np.random.default_rng(seed)
  mu = rng.normal(size=(batch, latent))
  logvar = rng.uniform(-2.0, 1.0, size=(batch, latent))
  if unit_norm_noise:
    eps = rng.choice([-1.0, 1.0], size=(batch, latent))
  else:
    eps = rng.normal(size=(batch, latent))
  return mu, logvar, mu + np.exp(0.5 * logvar) * eps


class MutualInformationTest(parameterized.TestCase):

  @parameterized.parameters((0, 7, 5), (1, 32, 4), (2, 1, 3), (3, 64, 32))
  def test_matches_pairwise_reference(self, seed, batch, latent):
    mu, logvar, z = _posteriors(seed, batch, latent)
    np.testing.assert_allclose(
        metrics.mutual_information(mu, logvar, z),
        _reference_mi(mu, logvar, z),
        rtol=1e-10, atol=1e-10)

  def test_accepts_float32(self):
    mu, logvar, z = (a.astype(np.float32) for a in _posteriors(0, 8, 3))
    np.testing.assert_allclose(
        metrics.mutual_information(mu, logvar, z),
        _reference_mi(*(a.astype(np.float64) for a in (mu, logvar, z))),
        rtol=1e-10, atol=1e-10)

  def test_identical_posteriors_give_zero(self):
    mu, logvar, z = _posteriors(0, 16, 6, unit_norm_noise=True)
    eps = (z - mu) / np.exp(0.5 * logvar)
    mu, logvar = np.tile(mu[:1], (16, 1)), np.tile(logvar[:1], (16, 1))
    z = mu + np.exp(0.5 * logvar) * eps
    self.assertAlmostEqual(metrics.mutual_information(mu, logvar, z), 0.0,
                           delta=1e-12)

  @parameterized.parameters(0, 1, 2)
  def test_bounded_by_log_batch(self, seed):
    mu, logvar, z = _posteriors(seed, 32, 4, unit_norm_noise=True)
    self.assertLessEqual(metrics.mutual_information(mu, logvar, z),
                         np.log(32) + 1e-12)

  def test_separated_posteriors_reach_log_batch_without_overflow(self):
    # The diagonal densities are ~e^754, past float64's e^709: a naive
    # log(sum(exp(.))) overflows where the log-sum-exp must not. Off the
    # diagonal the means are ~7e4 standard deviations apart, so q̂ = q/B.
    batch, latent = 8, 32
    mu = 1e-6 * np.arange(batch, dtype=np.float64)[:, None] * np.ones(latent)
    logvar = np.full((batch, latent), -50.0)
    eps = np.where(np.arange(latent) % 2 == 0, 1.0, -1.0)
    z = mu + np.exp(0.5 * logvar) * eps
    np.testing.assert_allclose(metrics.mutual_information(mu, logvar, z),
                               np.log(batch), rtol=0, atol=1e-6)

  def test_rejects_mismatched_shapes(self):
    mu, logvar, z = _posteriors(0, 4, 3)
    with self.assertRaisesRegex(ValueError, 'shape'):
      metrics.mutual_information(mu, logvar[:, :2], z)
    with self.assertRaisesRegex(ValueError, 'shape'):
      metrics.mutual_information(mu[0], logvar[0], z[0])


class GroupedMutualInformationTest(parameterized.TestCase):

  def test_weighted_average_of_groups(self):
    mu, logvar, z = _posteriors(5, 11, 3)
    groups = [slice(0, 4), slice(4, 8), slice(8, 11)]
    expected = sum(
        (g.stop - g.start) * metrics.mutual_information(mu[g], logvar[g], z[g])
        for g in groups) / 11
    np.testing.assert_allclose(
        metrics.grouped_mutual_information(mu, logvar, z, group_size=4),
        expected, rtol=1e-12)

  @parameterized.parameters(11, 100)
  def test_one_group_equals_plain_estimate(self, group_size):
    mu, logvar, z = _posteriors(6, 11, 3)
    self.assertEqual(
        metrics.grouped_mutual_information(mu, logvar, z, group_size),
        metrics.mutual_information(mu, logvar, z))

  def test_rejects_empty_groups(self):
    mu, logvar, z = _posteriors(0, 4, 3)
    with self.assertRaisesRegex(ValueError, 'group_size'):
      metrics.grouped_mutual_information(mu, logvar, z, group_size=0)


class ActiveUnitsTest(absltest.TestCase):

  def test_counts_dimensions_around_threshold(self):
    # Column j alternates c_j ± a_j over 4 rows, so its mean is c_j and its
    # unbiased variance is exactly 4 a_j² / 3.
    a = np.array([0.087, 0.086, 0.0, 1.0])  # 0.010092, 0.009861, 0, 1.333
    c = np.array([0.0, 3.0, -2.0, 0.5])
    signs = np.array([1.0, -1.0, 1.0, -1.0])[:, None]
    count, variances = metrics.active_units(c + signs * a)
    self.assertEqual(count, 2)
    np.testing.assert_allclose(variances, 4 * a**2 / 3, rtol=1e-12, atol=1e-15)

  def test_threshold_is_inclusive(self):
    # 0.5 ± 2^-4 over two rows has variance exactly 2 · 2^-8 = 2^-7 in binary.
    mu = np.array([[0.5625], [0.4375]])
    self.assertEqual(metrics.active_units(mu, threshold=2.0**-7)[0], 1)
    self.assertEqual(metrics.active_units(mu, threshold=2.0**-7 * 1.001)[0], 0)

  def test_rejects_single_example(self):
    with self.assertRaisesRegex(ValueError, 'N >= 2'):
      metrics.active_units(np.zeros((1, 3)))


if __name__ == '__main__':
  absltest.main()
