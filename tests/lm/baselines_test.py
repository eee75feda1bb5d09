"""Tests of the language-model baselines' defining properties.

`:vae_cyclical` (Fu et al. 2019), `:vae_freebits` (Kingma et al. 2016),
`:bn_vae` (Zhu et al. 2020) and `:lagging_vae` (He et al. 2019); see
BUILD_NOTES.md, "Baselines". Tiny models; each jitted step compiles once.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from configs import synthetic as synthetic_config
from twr_jax import tasks
from twr_jax import train
from twr_jax.core import checkpoint
from twr_jax.core import losses
from twr_jax.core import parallel
from twr_jax.core import prng
from twr_jax.core import schedules
from twr_jax.core import text
from twr_jax.lm import data as datasets
from twr_jax.lm import input_pipeline
from twr_jax.lm import lagging
from twr_jax.lm import losses as lm_losses
from twr_jax.lm import model as models
from twr_jax.lm import task as lm_task


def tiny_config(variant, **overrides):
  c = synthetic_config.get_config(variant)
  c.data.synthetic.update(num_train=64, num_valid=16, num_test=16)
  c.model.update(emb_dim=8, hidden=16, latent=4)
  c.train.update(batch_size=16, num_steps=8)
  return default.set_fields(c, overrides)


@pytest.fixture(scope='module')
def data():
  config = tiny_config('vae')
  d = datasets.load(config)
  batcher = input_pipeline.Batcher(d.splits['train'], 16, 8, 0)
  return len(d.vocab), batcher


def new_state(config, vocab_size):
  model = models.model_from_config(config, vocab_size)
  return model, lm_task.create_train_state(
      model, lm_task.optimizer(config), jax.random.key(3))


def keys_for(batch, step=0):
  return prng.example_keys(jax.random.key(0), batch['index'], step)


def train_noise(model, batch):
  """The train step's noise at step 0 (`lm_losses.lm_loss`)."""
  return models.example_noise(keys_for(batch), batch['tokens'].shape[1],
                              model.emb_dim, model.latent, model.dropout,
                              train=True)


# ------------------------------------------------------------------ cyclical


def test_vae_cyclical_beta_follows_the_m_cycles(data):
  config = tiny_config('vae_cyclical')
  assert config.model.kl_window == 'last'
  s = config.train.kl_schedule
  cycles, ratio = s.cycles, s.ratio
  assert (cycles, ratio) == (4, 0.5)  # Fu et al.'s defaults.
  # The schedule the loop builds, over a 40-step run: 4 cycles of 10 steps.
  beta = np.asarray(jax.vmap(train._kl_schedule(config, 5.0, 40))(
      jnp.arange(40)))
  period, ramp = 10, int(10 * ratio)
  for c in range(cycles):
    cycle = beta[c * period:(c + 1) * period]
    assert cycle[0] == 0.0  # Each cycle restarts from 0 ...
    assert np.all(np.diff(cycle[:ramp + 1]) > 0)  # ... ramps up ...
    np.testing.assert_array_equal(cycle[ramp:], 1.0)  # ... then holds 1.
  # The beta the train step uses and logs: 8 steps = 4 cycles of 2.
  vocab_size, batcher = data
  model, state = new_state(config, vocab_size)
  step = jax.jit(lm_task.make_train_step(
      model, config, train._kl_schedule(config, 4.0, 8)))
  batch = batcher.train_batch(0)
  logged = []
  for _ in range(8):
    state, metrics = step(state, batch, jax.random.key(0))
    logged.append(float(metrics['beta']))
  assert logged == [0.0, 1.0] * 4


# ----------------------------------------------------------------- free bits


def test_free_bits_gradient_is_zero_below_lambda_and_plain_above():
  lam = 0.5
  # Dimensions 0-1 have a small batch-mean KL, 2-3 a large one; row 3 is a
  # padding row (weight 0) whose huge KL must not count.
  mu = jnp.array([[0.1, -0.2, 1.5, 2.0], [0.3, 0.1, -1.2, 1.0],
                  [-0.2, 0.2, 2.0, -1.5], [9.0, 9.0, 0.0, 0.0]])
  logvar = jnp.array([[0.1, -0.1, -1.0, 0.5], [0.0, 0.2, 0.3, -0.4],
                      [-0.2, 0.0, 0.1, 0.2], [0.0, 0.0, 0.0, 0.0]])
  w = jnp.array([1.0, 1.0, 1.0, 0.0])

  def free_bits(mu, logvar):
    kl = losses.free_bits_kl(losses.gaussian_kl_dims(mu, logvar), w, lam)
    return jnp.sum(w * kl)

  def plain(mu, logvar):
    return jnp.sum(w * losses.gaussian_kl(mu, logvar))

  kl_dims = np.asarray(losses.gaussian_kl_dims(mu, logvar), np.float64)
  batch_mean = (np.asarray(w) @ kl_dims) / 3.0
  below = batch_mean <= lam
  np.testing.assert_array_equal(below, [True, True, False, False])
  # The value: B * sum_j max(lambda, KL_j), by hand.
  np.testing.assert_allclose(float(free_bits(mu, logvar)),
                             3.0 * np.sum(np.maximum(lam, batch_mean)),
                             rtol=1e-6)
  for arg in (0, 1):
    g_fb = np.asarray(jax.grad(free_bits, arg)(mu, logvar))
    g_plain = np.asarray(jax.grad(plain, arg)(mu, logvar))
    assert np.all(g_fb[:, below] == 0.0)
    np.testing.assert_allclose(g_fb[:, ~below], g_plain[:, ~below], rtol=1e-6)
    assert np.all(g_fb[:, ~below][:3] != 0.0)


def test_free_bits_over_devices_equals_the_whole_batch():
  kl_dims = jax.random.uniform(jax.random.key(1), (8, 5), maxval=1.0)
  w = jnp.array([1, 1, 1, 1, 1, 1, 0, 0], jnp.float32)
  whole = losses.free_bits_kl(kl_dims, w, 0.5)
  split = jax.vmap(functools.partial(losses.free_bits_kl, free_bits=0.5,
                                     axis_name='d'), axis_name='d')(
                                         kl_dims.reshape(2, 4, 5),
                                         w.reshape(2, 4))
  np.testing.assert_allclose(split.reshape(-1), whole, rtol=1e-6)


def test_vae_freebits_train_step_loss_and_true_kl(data):
  vocab_size, batcher = data
  config = tiny_config('vae_freebits', **{'model.dropout': 0.0})
  lam = config.model.free_bits
  assert lam == 0.5 and config.model.kl_window == 'last'
  model, state = new_state(config, vocab_size)
  batch = batcher.train_batch(1)
  beta = 0.3
  kl_weight = schedules.make_kl_schedule('constant', beta=beta)
  _, m = jax.jit(lm_task.make_train_step(model, config, kl_weight))(
      state, batch, jax.random.key(0))
  # The same forward pass by hand.
  out = model.apply({'params': state.params}, batch['tokens'],
                    batch['lengths'], train_noise(model, batch))
  w = batch['weights'].astype(np.float64)
  rec = np.asarray(losses.token_nll(out['logits'], batch['tokens'][:, 1:],
                                    batch['lengths']), np.float64)
  kl_dims = np.asarray(losses.masked_kl_dims(
      out['mu'], out['logvar'], batch['lengths'], 'last'), np.float64)
  n = w.sum()
  fb_term = n * np.sum(np.maximum(lam, w @ kl_dims / n))
  np.testing.assert_allclose(float(m['loss']), w @ rec + beta * fb_term,
                             rtol=1e-5)
  # The logged KLs are the true ones, not the free-bits term.
  np.testing.assert_allclose(float(m['kl_twr']), w @ kl_dims.sum(1),
                             rtol=1e-5)
  assert float(m['kl_twr']) < beta * fb_term  # Collapsed dims: below lambda.


# ------------------------------------------------------------------- BN-VAE

V, E, H, Z = 23, 6, 16, 8


def _bn_batch(seed, b=16, t=9, padding_rows=3):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, t + 1, b)
  tokens = np.zeros((b, t), np.int32)
  for i, n in enumerate(lengths):
    tokens[i, 0], tokens[i, n - 1] = text.BOS, text.EOS
    tokens[i, 1:n - 1] = rng.integers(4, V, n - 2)
  w = np.ones(b, bool)
  w[b - padding_rows:] = False
  return jnp.asarray(tokens), jnp.asarray(lengths, jnp.int32), w


def _apply(model, params, tokens, lengths, train=False, **kw):
  keys = jax.random.split(jax.random.key(7), tokens.shape[0])
  noise = models.example_noise(keys, tokens.shape[1], model.emb_dim,
                               model.latent, model.dropout, train)
  return model.apply({'params': params}, tokens, lengths, noise, **kw)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_bn_vae_batch_kl_is_at_least_n_gamma_squared_over_2(seed):
  gamma = 0.7
  model = models.TWRVAE(V, E, H, Z, dropout=0.0, bn_gamma=gamma)
  plain = models.TWRVAE(V, E, H, Z, dropout=0.0)
  tokens, lengths, w = _bn_batch(seed)
  init = model.init(jax.random.key(seed), tokens, lengths)['params']
  # The KL of the posteriors whose mu is normalised: the last step (':vae').
  last = np.asarray(jnp.arange(tokens.shape[1]) == (lengths - 1)[:, None])
  mask = jnp.asarray(last & w[:, None])
  # At init the raw mu varies little (v ~ 1e-4, so eps = 1e-5 matters);
  # scaling the mu head by 100 gives v >> eps.
  for scale in (1.0, 100.0):
    params = {**init, 'mu': jax.tree_util.tree_map(lambda x: x * scale,
                                                   init['mu'])}
    out = _apply(model, params, tokens, lengths, train=True, bn_mask=mask)
    kl = np.asarray(losses.gaussian_kl(out['z_mu'], out['z_logvar']))[w]
    raw = np.asarray(_apply(plain, {k: v for k, v in params.items()
                                    if k != 'mu_bn'}, tokens, lengths,
                            train=True)['z_mu'], np.float64)[w]
    v = raw.var(0)
    # Over those positions mu' has mean = the shift (0 at init) and variance
    # gamma^2 v / (v + eps), so E[KL] >= sum_j gamma^2 v_j / (v_j + eps) / 2.
    mu = np.asarray(out['z_mu'], np.float64)[w]
    np.testing.assert_allclose(mu.mean(0), 0.0, atol=1e-4 * scale)
    np.testing.assert_allclose(mu.var(0), gamma**2 * v / (v + 1e-5),
                               rtol=1e-3)
    assert kl.mean() >= np.sum(gamma**2 * v / (v + 1e-5)) / 2 * (1 - 1e-5)
    if scale > 1:
      assert kl.mean() >= Z * gamma**2 / 2 * (1 - 1e-3)
    else:
      # Without BN the same encoder's KL is far below the bound.
      kl_plain = losses.gaussian_kl(jnp.asarray(raw), out['z_logvar'][w])
      assert float(jnp.mean(kl_plain)) < Z * gamma**2 / 2 / 2
      # The returned running averages are PyTorch's EMA (momentum 0.1,
      # unbiased variance).
      stats = out['bn_stats']
      np.testing.assert_allclose(stats['running_mean'], 0.1 * raw.mean(0),
                                 atol=1e-6)
      np.testing.assert_allclose(stats['running_var'],
                                 0.9 + 0.1 * raw.var(0, ddof=1), rtol=1e-5)


def test_bn_vae_eval_mode_uses_the_running_averages():
  gamma = 0.7
  model = models.TWRVAE(V, E, H, Z, dropout=0.0, bn_gamma=gamma)
  plain = models.TWRVAE(V, E, H, Z, dropout=0.0)
  tokens, lengths, _ = _bn_batch(3)
  params = model.init(jax.random.key(0), tokens, lengths)['params']
  rng = np.random.default_rng(0)
  bn = dict(running_mean=rng.normal(size=Z), running_var=rng.uniform(0.5, 2, Z),
            bias=rng.normal(size=Z))
  params = {**params, 'mu_bn': {k: jnp.asarray(v, jnp.float32)
                                for k, v in bn.items()}}
  mu, _ = model.apply({'params': params}, tokens, method=models.TWRVAE.encode)
  raw, _ = plain.apply({'params': {k: v for k, v in params.items()
                                   if k != 'mu_bn'}}, tokens,
                       method=models.TWRVAE.encode)
  want = (gamma * (np.asarray(raw) - bn['running_mean'])
          / np.sqrt(bn['running_var'] + 1e-5) + bn['bias'])
  np.testing.assert_allclose(mu, want, rtol=1e-5, atol=1e-5)
  # Eval mode: a sentence's posterior does not depend on its batch.
  alone, _ = model.apply({'params': params}, tokens[:1],
                         method=models.TWRVAE.encode)
  np.testing.assert_allclose(alone[0], mu[0], rtol=1e-5, atol=1e-6)


def test_bn_vae_train_step_sets_running_averages_and_pmap_agrees(data):
  vocab_size, batcher = data
  config = tiny_config('bn_vae')
  assert config.model.bn_gamma == 0.7 and config.model.kl_window == 'last'
  model, state = new_state(config, vocab_size)
  kl = schedules.make_kl_schedule('constant')
  batch = batcher.train_batch(0)
  results = []
  for mode in ('jit', 'pmap'):
    layout = parallel.make_layout(mode)
    step = layout.compile(lm_task.make_train_step(model, config, kl), 3,
                          broadcast_argnums=(2,))
    s, _ = step(layout.replicate(state), layout.shard(batch),
                jax.random.key(0))
    results.append(layout.unreplicate(s.params))
  first = results[0]
  # The batch statistics span the devices. mu's bias is left out: BN makes
  # the loss invariant to it, so its gradient is 0 up to float rounding,
  # which Adam (eps 1e-6) turns into different O(lr) updates (and, from the
  # next step on, into running means that differ by 0.1 x that); all other
  # gradients agree to ~1e-6.
  drop = lambda p: {**p, 'mu': {'kernel': p['mu']['kernel']}}
  chex.assert_trees_all_close(drop(results[0]), drop(results[1]), atol=1e-5,
                              rtol=1e-5)
  # One step: the running averages are the EMA of the batch statistics over
  # the real sentences' last steps, whatever Adam and weight decay would do.
  plain = models.model_from_config(tiny_config('vae'), vocab_size)
  raw = _apply_keys(plain, {k: v for k, v in state.params.items()
                            if k != 'mu_bn'}, batch)
  raw = np.asarray(raw, np.float64)[batch['weights'] > 0]
  np.testing.assert_allclose(first['mu_bn']['running_mean'],
                             0.1 * raw.mean(0), atol=1e-5)
  np.testing.assert_allclose(first['mu_bn']['running_var'],
                             0.9 + 0.1 * raw.var(0, ddof=1), rtol=1e-4)
  assert np.any(first['mu_bn']['bias'] != 0)  # The shift is learnt.


def _apply_keys(model, params, batch):
  """z_mu of the train step's forward pass (same per-sentence keys)."""
  out = model.apply({'params': params}, batch['tokens'], batch['lengths'],
                    train_noise(model, batch))
  return out['z_mu']


# ------------------------------------------------------------------ lagging


def _lagging_setup(data):
  vocab_size, batcher = data
  config = tiny_config('lagging_vae')
  assert config.train.lagging.enabled and config.model.kl_window == 'last'
  model, state = new_state(config, vocab_size)
  assert isinstance(state.opt_state, lagging.LaggingState)
  assert int(state.opt_state.aggressive) == 1
  return config, model, state, batcher


def test_encoder_step_changes_only_the_encoder(data):
  config, model, state, batcher = _lagging_setup(data)
  kl = schedules.make_kl_schedule('constant')
  step = jax.jit(lagging.make_encoder_step(
      functools.partial(lm_losses.lm_loss, model, config), kl,
      models.with_bn_stats))
  after, sums = step(state, batcher.train_batch(0), jax.random.key(0))
  assert float(sums['tokens']) > 0 and np.isfinite(float(sums['loss']))
  enc0, dec0 = lagging.split_params(jax.device_get(state.params))
  enc1, dec1 = lagging.split_params(jax.device_get(after.params))
  assert set(enc0) == {'enc_embed', 'enc_rnn', 'mu', 'logvar'}
  chex.assert_trees_all_equal(dec0, dec1)  # Bit-identical decoder.
  changed = jax.tree_util.tree_map(lambda a, b: bool(np.any(a != b)), enc0,
                                   enc1)
  assert all(jax.tree_util.tree_leaves(changed)), changed
  chex.assert_trees_all_equal(state.opt_state.decoder,
                              after.opt_state.decoder)
  assert int(after.step) == int(state.step)  # The loop's step is unchanged.


def test_full_step_updates_the_decoder_only_while_aggressive(data):
  config, model, state, batcher = _lagging_setup(data)
  step = jax.jit(lm_task.make_train_step(
      model, config, schedules.make_kl_schedule('constant')))
  batch = batcher.train_batch(0)
  for aggressive in (1, 0):
    s = state.replace(opt_state=state.opt_state._replace(
        aggressive=jnp.int32(aggressive)))
    after, _ = step(s, batch, jax.random.key(0))
    enc0, dec0 = lagging.split_params(jax.device_get(state.params))
    enc1, dec1 = lagging.split_params(jax.device_get(after.params))
    changed = lambda a, b: jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda x, y: bool(np.any(x != y)), a, b))
    assert all(changed(dec0, dec1))
    if aggressive:  # He et al.: `if not aggressive_flag: enc_optimizer.step()`
      chex.assert_trees_all_equal(enc0, enc1)
    else:
      assert all(changed(enc0, enc1))


def test_driver_inner_loop_switch_and_checkpointed_flag(data, tmp_path):
  config, model, state, batcher = _lagging_setup(data)
  config.train.lagging.update(max_inner=3, window=2)
  layout = parallel.make_layout('jit')
  make = lambda: lagging.AggressiveTraining(
      config, functools.partial(lm_losses.lm_loss, model, config),
      schedules.make_kl_schedule('constant'), models.with_bn_stats, batcher,
      layout, jax.random.key(0))
  host = jax.device_get(state)
  driver = make()
  after = driver.before_step(jax.device_put(host), 5)
  assert driver.inner_steps == 3  # The first window (2) never stops it.
  _, dec0 = lagging.split_params(host.params)
  _, dec1 = lagging.split_params(jax.device_get(after.params))
  chex.assert_trees_all_equal(dec0, dec1)
  # Deterministic in (seed, step, inner step): a replay gives the same state.
  again = driver.before_step(jax.device_put(host), 5)
  chex.assert_trees_all_equal(jax.device_get(after.params),
                              jax.device_get(again.params))
  # MI up: stays on; MI down: off for good, and steps have no inner loop.
  after = driver.after_eval(after, 0.25)
  assert driver.aggressive and float(after.opt_state.best_mi) == 0.25
  after = driver.after_eval(after, 0.2)
  assert not driver.aggressive and int(after.opt_state.aggressive) == 0
  assert driver.before_step(after, 6) is after
  # The flag and best MI are part of the checkpoint; a restarted run's driver
  # reads them from the restored state.
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(6, checkpoint.saveable(layout.unreplicate(after)))
  restored, _ = ckpt.restore(checkpoint.saveable(host))
  ckpt.close()
  assert int(restored['opt_state'].aggressive) == 0
  assert float(restored['opt_state'].best_mi) == 0.25
  resumed = make()
  s = host.replace(**restored)
  assert resumed.before_step(s, 6) is s and resumed.inner_steps == 0


def test_stop_inner_rule_on_hand_sequences():
  stop = functools.partial(lagging.stop_inner, window=3, max_inner=100)
  flat = [(10.0, 2.0)] * 3  # 5 per token.
  assert not stop([])
  assert not stop(flat[:2])
  assert not stop(flat)  # First window: compared with +inf.
  assert not stop(flat + [(8.0, 2.0)] * 3)  # 4 < 5: keep going.
  assert not stop(flat + [(10.0, 2.0)] * 3)  # Equal: keep going.
  assert stop(flat + [(12.0, 2.0)] * 3)  # 6 > 5: stop.
  assert not stop(flat + [(99.0, 2.0)] * 2)  # Only checked at window ends.
  # Per token, not per step: 3 windows' sums over different token counts.
  assert stop(flat + [(6.0, 1.0), (6.0, 1.0), (6.0, 1.0)])
  assert stop([(1.0, 1.0)] * 5, window=3, max_inner=5)  # The cap.
  # A decreasing loss runs to the cap (He et al.: 100 inner steps at most).
  history = [(100.0 - i, 10.0) for i in range(100)]
  assert [n for n in range(101) if lagging.stop_inner(
      history[:n], 15, 100)] == [100]


def test_aggressive_turns_off_when_mi_does_not_improve():
  state = (True, 0.0)
  trace = []
  for mi in (0.5, 0.9, 0.9, 0.7, 1.5):
    state = lagging.next_aggressive(*state, mi)
    trace.append(state)
  assert trace == [(True, 0.5), (True, 0.9), (True, 0.9), (False, 0.9),
                   (False, 0.9)]
  assert lagging.next_aggressive(True, 0.0, -0.01) == (False, 0.0)


def test_inner_batches_are_a_function_of_seed_step_and_substep():
  draw = lambda s, k: lagging.inner_batch_step(0, s, k, 10)
  assert draw(23, 0) == 23  # The step's own batch first.
  picks = [draw(23, k) for k in range(1, 50)]
  assert picks == [draw(23, k) for k in range(1, 50)]
  assert all(20 <= p < 30 for p in picks)  # The same epoch.
  assert len(set(picks)) > 5


# ------------------------------------------------------------------- config


@pytest.mark.parametrize('field, value, message', [
    ('model.free_bits', -0.1, 'free_bits'),
    ('model.bn_gamma', 0.0, 'bn_gamma'),
    ('train.lagging.max_inner', 0, 'max_inner'),
    ('train.lagging.window', 0, 'window'),
    ('train.kl_schedule.ratio', 1.5, 'ratio'),
])
def test_bad_baseline_values_are_rejected(field, value, message):
  config = tiny_config('vae_cyclical', **{field: value})
  with pytest.raises(ValueError, match=message):
    tasks.validate(config)


@pytest.mark.parametrize('variant', ['vae_cyclical', 'vae_freebits', 'bn_vae',
                                     'lagging_vae'])
def test_variants_are_valid_vaes(variant):
  config = tiny_config(variant)
  tasks.validate(config)
  assert config.model.kl_window == 'last'
