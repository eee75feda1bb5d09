"""Tests of the model (models.py) and the losses (losses.py)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twr_jax.core import layers
from twr_jax.core import losses
from twr_jax.core import text
from twr_jax.lm import model as models

V, E, H, Z = 23, 6, 5, 3


def make_batch(lengths, T, seed=0, pad_value=text.PAD):
  rng = np.random.default_rng(seed)
  tokens = np.full((len(lengths), T), pad_value, np.int32)
  for i, n in enumerate(lengths):
    tokens[i, 0] = text.BOS
    tokens[i, 1 : n - 1] = rng.integers(4, V, n - 2)
    tokens[i, n - 1] = text.EOS
  return jnp.asarray(tokens), jnp.asarray(lengths, jnp.int32)


def init(cell='lstm', z_mode='last', dropout=0.0):
  model = models.TWRVAE(V, E, H, Z, cell=cell, z_mode=z_mode, dropout=dropout)
  tokens, lengths = make_batch([4], 4)
  keys = jax.random.split(jax.random.key(0), 1)
  params = model.init(jax.random.key(1), tokens, lengths, keys, train=False)
  return model, params


def apply(model, params, tokens, lengths, train=False):
  keys = jax.vmap(jax.random.fold_in, (None, 0))(
      jax.random.key(7), jnp.arange(tokens.shape[0]))
  return model.apply(params, tokens, lengths, keys, train=train)


@pytest.mark.parametrize('cell', models.CELLS)
@pytest.mark.parametrize('z_mode', models.Z_MODES)
def test_shapes(cell, z_mode):
  model, params = init(cell, z_mode)
  tokens, lengths = make_batch([3, 7, 5], 8)
  out = apply(model, params, tokens, lengths)
  dims = chex.Dimensions(B=3, T=8, S=7, Z=Z, V=V)
  chex.assert_shape(out['logits'], dims['BSV'])
  chex.assert_shape([out['mu'], out['logvar']], dims['BTZ'])
  chex.assert_shape([out['z'], out['z_mu'], out['z_logvar']], dims['BZ'])
  chex.assert_tree_all_finite(out)


def test_pytorch_initialisation():
  _, params = init()
  p = params['params']
  assert np.all(p['enc_embed']['embedding'][text.PAD] == 0)
  assert np.all(p['dec_embed']['embedding'][text.PAD] == 0)
  # RNN weights U(+-1/sqrt(H)); Linear U(+-1/sqrt(fan_in)); no bias on z->h0.
  bound = 1 / np.sqrt(H)
  assert np.abs(p['enc_rnn']['step']['hh']['kernel']).max() <= bound
  assert np.abs(p['dec_rnn']['ih']['kernel']).max() <= bound
  assert np.abs(p['out']['kernel']).max() <= 1 / np.sqrt(H)
  assert np.abs(p['z_to_h0']['kernel']).max() <= 1 / np.sqrt(Z)
  assert 'bias' not in p['z_to_h0']


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _numpy_rnn(cell, x, wi, bi, wh, bh):
  """PyTorch's equations (gates i,f,g,o / r,z,n), step by step."""
  B, T, _ = x.shape
  h = np.zeros((B, wh.shape[0]))
  c = np.zeros_like(h)
  outs = []
  for t in range(T):
    xi, hh = x[:, t] @ wi + bi, h @ wh + bh
    if cell == 'lstm':
      i, f, g, o = np.split(xi + hh, 4, axis=-1)
      c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
      h = _sigmoid(o) * np.tanh(c)
    elif cell == 'gru':
      r = _sigmoid(xi[:, :H] + hh[:, :H])
      u = _sigmoid(xi[:, H : 2 * H] + hh[:, H : 2 * H])
      n = np.tanh(xi[:, 2 * H :] + r * hh[:, 2 * H :])
      h = (1 - u) * n + u * h
    else:
      h = np.tanh(xi + hh)
    outs.append(h)
  return np.stack(outs, 1)


@pytest.mark.parametrize('cell', models.CELLS)
def test_rnn_matches_pytorch_equations(cell):
  rnn = layers.RNN(cell, H)
  x = jax.random.normal(jax.random.key(0), (2, 6, 4))
  params = rnn.init(jax.random.key(1), x)
  p = jax.tree_util.tree_map(np.asarray, params['params'])
  want = _numpy_rnn(cell, np.asarray(x, np.float64), p['ih']['kernel'],
                    p['ih']['bias'], p['step']['hh']['kernel'],
                    p['step']['hh']['bias'])
  np.testing.assert_allclose(rnn.apply(params, x), want, atol=1e-5)


def test_affine_has_dense_values_and_gradients():
  x = jax.random.normal(jax.random.key(0), (3, 5, 4))
  dense, fast = nn.Dense(7), layers.Affine(7)
  params = fast.init(jax.random.key(1), x)
  g = jax.random.normal(jax.random.key(2), (3, 5, 7))

  def grads(layer):
    f = lambda p, x: jnp.sum(layer.apply(p, x) * g)
    return layer.apply(params, x), jax.grad(f, argnums=(0, 1))(params, x)

  (y_fast, g_fast), (y_dense, g_dense) = grads(fast), grads(dense)
  np.testing.assert_allclose(y_fast, y_dense, rtol=1e-5, atol=1e-6)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
      g_fast, g_dense)


@pytest.mark.parametrize('cell', models.CELLS)
def test_decoding_samples_that_share_inputs_equals_repeating_them(cell):
  model, params = init(cell)
  tokens, _ = make_batch([4, 6], 6)
  z = jax.random.normal(jax.random.key(3), (2, 5, Z))
  decode = lambda t, z: model.apply(params, t, z, method=models.TWRVAE.decode)
  shared = decode(tokens[:, :-1], z)
  repeated = decode(jnp.repeat(tokens[:, :-1], 5, axis=0), z.reshape(10, Z))
  chex.assert_shape(shared, (10, 5, V))
  np.testing.assert_allclose(shared, repeated, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('cell', models.CELLS)
@pytest.mark.parametrize('z_mode', models.Z_MODES)
def test_padding_never_changes_valid_positions_or_loss(cell, z_mode):
  model, params = init(cell, z_mode)
  lengths = [3, 6, 4]
  short, lens = make_batch(lengths, 6)
  long_, _ = make_batch(lengths, 11)
  # Garbage after each sentence's EOS must not matter either.
  garbage = np.asarray(long_).copy()
  for i, n in enumerate(lengths):
    garbage[i, n:] = np.arange(4, 4 + 11 - n)
  outs = [apply(model, params, jnp.asarray(t), lens)
          for t in (short, long_, garbage)]
  def per_sentence(out, tokens):
    rec = losses.token_nll(out['logits'], tokens[:, 1:], lens)
    kl = losses.masked_kl(out['mu'], out['logvar'], lens, 'all')
    return rec, kl
  ref = per_sentence(outs[0], short)
  for out, tokens in zip(outs[1:], (long_, jnp.asarray(garbage))):
    for i, n in enumerate(lengths):
      np.testing.assert_allclose(out['mu'][i, :n], outs[0]['mu'][i, :n],
                                 atol=1e-6)
      np.testing.assert_allclose(out['logvar'][i, :n],
                                 outs[0]['logvar'][i, :n], atol=1e-6)
    np.testing.assert_allclose(out['z'], outs[0]['z'], atol=1e-6)
    np.testing.assert_allclose(out['z_mu'], outs[0]['z_mu'], atol=1e-6)
    for a, b in zip(per_sentence(out, tokens), ref):
      np.testing.assert_allclose(a, b, rtol=1e-5)


@pytest.mark.parametrize('z_mode', models.Z_MODES)
def test_z_modes_pool_only_valid_steps(z_mode):
  rng = np.random.default_rng(0)
  mu, logvar, eps = (rng.normal(size=(3, 7, Z)) for _ in range(3))
  lengths = np.array([3, 7, 5])
  z = models.sample_z(*map(jnp.asarray, (mu, logvar, lengths, eps)), z_mode)
  z_mu, z_logvar = models.pool_posterior(
      jnp.asarray(mu), jnp.asarray(logvar), jnp.asarray(lengths), z_mode)
  for i, n in enumerate(lengths):
    m, lv, e = mu[i, :n], logvar[i, :n], eps[i, :n]
    samples = m + np.exp(lv / 2) * e
    if z_mode == 'last':
      want = (samples[-1], m[-1], lv[-1])
    elif z_mode == 'sum':
      want = (samples.sum(0), m.sum(0), np.log(np.exp(lv).sum(0)))
    else:
      want = (samples.mean(0), m.mean(0), np.log(np.exp(lv).sum(0) / n**2))
    for got, w in zip((z[i], z_mu[i], z_logvar[i]), want):
      np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


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
  tokens, lengths = make_batch([3, 5], 5)
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
