"""Tests of the language model (lm/model.py)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
  params = model.init(jax.random.key(1), tokens, lengths)
  return model, params


def noise(model, tokens, train=False):
  keys = jax.vmap(jax.random.fold_in, (None, 0))(
      jax.random.key(7), jnp.arange(tokens.shape[0]))
  return models.example_noise(keys, tokens.shape[1], E, Z, model.dropout,
                              train)


def apply(model, params, tokens, lengths, train=False):
  return model.apply(params, tokens, lengths, noise(model, tokens, train))


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


def test_noise_dict_is_the_only_source_of_randomness():
  model, params = init(dropout=0.5)
  tokens, lengths = make_batch([3, 7, 5], 8)
  train = noise(model, tokens, train=True)
  assert train['enc_keep'].shape == (3, 8, E)
  assert train['dec_keep'].shape == (3, 7, E)
  out = model.apply(params, tokens, lengths, train)
  # Each entry is applied where it belongs: dropping the decoder's masks
  # leaves the posterior alone and changes the logits.
  enc_only = model.apply(params, tokens, lengths, {**train, 'dec_keep': None})
  np.testing.assert_allclose(enc_only['mu'], out['mu'], rtol=1e-6)
  assert not np.allclose(enc_only['logits'], out['logits'])
  # Eval noise has no masks: the same as no dropout at all.
  evals = noise(model, tokens)
  assert evals['enc_keep'] is None and evals['dec_keep'] is None
  plain = model.apply(params, tokens, lengths, {'eps': evals['eps']})
  np.testing.assert_allclose(
      model.apply(params, tokens, lengths, evals)['logits'], plain['logits'],
      rtol=1e-6)
  # Without 'eps' (or without noise), z is the mean of its Gaussian.
  for none in (None, {}):
    out = model.apply(params, tokens, lengths, none)
    np.testing.assert_array_equal(out['z'], out['z_mu'])
    np.testing.assert_allclose(out['logits'], model.apply(
        params, tokens, lengths, {'eps': jnp.zeros((3, 8, Z))})['logits'],
        rtol=1e-6)
