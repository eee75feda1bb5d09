"""Mixed precision (`config.train.compute_dtype`), the backend-chosen output
layer path and the pmap state layout."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from configs import synthetic as synthetic_config
from twr_jax import errors
from twr_jax import tasks
from twr_jax import train
from twr_jax.core import layers
from twr_jax.core import losses
from twr_jax.core import optim
from twr_jax.core import parallel
from twr_jax.core import prng
from twr_jax.core import schedules
from twr_jax.lm import generate
from twr_jax.lm import model as models
from twr_jax.lm import report as lm_eval
from twr_jax.lm import task as lm_task

BATCH = dict(
    tokens=np.array([[1, 5, 7, 4, 9, 2, 0, 0], [1, 6, 2, 0, 0, 0, 0, 0],
                     [1, 8, 8, 3, 11, 10, 4, 2]], np.int32),
    lengths=np.array([6, 3, 8], np.int32),
    weights=np.ones(3, np.float32), index=np.arange(3, dtype=np.int32))


def tiny_config(dtype, **overrides):
  c = synthetic_config.get_config('vae')  # Annealed KL: beta resumes too.
  c.data.synthetic.update(num_train=96, num_valid=32, num_test=32)
  c.model.update(emb_dim=8, hidden=16, latent=4)
  c.train.update(batch_size=16, num_steps=12, log_every_steps=4,
                 eval_every_steps=6, learning_rate=3e-3, compute_dtype=dtype)
  c.eval.update(batch_size=16, mi_group_size=8)
  return default.set_fields(c, overrides)


def _one_step(dtype):
  config = tiny_config(dtype)
  config.model.update(emb_dim=16, hidden=16)
  model = models.model_from_config(config, 12)
  state = lm_task.create_train_state(model, optim.optimizer_from_config(config),
                                   jax.random.key(0))
  step = jax.jit(lm_task.make_train_step(model, config,
                                       schedules.make_kl_schedule('constant')))
  keys = prng.example_keys(jax.random.key(1), BATCH['index'], 0)
  noise = models.example_noise(keys, BATCH['tokens'].shape[1], model.emb_dim,
                               model.latent, model.dropout, train=True)
  # Jitted: one program instead of one per operation (the dtypes are the same).
  out = jax.jit(lambda p: model.apply({'params': p}, BATCH['tokens'],
                                      BATCH['lengths'], noise))(state.params)
  new_state, metrics = step(state, BATCH, jax.random.key(1))
  return out, new_state, metrics


def test_bfloat16_loss_is_close_to_float32_and_the_state_stays_float32():
  out32, state32, m32 = _one_step('float32')
  out16, state16, m16 = _one_step('bfloat16')
  # The matmuls' inputs lose 16 mantissa bits (relative rounding 2^-9 each);
  # the loss sums ~20 such token terms and a KL: well within 1 %.
  np.testing.assert_allclose(m16['loss'], m32['loss'], rtol=1e-2)
  np.testing.assert_allclose(m16['rec'], m32['rec'], rtol=1e-2)
  assert m16['loss'] != m32['loss']  # bfloat16 really computed something.
  assert out16['logits'].dtype == jnp.bfloat16
  assert out32['logits'].dtype == jnp.float32
  for k in ('mu', 'logvar', 'z', 'z_mu', 'z_logvar'):
    assert out16[k].dtype == jnp.float32, k
  for leaf in jax.tree_util.tree_leaves((state16.params, state16.opt_state)):
    assert leaf.dtype in (jnp.float32, jnp.int32), leaf.dtype
  for k, v in m16.items():
    assert v.dtype == jnp.float32, k


def test_losses_compute_in_float32_from_bfloat16_inputs():
  logits = jnp.array([[[30.0, 0.0, -2.0], [1.0, 1.5, 0.25]]], jnp.bfloat16)
  targets = jnp.array([[1, 2]], jnp.int32)
  got = losses.token_nll(logits, targets, jnp.array([3], jnp.int32))
  want = losses.token_nll(logits.astype(jnp.float32), targets,
                          jnp.array([3], jnp.int32))
  assert got.dtype == jnp.float32
  np.testing.assert_array_equal(got, want)
  mu = jnp.array([[0.5, -1.0]], jnp.bfloat16)
  logvar = jnp.array([[0.25, -0.5]], jnp.bfloat16)
  kl = losses.gaussian_kl(mu, logvar)
  assert kl.dtype == jnp.float32
  # By hand: -1/2 sum(1 + lv - mu^2 - e^lv).
  want = -0.5 * sum(1 + lv - m**2 - np.exp(lv)
                    for m, lv in ((0.5, 0.25), (-1.0, -0.5)))
  np.testing.assert_allclose(kl[0], want, rtol=1e-6)


def test_unknown_compute_dtype_names_the_field():
  config = tiny_config('float16')
  with pytest.raises(errors.ConfigError, match='train.compute_dtype'):
    models.model_from_config(config, 12)
  with pytest.raises(ValueError, match="compute_dtype = 'float16'.*'bfloat16'"):
    tasks.validate(config)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_plain_and_fused_linear_have_equal_values_and_gradients(dtype):
  kx, kw, kb, kg = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(kx, (2, 3, 5)).astype(dtype)
  w = jax.random.normal(kw, (5, 7)).astype(dtype)
  b = jax.random.normal(kb, (7,)).astype(dtype)
  g = jax.random.normal(kg, (2, 3, 7)).astype(dtype)

  def vjp(fused):
    y, pull = jax.vjp(lambda *a: layers.linear(*a, fused=fused), x, w, b)
    return y, pull(g)

  (y_f, grads_f), (y_p, grads_p) = vjp(True), vjp(False)
  tol = dict(rtol=1e-5, atol=1e-5) if dtype == jnp.float32 else dict(
      rtol=2e-2, atol=5e-2)
  np.testing.assert_allclose(np.float32(y_f), np.float32(y_p), **tol)
  for a, c in zip(grads_f, grads_p):
    assert a.dtype == c.dtype == dtype
    np.testing.assert_allclose(np.float32(a), np.float32(c), **tol)
  # By hand, in float32: y = x w + b.
  want = np.float32(x) @ np.float32(w) + np.float32(b)
  np.testing.assert_allclose(np.float32(y_p), want, **tol)


def test_output_layer_path_follows_the_backend():
  assert layers.fused_affine_default() == (jax.default_backend() == 'cpu')
  config = tiny_config('float32')
  model = models.model_from_config(config, 12)
  jaxpr = str(jax.make_jaxpr(lambda p: model.apply(
      {'params': p}, jnp.ones((2, 3, 16)), method=lambda m, h: m.out(h)))(
          lm_task.init_params(model, jax.random.key(0))))
  assert ('custom_vjp' in jaxpr) == layers.fused_affine_default()


def test_replicated_state_has_the_pmap_steps_output_sharding():
  # Otherwise newer JAX compiles the step a second time on its second call.
  config = tiny_config('float32')
  model = models.model_from_config(config, 12)
  layout = parallel.Layout('pmap', jax.local_device_count())
  state = layout.replicate(lm_task.create_train_state(
      model, optim.optimizer_from_config(config), jax.random.key(0)))
  step = layout.compile(lm_task.make_train_step(
      model, config, schedules.make_kl_schedule('constant')), 3,
                        broadcast_argnums=(2,))
  rows = np.arange(layout.num_devices) % 3  # One sentence per device.
  batch = {k: v[rows] for k, v in BATCH.items()}
  new_state, _ = step(state, layout.shard(batch), jax.random.key(1))
  for a, b in zip(jax.tree_util.tree_leaves(state),
                  jax.tree_util.tree_leaves(new_state)):
    assert a.sharding == b.sharding


def test_bfloat16_trains_resumes_exactly_and_every_lm_evaluator_runs(tmp_path):
  config = tiny_config('bfloat16')
  full, resumed = str(tmp_path / 'full'), str(tmp_path / 'resumed')
  want = train.train_and_evaluate(config, full)
  assert train.train_and_evaluate(config, resumed, stop_at_step=5) == {}
  assert train.train_and_evaluate(config, resumed) == want
  runs = {w: tasks.load_run(w, 'last') for w in (full, resumed)}
  chex.assert_trees_all_equal(runs[full].params, runs[resumed].params)
  run = runs[full]
  assert run.model.dtype == jnp.bfloat16  # Evaluation follows the run.
  assert tasks.load_run(full, 'last', compute_dtype='float32'
                              ).model.dtype == jnp.float32
  train_losses = [r['loss'] for r in _metrics(full) if r['split'] == 'train']
  assert train_losses[-1] < train_losses[0]
  # ELBO (valid, test above), IW-NLL, the paper protocol, MI / AU.
  result = lm_eval.evaluate_run(full, 'test', iw_samples=5)
  s, p = result['standard'], result['paper']
  assert np.isfinite(s['iw_nll']) and s['iw_nll'] <= s['nll_elbo'] + 1.0
  assert np.isfinite(p['nll']) and np.isfinite(s['mi'])
  for mode, dec in (('prior', 'sample'), ('reconstruct', 'beam'),
                    ('reconstruct', 'greedy')):
    assert len(generate.generate(run, full, mode, dec, num=3,
                                 max_len=12)) == 3


def _metrics(workdir):
  import json  # pylint: disable=g-import-not-at-top
  with open(f'{workdir}/metrics.jsonl') as f:
    return [json.loads(line) for line in f]


def test_bfloat16_dialogue_trains_and_evaluates(tmp_path):
  from configs import dailydialog  # pylint: disable=g-import-not-at-top
  from twr_jax.dialogue import report as dialogue_eval  # pylint: disable=g-import-not-at-top
  words = 'hello how are you fine thanks what about tea yes no ok'.split()
  rng = np.random.default_rng(0)
  for split, n in (('train', 24), ('valid', 8), ('test', 8)):
    (tmp_path / f'{split}.utts.txt').write_text(''.join(
        ' __eou__ '.join(' '.join(rng.choice(words, rng.integers(2, 8)))
                         for _ in range(rng.integers(3, 6))) + ' __eou__\n'
        for _ in range(n)))
  c = dailydialog.get_config('tiny')
  c.data.dir = str(tmp_path)
  c.data.update(vocab_size=40, max_utt_len=12, window=5)
  c.model.update(emb_dim=8, utt_hidden=8, ctx_hidden=8, latent=4)
  c.train.update(batch_size=8, num_steps=4, log_every_steps=2,
                 eval_every_steps=4, compute_dtype='bfloat16')
  c.eval.update(batch_size=8, sample_batch_size=8, num_samples=2, max_len=5)
  workdir = str(tmp_path / 'run')
  results = train.train_and_evaluate(c, workdir)
  assert np.isfinite(results['test']['ppl'])
  assert tasks.load_run(workdir, 'last').model.dtype == jnp.bfloat16
  result = dialogue_eval.evaluate_run(workdir, 'test', word_vectors='')
  assert result['num_contexts'] > 0
  assert np.isfinite(result['paper']['bleu_f1'])
