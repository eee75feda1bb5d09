"""He et al.'s (2019) aggressive inference-network training ("lagging VAE").

While `aggressive` is on, every optimiser step of the training loop is
preceded by encoder-only updates on further training batches (at most
`train.lagging.max_inner`), stopped early when the encoder's loss stops
decreasing (`stop_inner`); the loop's step that follows then updates the
decoder only. Aggressive mode turns off for good at the first validation
evaluation whose MI is lower than the previous one (`next_aggressive`); from
then on training is that of a plain VAE.

This follows jxhe/vae-lagging-encoder `text.py`: two optimisers (encoder /
decoder; here one optax transform with a state per group,
`encoder_decoder_optimizer`), `while aggressive_flag and sub_iter < 100`, the
first inner step on the step's own batch and the others on random batches,
a check every 15 inner steps of the loss per scored token, `if not
aggressive_flag: enc_optimizer.step()`, and `if cur_mi - pre_mi < 0:
aggressive_flag = False` with `pre_mi = 0` initially.

Persistence: the flag and the previous MI live in the optimiser state
(`LaggingState`, like optax.contrib.reduce_on_plateau keeps its best value),
so checkpoints carry them and a resumed run continues exactly. Inner batches
and noise are functions of (seed, step, inner step).

References:
  He et al., "Lagging Inference Networks and Posterior Collapse in
  Variational Autoencoders", ICLR 2019, Algorithm 1.
"""

from collections.abc import Callable, Sequence
import math
from typing import Any, NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from twr_jax.core import parallel
from twr_jax.core import prng

Array = jax.Array
PRNGKey = jax.Array

# Top-level parameters of the inference network q(z | x) (models.TWRVAE);
# everything else belongs to the decoder.
ENCODER = ('enc_embed', 'enc_rnn', 'mu', 'logvar', 'mu_bn')


def enabled(config: ml_collections.ConfigDict) -> bool:
  """Whether `config` asks for aggressive training (LM configs only)."""
  lag = config.train.get('lagging')
  return bool(lag is not None and lag.enabled)


def split_params(tree: dict[str, Any]) -> tuple[dict, dict]:
  """(encoder part, decoder part) of a params-shaped dict."""
  enc = {k: v for k, v in tree.items() if k in ENCODER}
  dec = {k: v for k, v in tree.items() if k not in ENCODER}
  return enc, dec


class LaggingState(NamedTuple):
  """Optimiser state of `encoder_decoder_optimizer`.

  Attributes:
    encoder, decoder: the wrapped transform's state of each group.
    aggressive: <i32>[] 1 while aggressive training is on.
    best_mi: <f32>[] the validation MI of the previous evaluation (the best so
      far while aggressive is on; He et al.'s `pre_mi`, initially 0).
  """

  encoder: optax.OptState
  decoder: optax.OptState
  aggressive: Array
  best_mi: Array


def encoder_decoder_optimizer(
    tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """`tx` with a separate state for the encoder and the decoder parameters.

  He et al.'s `enc_optimizer` and `dec_optimizer`. `update(grads, state,
  params)` updates both groups, except that the encoder is frozen (update 0,
  state unchanged) while `state.aggressive` is on; `update(...,
  encoder_only=True)` updates the encoder alone (zero decoder updates).
  Without clipping this equals `tx` on all parameters when both groups are
  updated; with `grad_clip_norm`, each group's norm is clipped on its own.
  """

  def init(params):
    enc, dec = split_params(params)
    return LaggingState(tx.init(enc), tx.init(dec), jnp.ones((), jnp.int32),
                        jnp.zeros((), jnp.float32))

  def update(grads, state, params=None, *, encoder_only=False, **extra):
    del extra
    g_enc, g_dec = split_params(grads)
    p_enc, p_dec = split_params(params) if params is not None else (None, None)
    u_enc, s_enc = tx.update(g_enc, state.encoder, p_enc)
    if encoder_only:
      u_dec = jax.tree_util.tree_map(jnp.zeros_like, g_dec)
      s_dec = state.decoder
    else:
      u_dec, s_dec = tx.update(g_dec, state.decoder, p_dec)
      frozen = state.aggressive > 0
      u_enc = jax.tree_util.tree_map(
          lambda u: jnp.where(frozen, jnp.zeros_like(u), u), u_enc)
      s_enc = jax.tree_util.tree_map(
          lambda new, old: jnp.where(frozen, old, new), s_enc, state.encoder)
    return {**u_enc, **u_dec}, state._replace(encoder=s_enc, decoder=s_dec)

  return optax.GradientTransformationExtraArgs(init, update)


def make_encoder_step(loss_fn: Callable, kl_weight: Callable[[Array], Array],
                      with_bn_stats: Callable) -> Callable:
  """The pure encoder-only step `(state, batch, key, *, axis_name)`.

  Args:
    loss_fn: `(params, batch, keys, beta, count, axis_name) -> (loss, aux)`,
      the train step's objective (`train.lm_loss`).
    kl_weight: the KL schedule (β of the step about to be taken).
    with_bn_stats: `(params, stats) -> params` (`models.with_bn_stats`).

  Returns:
    A step that updates only the encoder parameters and the encoder's
    optimiser state (`state.step` unchanged: the schedule still sees the
    loop's step) and returns sums over sentences: 'loss' (the objective's
    terms rec + β KL) and 'tokens' (scored tokens), psum-med over devices.
  """

  def encoder_step(state, batch, key, *, axis_name=None):
    w = batch['weights']
    keys = prng.example_keys(key, batch['index'])
    beta = kl_weight(state.step)
    count = jnp.sum(w)
    if axis_name is not None:
      count = jax.lax.psum(count, axis_name)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, aux), grads = grad_fn(state.params, batch, keys, beta, count,
                              axis_name)
    sums = dict(loss=jnp.sum(w * (aux['rec'] + beta * aux['kl_obj'])),
                tokens=jnp.sum(w * (batch['lengths'] - 1)))
    if axis_name is not None:
      grads, sums = jax.lax.psum((grads, sums), axis_name)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params,
                                         encoder_only=True)
    enc, _ = split_params(optax.apply_updates(state.params, updates))
    params = with_bn_stats({**state.params, **enc}, aux.get('bn_stats'))
    return state.replace(params=params, opt_state=opt_state), sums

  return encoder_step


def stop_inner(history: Sequence[tuple[float, float]], window: int,
               max_inner: int) -> bool:
  """Whether to stop the encoder-only updates after those in `history`.

  He et al.: every `window` inner steps, the loss per token of the last
  window (summed losses / summed tokens, each measured before its update) is
  compared with the previous window's; the loop stops when it went up, or
  after `max_inner` steps. The first window is compared with +inf.

  Args:
    history: one (loss sum, token count) per inner step done so far.
    window: steps per window (He et al.'s code: 15; the paper: 10).
    max_inner: the most inner steps per optimiser step.

  Returns:
    True to stop.
  """
  n = len(history)
  if n >= max_inner:
    return True
  if n == 0 or n % window:
    return False

  def per_token(steps):
    return sum(l for l, _ in steps) / max(sum(t for _, t in steps), 1.0)

  current = per_token(history[n - window:])
  previous = (per_token(history[n - 2 * window:n - window])
              if n >= 2 * window else math.inf)
  return current > previous


def next_aggressive(aggressive: bool, best_mi: float,
                    mi: float) -> tuple[bool, float]:
  """He et al.'s switch, applied after each validation evaluation.

  Args:
    aggressive: whether aggressive training is on.
    best_mi: the previous evaluation's MI (0 before the first).
    mi: this evaluation's validation MI.

  Returns:
    (aggressive, best_mi): off for good once the MI decreases (`cur_mi -
    pre_mi < 0`; an equal MI keeps it on). While on, the MIs so far never
    decreased, so the previous one is the best so far: best_mi becomes
    max(best_mi, mi).
  """
  if not aggressive:
    return False, best_mi
  return mi >= best_mi, max(best_mi, mi)


def inner_batch_step(seed: int, step: int, sub_step: int,
                     num_batches: int) -> int:
  """The `Batcher.train_batch` index of inner step `sub_step` of `step`.

  Inner step 0 uses the step's own batch (He et al.'s `batch_data_enc =
  batch_data`); inner step k > 0 a batch of the same epoch drawn uniformly
  from `default_rng([seed, step, k])`, so a resumed run replays it.
  """
  if sub_step == 0:
    return step
  epoch = step // num_batches
  j = int(np.random.default_rng([seed, step, sub_step]).integers(num_batches))
  return epoch * num_batches + j


class AggressiveTraining:
  """Drives the inner loop for `train.train_and_evaluate`.

  The loop calls `before_step(state, step)` before each optimiser step and
  `after_eval(state, mi)` after each validation evaluation. The flag is read
  from the (restored) state once and then mirrored on the host.
  """

  def __init__(self, config: ml_collections.ConfigDict, loss_fn: Callable,
               kl_weight: Callable, with_bn_stats: Callable, batcher, layout,
               key: PRNGKey):
    lag = config.train.lagging
    self.window, self.max_inner = lag.window, lag.max_inner
    self.seed = config.seed
    self.batcher, self.layout = batcher, layout
    self.key = jax.random.fold_in(key, prng.LAGGING)
    self.step_fn = layout.compile(
        make_encoder_step(loss_fn, kl_weight, with_bn_stats), 3,
        broadcast_argnums=(2,), donate_argnums=(0,))
    self.aggressive = None  # Read from the state on first use.
    self.inner_steps = 0

  def _sync(self, state):
    if self.aggressive is None:
      self.aggressive = bool(self.layout.first(state.opt_state.aggressive))

  def before_step(self, state, step: int):
    """Runs the encoder-only updates that precede optimiser step `step`."""
    self._sync(state)
    if not self.aggressive:
      return state
    history = []
    step_key = jax.random.fold_in(self.key, step)
    while not stop_inner(history, self.window, self.max_inner):
      k = len(history)
      index = inner_batch_step(self.seed, step, k, self.batcher.num_batches)
      batch = parallel.process_rows(self.batcher.train_batch(index))
      state, sums = self.step_fn(state, self.layout.shard(batch),
                                 jax.random.fold_in(step_key, k))
      sums = self.layout.first(sums)
      history.append((float(sums['loss']), float(sums['tokens'])))
    self.inner_steps += len(history)
    return state

  def after_eval(self, state, mi: float):
    """Applies `next_aggressive` to a validation MI; returns the new state."""
    self._sync(state)
    previous = float(self.layout.first(state.opt_state.best_mi))
    aggressive, best = next_aggressive(self.aggressive, previous, float(mi))
    if self.aggressive and not aggressive:
      logging.info('Aggressive encoder training off: valid MI %.4f < %.4f'
                   ' (%d encoder-only steps in this process).', mi, previous,
                   self.inner_steps)
    self.aggressive = aggressive
    opt_state = state.opt_state._replace(
        aggressive=self.layout.replicate(np.int32(aggressive)),
        best_mi=self.layout.replicate(np.float32(best)))
    return state.replace(opt_state=opt_state)
