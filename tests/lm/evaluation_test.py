"""Tests of evaluation (standard and paper), IW-NLL, decoding, interpolation."""

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twr_jax import tasks
from twr_jax import train
from twr_jax.core import losses
from twr_jax.core import optim
from twr_jax.core import parallel
from twr_jax.core import schedules
from twr_jax.core import text
from twr_jax.lm import data as datasets
from twr_jax.lm import decoding as decode
from twr_jax.lm import evaluation as evaluate
from twr_jax.lm import input_pipeline
from twr_jax.lm import interpolate
from twr_jax.lm import likelihood
from twr_jax.lm import model as models
from twr_jax.lm import paper_eval
from twr_jax.lm import task as lm_task

from tests.train_test import tiny_config

PTB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))), 'shared', 'data', 'ptb')


@functools.lru_cache(maxsize=None)
def _train(z_mode):
  """A tiny model after some steps, so that posteriors differ and decodes end."""
  config = tiny_config(**{'model.z_mode': z_mode})
  data = datasets.load(config)
  model = models.model_from_config(config, len(data.vocab))
  state = lm_task.create_train_state(model, optim.optimizer_from_config(config),
                                   jax.random.key(0))
  step = jax.jit(lm_task.make_train_step(
      model, config, schedules.make_kl_schedule('constant')))
  batcher = input_pipeline.Batcher(data.splits['train'], 16, 8, 0)
  for s in range(60):
    state, _ = step(state, batcher.train_batch(s), jax.random.key(1))
  return config, data, model, jax.device_get(state.params)


@pytest.fixture(scope='module', params=['last', 'mean'])
def trained(request):
  return _train(request.param)


@pytest.fixture(scope='module')
def trained_mean():
  return _train('mean')


# --- IW-NLL -------------------------------------------------------------


def test_iw_estimate_converges_on_linear_gaussian_toy():
  """z ~ N(0, I2), x | z ~ N(Az + b, s^2 I3): log p(x) is analytic."""
  rng = np.random.default_rng(0)
  a, b, s = rng.normal(size=(3, 2)), rng.normal(size=3), 0.7
  x = rng.normal(size=3)
  cov = a @ a.T + s**2 * np.eye(3)
  d = x - b
  log_px = -0.5 * (d @ np.linalg.solve(cov, d) + np.linalg.slogdet(cov)[1]
                   + 3 * math.log(2 * math.pi))
  # A deliberately imperfect proposal: the exact posterior, shifted, widened.
  prec = a.T @ a / s**2 + np.eye(2)
  post_cov = np.linalg.inv(prec)
  mu = post_cov @ a.T @ d / s**2 + 0.3
  logvar = np.log(np.diag(post_cov) * 1.5)

  def estimate(k, seed):
    eps = np.random.default_rng(seed).normal(size=(k, 2))
    z = mu + np.exp(logvar / 2) * eps
    resid = x - z @ a.T - b
    log_lik = -0.5 * np.sum(resid**2 / s**2 + math.log(2 * math.pi * s**2), -1)
    log_w = np.asarray(likelihood.gaussian_log_weights(
        jnp.asarray(log_lik), jnp.asarray(z), jnp.asarray(eps),
        jnp.asarray(logvar)), np.float64)
    return np.logaddexp.reduce(log_w) - math.log(k), log_w.mean()

  errors = []
  for k in (1, 10, 100, 5000):
    est = [estimate(k, seed) for seed in range(20)]
    iw = np.array([e[0] for e in est])
    elbo = np.array([e[1] for e in est])
    assert np.all(iw >= elbo - 1e-9)  # log-mean-exp >= mean-log.
    errors.append(abs(iw.mean() - log_px))
  assert errors[-1] < 0.01 and errors[-1] < errors[0] / 5, errors


def test_iw_with_one_sample_equals_single_sample_elbo(trained):
  config, data, model, params = trained
  seqs = data.splits['valid'][:4]
  batcher = input_pipeline.Batcher(seqs, 4, 8, 0)
  key = jax.random.key(5)
  got = likelihood.log_likelihood(model, params, batcher, key, 1)['log_px']
  # By hand: sample 0 of sentence i uses fold_in(fold_in(key, i), 0).
  for i, seq in enumerate(seqs):
    tokens = jnp.asarray(seq)[None]
    lengths = jnp.asarray([len(seq)])
    mu, logvar = model.apply({'params': params}, tokens,
                             method=models.TWRVAE.encode)
    z_mu, z_lv = models.pool_posterior(mu, logvar, lengths, model.z_mode)
    eps = jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, i), 0),
                            z_mu.shape[-1:])
    z = z_mu[0] + jnp.exp(0.5 * z_lv[0]) * eps
    logits = model.apply({'params': params}, tokens[:, :-1], z[None],
                         method=models.TWRVAE.decode)
    rec = losses.token_nll(logits, tokens[:, 1:], lengths)[0]
    log_q = -0.5 * np.sum(np.square(eps) + np.log(2 * np.pi) + z_lv[0])
    log_p = -0.5 * np.sum(np.square(z) + np.log(2 * np.pi))
    np.testing.assert_allclose(got[i], -rec + log_p - log_q, rtol=1e-5)


def test_iw_does_not_depend_on_batch_or_chunk_size(trained):
  config, data, model, params = trained
  seqs = data.splits['valid'][:12]
  key = jax.random.key(2)
  a = likelihood.log_likelihood(model, params,
                                input_pipeline.Batcher(seqs, 4, 8, 0), key, 20,
                                token_budget=10**6)['log_px']
  b = likelihood.log_likelihood(model, params,
                                input_pipeline.Batcher(seqs, 8, 8, 0), key, 20,
                                token_budget=8 * 16 * 2)['log_px']
  np.testing.assert_allclose(a, b, rtol=1e-5)


@pytest.mark.parametrize('lengths', [[3, 7, 5], [2, 4, 3]])
def test_stepwise_token_nll_equals_token_nll_of_the_logits(lengths):
  # T' = 6 decoder steps; the second case ends before T' (skipped steps).
  n, t, h_dim, v = len(lengths), 6, 5, 11
  h = jax.random.normal(jax.random.key(0), (n, t, h_dim))
  out = {'kernel': jax.random.normal(jax.random.key(1), (h_dim, v)),
         'bias': jax.random.normal(jax.random.key(2), (v,))}
  targets = jax.random.randint(jax.random.key(3), (n, t), 0, v)
  lengths = jnp.asarray(lengths, jnp.int32)
  want = losses.token_nll(h @ out['kernel'] + out['bias'], targets, lengths)
  got = likelihood.stepwise_token_nll(h, out, targets, lengths)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_chunk_size_is_a_divisor_within_budget():
  assert likelihood.chunk_size(500, 16, 24, 16384) == 25
  assert likelihood.chunk_size(500, 1, 10, 10**9) == 500
  assert likelihood.chunk_size(500, 64, 88, 100) == 1


def test_iw_nll_is_below_elbo_nll(trained):
  config, data, model, params = trained
  seqs = data.splits['valid']
  key = jax.random.key(3)
  iw = likelihood.log_likelihood(
      model, params, input_pipeline.Batcher(seqs, 16, 8, 0), key, 50)
  layout = parallel.make_layout('jit')
  out = evaluate.Evaluator(model, config, layout, key).outputs(
      params, input_pipeline.Batcher(seqs, 16, 8, 0))
  elbo_nll = evaluate.summarise(out, config)['nll_elbo']
  assert -np.mean(iw['log_px']) < elbo_nll


# --- Standard and paper evaluation ---------------------------------------


def test_evaluation_does_not_depend_on_batch_size(trained):
  config, data, model, params = trained
  seqs = data.splits['valid']
  key = jax.random.key(4)
  results = []
  for batch_size, mode in ((8, 'jit'), (16, 'pmap')):
    layout = parallel.make_layout(mode)
    out = evaluate.Evaluator(model, config, layout, key).outputs(
        layout.replicate(params), input_pipeline.Batcher(seqs, batch_size, 8, 0))
    results.append((evaluate.summarise(out, config), evaluate.kl_profile(out)))
  (s1, p1), (s2, p2) = results
  assert s1.keys() == s2.keys()
  for k in s1:
    assert s1[k] == pytest.approx(s2[k], rel=1e-5, abs=1e-6), k
  np.testing.assert_allclose(p1['kl'], p2['kl'], rtol=1e-5)


def test_ppl_denominators_on_a_toy_corpus(trained_mean):
  config, data, model, params = trained_mean
  vocab = data.vocab
  lines = ['a b c', 'd e', 'f g h i']  # 9 words, 3 sentences.
  seqs = input_pipeline.encode_lines(lines, vocab)
  key = jax.random.key(0)
  out = evaluate.Evaluator(model, config, parallel.make_layout('jit'),
                           key).outputs(params,
                                        input_pipeline.Batcher(seqs, 4, 8, 0))
  standard = evaluate.summarise(out, config)
  assert standard['tokens'] == 9 + 3  # |x| + 1: EOS counted, BOS not.
  assert standard['ppl'] == pytest.approx(
      math.exp(standard['nll_elbo'] * 3 / 12))
  paper = paper_eval.evaluate(model, params, seqs, 'all', key, 64, 8)
  assert paper['words'] == 9 + 2 * 3  # The original counts BOS too.
  assert paper['ppl'] == pytest.approx(math.exp(paper['nll'] * 3 / 15))


def test_ptb_test_denominators():
  """SPEC D: PTB test PPL denominators, He-style 83,946 vs TWR-style 87,707."""
  lines = text.read_corpus(PTB, splits=('train', 'test'))
  vocab = text.Vocab.build([text.split(l) for l in lines['train']])
  seqs = input_pipeline.encode_lines(lines['test'], vocab)
  assert sum(len(s) - 1 for s in seqs) == 83946
  batches = list(input_pipeline.paper_batches(seqs, 64, 8))
  assert sum(int(b['lengths'][b['weights'] > 0].sum()) for b in batches) == 87707
  # The original's batches: consecutive length-sorted chunks of 64.
  assert len(batches) == math.ceil(len(seqs) / 64)


def test_paper_protocol_uses_padded_positions(trained_mean):
  """Compat semantics: a short sentence batched with a long one is encoded
  through the pads (SPEC A.9.4), unlike the standard evaluation."""
  config, data, model, params = trained_mean
  short, long_ = data.splits['valid'][0], max(data.splits['valid'], key=len)
  key = jax.random.key(0)
  alone = paper_eval.evaluate(model, params, [short], 'all', key, 64, 8)
  mixed = paper_eval.evaluate(model, params, [short, long_], 'all', key, 64, 8)
  with_long = paper_eval.evaluate(model, params, [long_], 'all', key, 64, 8)
  # Batched with the long one, the short sentence's KL average runs over the
  # long one's padded length, so the pair's total differs from the sum of
  # the two alone; the standard evaluation has no such dependence.
  assert 2 * mixed['kl'] != pytest.approx(alone['kl'] + with_long['kl'],
                                          rel=1e-3)


# --- Decoding and interpolation ------------------------------------------


def test_decode_step_equals_teacher_forcing(trained_mean):
  config, data, model, params = trained_mean
  tokens = jnp.asarray(data.splits['valid'][0])[None]
  z = jax.random.normal(jax.random.key(0), (1, config.model.latent))
  want = model.apply({'params': params}, tokens[:, :-1], z,
                     method=models.TWRVAE.decode)
  carry = model.apply({'params': params}, z, method=models.TWRVAE.decode_init)
  for t in range(tokens.shape[1] - 1):
    carry, logits = model.apply({'params': params}, carry, tokens[:, t], z,
                                method=models.TWRVAE.decode_step)
    np.testing.assert_allclose(logits, want[:, t], atol=1e-5)


def test_greedy_is_deterministic_and_stops_at_eos(trained_mean):
  config, _, model, params = trained_mean
  z = jax.random.normal(jax.random.key(1), (16, config.model.latent))
  t1, l1 = decode.greedy(model, params, z, 25)
  t2, l2 = decode.greedy(model, params, z, 25)
  np.testing.assert_array_equal(t1, t2)
  np.testing.assert_array_equal(l1, l2)
  t1 = np.asarray(t1)
  assert np.any(np.asarray(l1) < 25)  # Some sentences end.
  for row, n in zip(t1, np.asarray(l1)):
    assert np.all(row[n:] == text.PAD)
    assert not np.any(np.isin(row[:n], [text.PAD, text.BOS, text.EOS]))
  # Greedy = the argmax of each step's logits, checked step by step.
  carry = model.apply({'params': params}, z, method=models.TWRVAE.decode_init)
  prev = jnp.full((16,), text.BOS)
  for t in range(5):
    carry, logits = model.apply({'params': params}, carry, prev, z,
                                method=models.TWRVAE.decode_step)
    logits = np.array(logits)
    logits[:, [text.PAD, text.BOS]] = -np.inf
    prev = jnp.asarray(logits.argmax(-1))
    live = np.asarray(l1) > t
    np.testing.assert_array_equal(t1[live, t], np.asarray(prev)[live])


def test_beam_of_one_is_greedy_and_beams_score_higher(trained_mean):
  config, _, model, params = trained_mean
  z = jax.random.normal(jax.random.key(2), (32, config.model.latent))
  g, gl = decode.greedy(model, params, z, 40)
  b1, bl = decode.beam_search(model, params, z, 40, 1)
  np.testing.assert_array_equal(g, b1)
  np.testing.assert_array_equal(gl, bl)

  def log_prob(tokens, lengths, max_len=40):
    """The beam's objective: log p of the emitted tokens, EOS included."""
    lengths = np.asarray(lengths)
    ended = lengths < max_len
    full = np.full((32, max_len + 1), text.PAD, np.int32)
    full[:, 0] = text.BOS
    full[:, 1:] = np.asarray(tokens)
    full[ended, lengths[ended] + 1] = text.EOS
    scored = np.where(ended, lengths + 1, max_len)
    logits = np.array(model.apply({'params': params}, jnp.asarray(full[:, :-1]),
                                  z, method=models.TWRVAE.decode))
    logits[..., [text.PAD, text.BOS]] = -np.inf
    return -np.asarray(losses.token_nll(jnp.asarray(logits),
                                        jnp.asarray(full[:, 1:]),
                                        jnp.asarray(scored + 1)))
  # A wider beam finds more probable outputs than greedy on average (not
  # always: greedy's prefix can be pruned from the beam).
  b4, b4l = decode.beam_search(model, params, z, 40, 4)
  assert log_prob(b4, b4l).mean() > log_prob(g, gl).mean()
  for row, n in zip(np.asarray(b4), np.asarray(b4l)):
    assert np.all(row[n:] == text.PAD)
    assert not np.any(np.isin(row[:n], [text.PAD, text.BOS, text.EOS]))


def test_interpolation_endpoints_equal_direct_decoding(trained_mean):
  config, data, model, params = trained_mean
  seqs = data.splits['test'][:20]
  result = interpolate.run(model, params, data.vocab, seqs, num_pairs=3,
                           num_points=5, seed=1, max_len=30)
  assert result['alphas'] == [0.0, 0.25, 0.5, 0.75, 1.0]
  for ex in result['examples']:
    i, j = ex['index']
    for end, alpha_index in ((i, 0), (j, -1)):
      seq = seqs[end]
      z = interpolate.posterior_means(model, params, jnp.asarray(seq)[None],
                                      jnp.asarray([len(seq)]))
      tokens, _ = decode.greedy(model, params, z, 30)
      assert ex['decodes'][alpha_index] == ' '.join(
          data.vocab.decode(np.asarray(tokens)[0]))
  for ref in ('x1', 'x2'):
    for curve in result['rouge'][ref].values():
      assert len(curve) == 5 and all(0 <= v <= 1 for v in curve)


def test_evaluate_generate_interpolate_on_a_trained_workdir(tmp_path):
  """End to end on a workdir, as the launchers (and the notebook) run it."""
  import json  # pylint: disable=g-import-not-at-top
  from twr_jax.lm import generate  # pylint: disable=g-import-not-at-top
  from twr_jax.lm import report as lm_eval  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(tiny_config(), workdir)
  result = lm_eval.evaluate_run(workdir, 'test', iw_samples=5)
  json.dumps(result)  # JSON-ready.
  s, p = result['standard'], result['paper']
  for key in ('iw_nll', 'ppl', 'nll_elbo', 'ppl_elbo', 'kl', 'kl_twr',
              'kl_last', 'mi', 'mi_64', 'au', 'kl_profile'):
    assert key in s, key
  assert s['iw_nll'] <= s['nll_elbo'] + 1.0  # K=5: close to or below.
  for key in ('nll', 'ppl', 'kl', 'mi', 'words', 'note'):
    assert key in p, key
  assert 'NOT a likelihood bound' in lm_eval.format_result(result)
  run = tasks.load_run(workdir)
  for mode, dec in (('prior', 'sample'), ('reconstruct', 'beam')):
    lines = generate.generate(run, workdir, mode, dec, num=3, max_len=12)
    assert len(lines) == 3
    if mode == 'reconstruct':
      assert all('\t' in l for l in lines)
