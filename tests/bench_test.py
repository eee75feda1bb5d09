"""Tests of the benchmarks' helpers (bench/); torch parts skip without torch."""

import functools
import importlib.util
import math
import os
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twr_jax.core import losses
from twr_jax.core import text
from twr_jax.lm import likelihood
from twr_jax.lm import model as models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(relpath):
  name = os.path.splitext(os.path.basename(relpath))[0]
  path = os.path.join(ROOT, relpath)
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


train_throughput = _load('bench/train_throughput.py')
iwnll_throughput = _load('bench/iwnll_throughput.py')

SENTENCES = [np.array(s, np.int32) for s in
             ([1, 5, 7, 4, 9, 2], [1, 6, 2], [1, 8, 8, 3, 11, 10, 4, 2])]


@functools.lru_cache
def _tiny(latent=2):
  """A tiny TWRVAE and its random parameters (do not mutate them)."""
  model = models.TWRVAE(vocab_size=12, emb_dim=8, hidden=8, latent=latent)
  return model, iwnll_throughput.init_params(model, jax.random.key(0))


def _batch(sentences):
  t = max(len(s) for s in sentences)
  tokens = np.zeros((len(sentences), t), np.int32)
  for i, s in enumerate(sentences):
    tokens[i, : len(s)] = s
  return jnp.asarray(tokens), jnp.array([len(s) for s in sentences], jnp.int32)


def test_step_flops_equals_hand_count():
  # B 2, T 3, V 5, E 4, H 3, Z 2, LSTM (G = 4): 6 encoder, 4 decoder positions.
  f = train_throughput.step_flops(2, 3, 5, 4, 3, 2)
  assert f['encoder'] == 2 * 6 * (4 * 12 + 3 * 12)  # 1008
  assert f['heads'] == 2 * 6 * 3 * 4  # 144
  assert f['z'] == 2 * 2 * 2 * 3 + 2 * 2 * 2 * 12  # z -> h0 and z -> gates
  assert f['decoder'] == 2 * 4 * (4 * 12 + 3 * 12)  # 672
  assert f['output'] == 2 * 4 * 3 * 5  # 120
  assert f['forward'] == 1008 + 144 + 120 + 672 + 120
  assert f['step'] == 3 * f['forward']


def test_fast_output_layer_has_the_plain_loss_and_gradients():
  model, params = _tiny()
  plain = train_throughput.PlainOutTWRVAE(**{
      k: getattr(model, k) for k in ('vocab_size', 'emb_dim', 'hidden',
                                     'latent')})
  tokens, lengths = _batch(SENTENCES)
  h = jax.random.normal(jax.random.key(1), tokens[:, 1:].shape + (8,))

  def loss(m):
    def f(p, h):  # The output layer + cross-entropy, as in the train step.
      logits = m.apply({'params': p}, h, method=lambda m, h: m.out(h))
      return jnp.sum(losses.token_nll(logits, tokens[:, 1:], lengths))
    return jax.value_and_grad(f, argnums=(0, 1))(params, h)

  (v_new, g_new), (v_old, g_old) = loss(model), loss(plain)
  np.testing.assert_allclose(v_new, v_old, rtol=1e-6)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      g_new, g_old)


def _log_px_given_z(model, params, tokens, z):
  """log p(x|z) <f32>[K] of one sentence <i32>[L] for z <f32>[K, Z]."""
  padded = np.zeros(8, np.int32)  # One shape for every sentence: one compile.
  padded[: len(tokens)] = tokens
  rep = jnp.repeat(jnp.asarray(padded)[None], z.shape[0], axis=0)
  return _decode_nll(model, params, rep, z, len(tokens))


@functools.partial(jax.jit, static_argnums=0)
def _decode_nll(model, params, rep, z, length):
  logits = model.apply({'params': params}, rep[:, :-1], z,
                       method=models.TWRVAE.decode)
  return -losses.token_nll(logits, rep[:, 1:],
                           jnp.full(z.shape[0], length, jnp.int32))


def test_jax_iw_runner_matches_grid_integral_on_a_1d_latent():
  model, params = _tiny(latent=1)
  # Sharpen the decoder's dependence on z so that p(z|x) is not the prior.
  params = jax.tree_util.tree_map(lambda x: x, params)  # A copy.
  params['dec_rnn']['ih_const']['kernel'] = (
      params['dec_rnn']['ih_const']['kernel'] * 6.0)
  log_px, seconds = iwnll_throughput.jax_iw_log_px(
      model, params, SENTENCES, 500, 2, 4096, jax.random.key(2))
  assert log_px.shape == (len(SENTENCES),) and seconds > 0
  assert np.all(np.isfinite(log_px))
  z = jnp.linspace(-10.0, 10.0, 4001)[:, None]
  for s, est in zip(SENTENCES, log_px):
    joint = _log_px_given_z(model, params, s, z) - 0.5 * (
        z[:, 0]**2 + math.log(2 * math.pi))
    exact = float(jax.nn.logsumexp(joint) + math.log(20.0 / 4000))
    assert abs(est - exact) < 0.05, (est, exact)


def test_torch_state_dict_names_and_shapes():
  _, params = _tiny()
  sd = iwnll_throughput.torch_state_dict(params)
  assert sd['dec.rnn.weight_ih_l0'].shape == (32, 8 + 2)  # [4H, E + Z]
  assert sd['enc.rnn.weight_hh_l0'].shape == (32, 8)
  assert sd['dec.out.weight'].shape == (12, 8)  # [V, H]
  assert sd['dec.z2h.weight'].shape == (8, 2)
  assert np.all(sd['enc.emb.weight'][text.PAD] == 0)
  assert len(sd) == 17 and all(v.dtype == np.float32 for v in sd.values())


def test_torch_reference_scores_the_same_model():
  torch = pytest.importorskip('torch')
  ref = _load('bench/reference/torch_iwnll.py')
  model, params = _tiny()
  net = ref.VAE(12, 8, 8, 2).eval()
  net.load_state_dict({k: torch.from_numpy(v) for k, v in
                       iwnll_throughput.torch_state_dict(params).items()})
  s = SENTENCES[2]
  x = torch.tensor(s.tolist()).unsqueeze(1)
  # Same posterior at the last token, same log p(x|z).
  mu, logvar = model.apply({'params': params}, jnp.asarray(s)[None],
                           method=models.TWRVAE.encode)
  mu_t, lv_t = net.enc(x)
  np.testing.assert_allclose(mu[0, -1], mu_t.detach().numpy()[0], atol=1e-5)
  np.testing.assert_allclose(logvar[0, -1], lv_t.detach().numpy()[0], atol=1e-5)
  z = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
  with torch.no_grad():
    got = net.dec.log_px_given_z(x, torch.from_numpy(z)).numpy()
  np.testing.assert_allclose(
      got, _log_px_given_z(model, params, s, jnp.asarray(z)), rtol=1e-5)
  # The estimator: close to log p(x) integrated on a grid, below the ELBO.
  assert ref.check()['ok']


def test_iw_ablations_estimate_the_same_log_px():
  model, params = _tiny()
  key = jax.random.key(2)
  want, _ = iwnll_throughput.jax_iw_log_px(model, params, SENTENCES, 20, 2,
                                           4096, key)
  for shared in (False, True):
    with mock.patch.object(
        likelihood, '_chunk_log_weights',
        iwnll_throughput.ablated_chunk_log_weights(shared)):
      got, _ = iwnll_throughput.jax_iw_log_px(model, params, SENTENCES, 20, 2,
                                              4096, key)
    np.testing.assert_allclose(got, want, rtol=1e-5)
