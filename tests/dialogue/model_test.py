"""Tests of the TWR-VAE dialogue model (dialogue_model.py)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from twr_jax.core import losses
from twr_jax.core import prng
from twr_jax.dialogue import decoding as dialogue_decoding
from twr_jax.dialogue import losses as dialogue_losses
from twr_jax.dialogue import model as dm

# Tiny sizes; E > 3 H_u so that one GRU kernel is wider than tall.
V, E, HU, HC, Z = 17, 10, 3, 5, 2
N, U, R = 4, 6, 7  # context slots W-1, context turn length U-1, response R.
PAD, BOS, EOS = 0, 2, 3
FIELDS = ('context', 'context_lens', 'floors', 'num_turns', 'response',
          'response_len')


def make_batch(num_turns, response_len, seed=0):
  """A dialogue_data-style batch with random words (ids >= 4)."""
  rng = np.random.default_rng(seed)
  b = len(num_turns)
  context = np.zeros((b, N, U), np.int32)
  context_lens = np.ones((b, N), np.int32)
  floors = np.zeros((b, N), np.int32)
  response = np.zeros((b, R), np.int32)
  for i, (n, m) in enumerate(zip(num_turns, response_len)):
    for t in range(n):
      length = rng.integers(1, U + 1)
      context[i, t, : length - 1] = rng.integers(4, V, length - 1)
      context[i, t, length - 1] = EOS
      context_lens[i, t] = length
      floors[i, t] = rng.integers(0, 2)
    response[i, 0], response[i, m - 1] = BOS, EOS
    response[i, 1 : m - 1] = rng.integers(4, V, m - 2)
  return dict(
      context=context, context_lens=context_lens, floors=floors,
      num_turns=np.asarray(num_turns, np.int32), response=response,
      response_len=np.asarray(response_len, np.int32),
      weights=np.ones(b, np.float32), index=np.arange(b, dtype=np.int32),
  )


def make_model(kl_mask='valid'):
  return dm.DialogTWRVAE(V, emb_dim=E, utt_hidden=HU, ctx_hidden=HC,
                         latent=Z, kl_mask=kl_mask)


@functools.cache
def init_params():
  batch = make_batch([2], [3])
  init = jax.jit(make_model().init)
  return init(jax.random.key(1), *(batch[f] for f in FIELDS))['params']


@functools.cache
def _jitted(name, kl_mask='valid', **kw):
  # Compiled once per shape: eager Flax would recompile its scans per call.
  fn = getattr(dm.DialogTWRVAE, name)
  return jax.jit(functools.partial(make_model(kl_mask).apply, method=fn, **kw))


def apply(batch, train=False, kl_mask='valid', seed=7, **kw):
  keys = prng.example_keys(jax.random.key(seed), batch['index'])
  noise = dm.batch_noise(make_model(kl_mask), batch, keys, train)
  return _jitted('__call__', kl_mask)(
      {'params': init_params()}, *(batch[f] for f in FIELDS), noise, **kw
  )


def method(name, *args):
  return _jitted(name)({'params': init_params()}, *args)


def batch_loss(batch, seed, beta, train, kl_mask='valid'):
  keys = prng.example_keys(jax.random.key(seed), batch['index'])
  fn = jax.jit(dialogue_losses.dialogue_loss, static_argnums=(0, 5))
  return fn(make_model(kl_mask), init_params(), batch, keys, beta, train)


BATCH = make_batch([1, 4, 3], [3, 7, 5])


def test_shapes():
  out = apply(BATCH, train=True)
  dims = chex.Dimensions(B=3, N=N, S=R - 1, V=V, Z=Z)
  chex.assert_shape(out['logits'], dims['BSV'])
  chex.assert_shape(out['kl_steps'], dims['BN'])
  chex.assert_shape(out['kl'], dims['B'])
  chex.assert_shape(
      [out[k] for k in ('z', 'mu', 'logvar', 'prior_mu', 'prior_logvar')],
      dims['BZ'],
  )
  chex.assert_tree_all_finite(out)
  c, h = method('encode_context', *(BATCH[f] for f in FIELDS[:4]))
  chex.assert_shape(c, (3, HC))
  chex.assert_shape(h, (3, N, HC))
  assert make_model().dec_hidden == HC + Z


def test_pytorch_initialisation():
  p = init_params()
  assert np.all(p['embed']['embedding'][PAD] == 0)
  gru_inputs = {
      ('utt_encoder', 'fwd'): (E, HU), ('utt_encoder', 'bwd'): (E, HU),
      ('ctx_rnn',): (2 * HU + 2, HC), ('dec_rnn',): (E, HC + Z),
  }
  for path, (d_in, h) in gru_inputs.items():
    gru = functools.reduce(lambda d, k: d[k], path, p)
    for kernel, rows in ((gru['ih']['kernel'], d_in),
                         (gru['step']['hh']['kernel'], h)):
      chex.assert_shape(kernel, (rows, 3 * h))
      k = np.asarray(kernel, np.float64)
      # torch's orthogonal_ on W = K^T [3H, in]: orthonormal columns of W
      # when 3H >= in, else orthonormal rows.
      gram = k @ k.T if rows <= 3 * h else k.T @ k
      np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-5)
    for bias in (gru['ih']['bias'], gru['step']['hh']['bias']):
      assert np.abs(bias).max() <= 1 / np.sqrt(h)
      assert np.std(bias) > 0
  assert gru_inputs[('utt_encoder', 'fwd')][0] > 3 * HU  # Both cases seen.
  for name in ('recog_mu', 'recog_logvar', 'prior_fc', 'prior_mu',
               'prior_logvar'):
    assert 0 < np.abs(p[name]['kernel']).max() <= 0.02
    assert np.all(p[name]['bias'] == 0)
  chex.assert_shape(p['recog_mu']['kernel'], (2 * HU + HC, Z))
  assert 0.05 < np.abs(p['out']['kernel']).max() <= 0.1
  assert np.all(p['out']['bias'] == 0)


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def numpy_gru(x, gru, h=None):
  """torch.nn.GRU's equations (gates r, z, n), step by step: states [T, H]."""
  wi, bi = gru['ih']['kernel'], gru['ih']['bias']
  wh, bh = gru['step']['hh']['kernel'], gru['step']['hh']['bias']
  h = np.zeros(wh.shape[0]) if h is None else h
  states = []
  for x_t in x:
    xr, xz, xn = np.split(x_t @ wi + bi, 3)
    hr, hz, hn = np.split(h @ wh + bh, 3)
    r, u = _sigmoid(xr + hr), _sigmoid(xz + hz)
    h = (1 - u) * np.tanh(xn + r * hn) + u * h
    states.append(h)
  return np.stack(states)


def test_utterance_encoder_equals_unpadded_bidirectional_gru():
  rng = np.random.default_rng(3)
  lengths = np.array([1, 4, 6, 2, 5], np.int32)
  # Non-pad garbage after each length: it must never be read.
  tokens = rng.integers(1, V, (len(lengths), U)).astype(np.int32)
  tokens[1, 1] = PAD  # A pad inside an utterance embeds as zeros.
  u = np.asarray(method('encode_utterances', tokens, lengths))
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64),
                             init_params())
  for row, n in enumerate(lengths):
    ids = tokens[row, :n]
    x = p['embed']['embedding'][ids] * (ids != PAD)[:, None]
    fwd = numpy_gru(x, p['utt_encoder']['fwd'])[-1]
    bwd = numpy_gru(x[::-1], p['utt_encoder']['bwd'])[-1]
    np.testing.assert_allclose(u[row], np.concatenate([fwd, bwd]),
                               rtol=1e-5, atol=1e-6)


def test_reverse_valid():
  x = jnp.arange(8.0).reshape(2, 4, 1)
  out = dm.reverse_valid(x, jnp.array([3, 1]))
  np.testing.assert_array_equal(out[..., 0], [[2, 1, 0, 3], [4, 5, 6, 7]])


def test_context_encoder_masks_padding_turns():
  args = [BATCH[f] for f in FIELDS[:4]]
  c, h = map(np.asarray, method('encode_context', *args))
  n = BATCH['num_turns']
  for b in range(len(n)):
    assert np.all(h[b, n[b]:] == 0)
    assert np.all(np.abs(h[b, : n[b]]) > 0)
    np.testing.assert_array_equal(c[b], h[b, n[b] - 1])
    # The same example with only its own turns (a narrower array).
    cb, hb = method('encode_context', *(a[b : b + 1, : n[b]] for a in args[:3]),
                    n[b : b + 1])
    np.testing.assert_allclose(hb[0], h[b, : n[b]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cb[0], c[b], rtol=1e-5, atol=1e-6)
  # Garbage in the padding turns changes nothing.
  rng = np.random.default_rng(5)
  pad = np.arange(N) >= n[:, None]
  context = np.where(pad[..., None], rng.integers(1, V, args[0].shape),
                     args[0]).astype(np.int32)
  lens = np.where(pad, rng.integers(1, U + 1, pad.shape), args[1])
  floors = np.where(pad, 1, args[2])
  c2, h2 = method('encode_context', context, lens.astype(np.int32),
                  floors.astype(np.int32), args[3])
  np.testing.assert_array_equal(c2, c)
  np.testing.assert_array_equal(h2, h)


def _kl_by_hand(batch, step_states):
  """KL(q_i || p_i) for given context states <f32>[B, S, H_c]: [B, S]."""
  u_x = method('encode_utterances', batch['response'][:, 1:],
               batch['response_len'] - 1)
  u_x = jnp.broadcast_to(u_x[:, None], (*step_states.shape[:2], 2 * HU))
  q = method('recognition', u_x, step_states)
  p = method('prior', step_states)
  return np.asarray(losses.gaussian_kl_two(*q, *p))


def test_kl_valid_mask_averages_each_examples_own_turns():
  out = apply(BATCH)
  _, h = method('encode_context', *(BATCH[f] for f in FIELDS[:4]))
  kl_steps = _kl_by_hand(BATCH, h)
  np.testing.assert_allclose(out['kl_steps'], kl_steps, rtol=1e-5)
  for b, n in enumerate(BATCH['num_turns']):
    np.testing.assert_allclose(out['kl'][b], kl_steps[b, :n].mean(),
                               rtol=1e-5)
  # q and p at c are those of the last valid step.
  last = BATCH['num_turns'] - 1
  q_last = method('recognition',
                  method('encode_utterances', BATCH['response'][:, 1:],
                         BATCH['response_len'] - 1),
                  h[np.arange(3), last])
  np.testing.assert_allclose(out['mu'], q_last[0], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(out['logvar'], q_last[1], rtol=1e-5, atol=1e-7)


def test_kl_padded_mask_is_the_original_formula():
  batch = make_batch([1, 3, 2], [3, 7, 5], seed=1)  # N_b = 3 < N = 4.
  n_b = 3
  _, h = method('encode_context', *(batch[f] for f in FIELDS[:4]))
  # SPEC B.4: (1/N_b) sum_b sum_{i < N_b} KL(q_i || p_i), H_i = 0 when padded.
  kl_steps = _kl_by_hand(batch, h[:, :n_b])
  kl_zero = _kl_by_hand(batch, jnp.zeros((3, 1, HC)))[:, 0]
  for b, n in enumerate(batch['num_turns']):
    np.testing.assert_allclose(kl_steps[b, n:], kl_zero[b], rtol=1e-5)
  expected = kl_steps.sum() / n_b
  total, aux = batch_loss(batch, 7, 1.0, False, 'padded')
  np.testing.assert_allclose(jnp.sum(aux['kl']), expected, rtol=1e-5)
  np.testing.assert_allclose(total, jnp.sum(aux['rec']) + expected,
                             rtol=1e-5)
  valid = apply(batch)['kl']
  assert not np.allclose(aux['kl'], valid)
  # An explicit N_b (the global one when split across devices) is used.
  out = apply(batch, kl_mask='padded', max_turns=jnp.int32(4))
  np.testing.assert_allclose(out['kl'], out['kl_steps'].sum(1) / 4,
                             rtol=1e-6)


def neural_dialog_cvae_kld(mu_q, lv_q, mu_p, lv_p):
  """NeuralDialog-CVAE models/utils.py `gaussian_kld`, in NumPy."""
  return -0.5 * np.sum(1 + (lv_q - lv_p) - (mu_p - mu_q) ** 2 / np.exp(lv_p)
                       - np.exp(lv_q) / np.exp(lv_p), axis=-1)


def test_gaussian_kl_two():
  rng = np.random.default_rng(0)
  mu_q, lv_q, mu_p, lv_p = rng.normal(size=(4, 6, 3))
  kl = np.asarray(losses.gaussian_kl_two(mu_q, lv_q, mu_p, lv_p))
  chex.assert_shape(kl, (6,))
  np.testing.assert_allclose(kl, neural_dialog_cvae_kld(mu_q, lv_q, mu_p, lv_p),
                             rtol=1e-5)
  # The multivariate closed form with diagonal covariances.
  for i in range(6):
    sq, sp = np.diag(np.exp(lv_q[i])), np.diag(np.exp(lv_p[i]))
    d = mu_p[i] - mu_q[i]
    inv = np.linalg.inv(sp)
    ref = 0.5 * (np.trace(inv @ sq) + d @ inv @ d - 3
                 + np.log(np.linalg.det(sp) / np.linalg.det(sq)))
    np.testing.assert_allclose(kl[i], ref, rtol=1e-5)
  assert np.all(kl > 0)
  np.testing.assert_allclose(losses.gaussian_kl_two(mu_p, lv_p, mu_p, lv_p), 0,
                             atol=1e-6)
  np.testing.assert_allclose(
      losses.gaussian_kl_two(mu_q, lv_q, 0.0, 0.0),
      losses.gaussian_kl(mu_q, lv_q), rtol=1e-6,
  )


def test_jitted_train_step_updates_every_parameter():
  model, params = make_model(), init_params()
  tx = optax.adam(1e-2)
  keys = prng.example_keys(jax.random.key(2), BATCH['index'])

  @jax.jit
  def step(params, opt_state):
    (loss, aux), grads = jax.value_and_grad(dialogue_losses.dialogue_loss, 1,
                                            has_aux=True)(
        model, params, BATCH, keys, 0.3, True)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), loss, aux

  new, loss, aux = step(params, tx.init(params))
  assert np.isfinite(loss)
  np.testing.assert_allclose(
      loss, jnp.sum(aux['rec'] + 0.3 * aux['kl']), rtol=1e-6)
  np.testing.assert_array_equal(aux['tokens'], BATCH['response_len'] - 1)
  changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)),
                                   params, new)
  assert all(jax.tree_util.tree_leaves(changed)), changed
  assert np.all(new['embed']['embedding'][PAD] == 0)


def test_noise_dict_entries_act_where_named():
  keys = prng.example_keys(jax.random.key(4), BATCH['index'])
  noise = dm.batch_noise(make_model(), BATCH, keys, True)
  names = ('ctx_emb_keep', 'ctx_keep', 'x_emb_keep', 'dec_keep')
  assert all(noise[name] is not None for name in names)
  assert all(v is None for k, v in dm.batch_noise(
      make_model(), BATCH, keys, False).items() if k != 'eps')
  call = lambda n: _jitted('__call__')(
      {'params': init_params()}, *(BATCH[f] for f in FIELDS), n)
  out = call(noise)
  # The decoder's masks change the logits only, not the encoders' KL.
  no_dec = call({**noise, 'dec_keep': None})
  np.testing.assert_allclose(no_dec['kl_steps'], out['kl_steps'], rtol=1e-6)
  assert not np.allclose(no_dec['logits'], out['logits'])
  # The context's masks change the KL.
  assert not np.allclose(call({**noise, 'ctx_keep': None})['kl_steps'],
                         out['kl_steps'])
  # Without 'eps' (or without noise), z is the mean of q.
  for none in (None, {}):
    mean = call(none)
    np.testing.assert_array_equal(mean['z'], mean['mu'])


def test_loss_weights_and_noise_are_per_example():
  full, aux = batch_loss(BATCH, 4, 1.0, True)
  out = apply(BATCH, train=True, seed=4)
  # One row alone, with its own key, gets the same dropout and epsilon.
  for b in range(3):
    row = {k: v[b : b + 1] for k, v in BATCH.items()}
    single = apply(row, train=True, seed=4)
    for name in ('logits', 'kl_steps', 'z'):
      np.testing.assert_allclose(single[name][0], out[name][b], rtol=1e-5,
                                 atol=1e-6)
  assert not np.allclose(apply(BATCH)['logits'], out['logits'])
  # Weight-0 rows are left out of the loss.
  padded = dict(BATCH, weights=np.array([1, 1, 0], np.float32))
  part, _ = batch_loss(padded, 4, 1.0, True)
  np.testing.assert_allclose(part, jnp.sum((aux['rec'] + aux['kl'])[:2]),
                             rtol=1e-6)
  assert full > part
  # rec: the CE of the non-pad targets response[:, 1:] only.
  logp = jax.nn.log_softmax(out['logits'])
  targets = BATCH['response'][:, 1:]
  ce = -np.take_along_axis(np.asarray(logp), targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(aux['rec'], np.sum(ce * (targets != PAD), 1),
                             rtol=1e-5)


def test_decode_step_equals_teacher_forcing():
  rng = np.random.default_rng(1)
  z, c = rng.normal(size=(2, Z)), rng.normal(size=(2, HC))
  inputs = BATCH['response'][:2, :-1]
  forced = method('decode', inputs, z, c)
  carry = method('decode_init', z, c)
  for t in range(inputs.shape[1]):
    carry, logits = method('decode_step', carry, inputs[:, t])
    np.testing.assert_allclose(logits, forced[:, t], rtol=1e-5, atol=1e-6)


def test_sample_responses():
  batch = dict(BATCH, index=np.array([5, 9, 2], np.int32))
  key = jax.random.key(11)
  sample = functools.partial(dialogue_decoding.sample_responses, make_model(),
                             init_params(), key=key, num_samples=4,
                             max_len=9, bos_id=BOS, eos_id=EOS)
  tokens, lengths = sample(batch)
  chex.assert_shape(tokens, (3, 4, 9))
  chex.assert_shape(lengths, (3, 4))
  again, _ = sample(batch)
  np.testing.assert_array_equal(again, tokens)
  # A context's samples depend on its index, not on the other rows.
  flipped = {k: v[::-1] for k, v in batch.items()}
  tokens_f, lengths_f = sample(flipped)
  np.testing.assert_array_equal(tokens_f, tokens[::-1])
  np.testing.assert_array_equal(lengths_f, lengths[::-1])
  other, _ = dialogue_decoding.sample_responses(
      make_model(), init_params(), batch, jax.random.key(12), 4, 9,
      bos_id=BOS, eos_id=EOS)
  assert np.any(other != tokens)
  # Lengths count the tokens before the first EOS (max_len if none).
  expected = [list(r).index(EOS) if EOS in r else 9
              for r in np.asarray(tokens).reshape(-1, 9)]
  np.testing.assert_array_equal(lengths.reshape(-1), expected)
  # Greedy: each token is the argmax of the teacher-forced decoder fed the
  # previous ones, from [z_k; c] with z_k drawn from the prior.
  c, _ = method('encode_context', *(batch[f] for f in FIELDS[:4]))
  mu, logvar = method('prior', c)
  z = dialogue_decoding.prior_samples(
      prng.example_keys(key, batch['index']), mu, logvar, 4)
  flat = np.asarray(tokens).reshape(12, 9)
  inputs = np.concatenate([np.full((12, 1), BOS), flat[:, :-1]], axis=1)
  logits = method('decode', inputs.astype(np.int32), z.reshape(12, Z),
                  jnp.repeat(c, 4, axis=0))
  steps = np.arange(9)
  upto_eos = steps[None] <= lengths.reshape(12, 1)  # Up to the first EOS.
  np.testing.assert_array_equal(np.argmax(logits, -1)[upto_eos],
                                flat[upto_eos])
  assert np.all(flat[~upto_eos] == PAD)  # Then PAD.


def test_sampling_stops_when_every_row_has_ended():
  params = jax.tree_util.tree_map(lambda x: x, init_params())  # A copy.
  params['out'] = dict(params['out'], bias=params['out']['bias'].at[EOS].set(
      1e4))  # EOS is always the argmax: every row ends at step 1.
  batch = dict(BATCH, index=np.array([5, 9, 2], np.int32))
  tokens, lengths = dialogue_decoding.sample_responses(
      make_model(), params, batch, jax.random.key(0), 2, 7, bos_id=BOS,
      eos_id=EOS)
  np.testing.assert_array_equal(lengths, np.zeros((3, 2)))
  np.testing.assert_array_equal(tokens[..., 0], np.full((3, 2), EOS))
  np.testing.assert_array_equal(tokens[..., 1:], PAD)


def test_row_compaction_gives_the_same_samples():
  # EOS wins once hidden unit 1 is large enough: rows end at different steps.
  params = jax.tree_util.tree_map(lambda x: x, init_params())  # A copy.
  kernel, bias = params['out']['kernel'], params['out']['bias']
  params['out'] = dict(
      kernel=kernel.at[:, EOS].set(50.0 * jax.nn.one_hot(1, kernel.shape[0])),
      bias=bias.at[EOS].set(-10.0))
  batch = dict(BATCH, index=np.array([5, 9, 2], np.int32))
  tokens, lengths = dialogue_decoding.sample_responses(
      make_model(), params, batch, jax.random.key(0), 4, 12, bos_id=BOS,
      eos_id=EOS)
  # Rows end at 0, 1, 2, ... steps, and only 5 of 12 run all 12 steps, so
  # from some step on only the 6-row prefix is decoded.
  assert 4 <= len(set(np.asarray(lengths).ravel().tolist()))
  assert np.sum(np.asarray(lengths) == 12) <= 6
  every_row, every_len = dialogue_decoding._sample_responses(  # pylint: disable=protected-access
      make_model(), params, batch, jax.random.key(0), 4, 12, bos_id=BOS,
      eos_id=EOS, compact=False)
  np.testing.assert_array_equal(tokens, every_row)
  np.testing.assert_array_equal(lengths, every_len)


def test_rejects_unknown_kl_mask():
  with pytest.raises(ValueError, match='kl_mask'):
    apply(BATCH, kl_mask='all')
