"""Tests of the shared loss terms (core/losses.py) against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twr_jax.core import losses
from twr_jax.core import text

V, Z = 23, 3


def test_gaussian_kl_hand_value_and_grads():
  mu = jnp.array([[0.5, -1.0]])
  logvar = jnp.array([[0.0, np.log(2.0)]])
  # 0.5 * sum(mu^2 + var - 1 - log var) = 0.5 * (0.25 + 1 + 2 - 1 - ln 2)
  want = 0.5 * (0.25 + 0.0 + 1.0 + 2.0 - 1.0 - np.log(2.0))
  np.testing.assert_allclose(losses.gaussian_kl(mu, logvar), [want], rtol=1e-6)
  jax.test_util.check_grads(lambda m, v: losses.gaussian_kl(m, v).sum(),
                            (mu, logvar), order=1, modes=['rev'])


@pytest.mark.parametrize(
    'window, length, steps',
    [('all', 5, [0, 1, 2, 3, 4]), ('last', 5, [4]),
     ('last25', 10, [8, 9]),        # round(2.5) = 2 (half to even)
     ('last25', 6, [4, 5]),         # round(1.5) = 2
     ('last25', 3, [2]),            # round(0.75) = 1
     ('last50', 5, [3, 4]),         # round(2.5) = 2
     ('last50', 7, [3, 4, 5, 6]),   # round(3.5) = 4
     ('last75', 10, [2, 3, 4, 5, 6, 7, 8, 9]),  # round(7.5) = 8
     ('last75', 4, [1, 2, 3])],
)
def test_kl_windows_pick_the_right_steps(window, length, steps):
  mask = losses.kl_window_mask(jnp.asarray(length), 12, window)
  assert np.flatnonzero(np.asarray(mask)).tolist() == steps


@pytest.mark.parametrize('window', losses.KL_WINDOWS)
def test_masked_kl_equals_kl_of_sliced_prefix(window):
  rng = np.random.default_rng(1)
  mu, logvar = rng.normal(size=(4, 9, Z)), rng.normal(size=(4, 9, Z))
  lengths = np.array([3, 9, 6, 4])
  got = jax.jit(losses.masked_kl, static_argnums=3)(
      jnp.asarray(mu), jnp.asarray(logvar), jnp.asarray(lengths), window)
  for i, n in enumerate(lengths):
    m, lv = mu[i, :n], logvar[i, :n]  # The slice: no mask at all.
    kl_t = -0.5 * np.sum(1 + lv - m**2 - np.exp(lv), axis=-1)
    k = {'all': n, 'last': 1}.get(window)
    if k is None:
      k = max(1, round(n * int(window[4:]) / 100))
    np.testing.assert_allclose(got[i], kl_t[n - k :].mean(), rtol=1e-5)


def test_token_nll_counts_eos_not_bos_nor_pads():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(2, 4, V))
  # BOS w EOS PAD PAD and BOS w w w EOS.
  tokens = jnp.array([[text.BOS, 7, text.EOS, text.PAD, text.PAD],
                      [text.BOS, 4, 22, 5, text.EOS]], jnp.int32)
  lengths = jnp.array([3, 5], jnp.int32)
  got = losses.token_nll(jnp.asarray(logits), tokens[:, 1:], lengths)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  for i, n in enumerate([3, 5]):
    targets = np.asarray(tokens)[i, 1:n]  # words then EOS: n - 1 targets
    want = -sum(logp[i, t, w] for t, w in enumerate(targets))
    np.testing.assert_allclose(got[i], want, rtol=1e-5)


def test_objective_reductions():
  rec, kl, w = jnp.array([1.0, 2.0, 5.0]), jnp.array([0.5, 1.0, 9.0]), \
      jnp.array([1.0, 1.0, 0.0])
  assert losses.objective(rec, kl, w, 0.5, 'sum') == pytest.approx(1.25 + 2.5)
  assert losses.objective(rec, kl, w, 0.5, 'mean') == pytest.approx(3.75 / 2)
  with pytest.raises(ValueError, match="'sum', 'mean'"):
    losses.objective(rec, kl, w, 1.0, 'max')
