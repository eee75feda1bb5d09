"""Losses of the TWR-VAE language model (SPEC A.4).

All functions return per-example values; the reduction to a scalar happens once,
in `objective`, so that the paper's sum over the batch and a per-sentence mean
are one switch apart.

Mixed precision (`config.train.compute_dtype`): every function here computes
in float32 whatever its inputs' dtype, so bfloat16 logits (a model's output
layer) get a float32 softmax cross-entropy and the sums over tokens, steps
and the batch do not accumulate bfloat16 rounding.

References:
  Li et al., "Improving Variational Autoencoder for Text Modelling with
  Timestep-Wise Regularisation", COLING 2020, Section 3.
  Kingma et al. (2016) for `free_bits_kl` (the free-bits baseline).
"""

import functools

import jax
import jax.numpy as jnp
import optax

Array = jax.Array

# KL windows: which valid steps the timestep-wise KL averages over.
KL_WINDOWS = ('all', 'last25', 'last50', 'last75', 'last')
_WINDOW_FRACTION = {'last25': 0.25, 'last50': 0.50, 'last75': 0.75}
REDUCTIONS = ('sum', 'mean')
# Which length the objective uses per sentence (config.model.kl_length and
# z_length): its own ('sentence') or the batch's padded length T_b ('padded',
# the original's arithmetic, SPEC A.4).
LENGTH_MODES = ('sentence', 'padded')


def gaussian_kl(mu: Array, logvar: Array) -> Array:
  """KL(N(mu, exp(logvar)) || N(0, I)), summed over the last axis.

  Args:
    mu, logvar: <f32>[..., Z] (other float dtypes are computed in float32).

  Returns:
    <f32>[...].
  """
  mu, logvar = _f32(mu), _f32(logvar)
  return -0.5 * jnp.sum(1.0 + logvar - mu**2 - jnp.exp(logvar), axis=-1)


def gaussian_kl_two(mu_q: Array, logvar_q: Array, mu_p: Array,
                    logvar_p: Array) -> Array:
  """KL(N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p))), summed over Z.

  The diagonal-Gaussian formula of NeuralDialog-CVAE's `gaussian_kld`, which
  the original's `kl_loss` repeats:
    -1/2 sum(1 + lv_q - lv_p - (mu_p - mu_q)^2 / e^lv_p - e^lv_q / e^lv_p).

  Args:
    mu_q, logvar_q, mu_p, logvar_p: <f32>[..., Z], broadcastable.

  Returns:
    <f32>[...].
  """
  diff = logvar_q - logvar_p
  # e^lv_q / e^lv_p as one exp, which cannot overflow when both are large.
  ratio = (mu_p - mu_q) ** 2 * jnp.exp(-logvar_p) + jnp.exp(diff)
  return -0.5 * jnp.sum(1.0 + diff - ratio, axis=-1)


def _f32(x: Array) -> Array:
  """x in (at least) float32: the dtype every loss is computed in."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def kl_window_mask(length: Array, num_steps: int, window: str) -> Array:
  """Which of one sentence's steps enter its KL average.

  Args:
    length: <i32>[] valid steps L (tokens incl. BOS and EOS).
    num_steps: padded length T.
    window: 'all' (TWR-VAE: every valid step), 'lastP' for P in 25/50/75 (the
      last k = round(L * P / 100) valid steps, half to even like Python's
      round, at least 1, so the final step is always in), or 'last' (only the
      final step: a vanilla VAE).

  Returns:
    <bool>[T].
  """
  t = jnp.arange(num_steps)
  valid = t < length
  if window == 'all':
    return valid
  if window == 'last':
    return t == length - 1
  if window not in _WINDOW_FRACTION:
    raise ValueError(f'kl_window must be one of {KL_WINDOWS}, got {window!r}')
  # jnp.round rounds half to even, like the original's Python round(); the
  # products are exact in binary for P = 25, 50, 75.
  k = jnp.maximum(1, jnp.round(length * _WINDOW_FRACTION[window]))
  return valid & (t >= length - k)


def masked_kl(mu: Array, logvar: Array, lengths: Array, window: str) -> Array:
  """Timestep-wise KL: per-step KL to N(0, I) averaged over the KL window.

  Padding steps never count, so a sentence's value equals the KL computed on
  its sliced valid prefix.

  Args:
    mu, logvar: <f32>[B, T, Z] per-step posteriors.
    lengths: <i32>[B] valid steps per sentence.
    window: see `kl_window_mask`.

  Returns:
    <f32>[B] mean over the window of KL(q(z | x_{<=t}) || N(0, I)).
  """

  @functools.partial(jax.vmap, in_axes=(0, 0, 0))
  def one(mu, logvar, length):  # [T, Z], [T, Z], []
    m = kl_window_mask(length, mu.shape[0], window)
    kl_t = gaussian_kl(mu, logvar)
    return jnp.sum(jnp.where(m, kl_t, 0.0)) / jnp.sum(m)

  return one(mu, logvar, lengths)


def gaussian_kl_dims(mu: Array, logvar: Array) -> Array:
  """KL(N(mu, exp(logvar)) || N(0, I)) of each latent dimension.

  Args:
    mu, logvar: <f32>[..., Z].

  Returns:
    <f32>[..., Z]; its sum over the last axis is `gaussian_kl`.
  """
  mu, logvar = _f32(mu), _f32(logvar)
  return -0.5 * (1.0 + logvar - mu**2 - jnp.exp(logvar))


def masked_kl_dims(mu: Array, logvar: Array, lengths: Array,
                   window: str) -> Array:
  """`masked_kl` per latent dimension (the input of `free_bits_kl`).

  Args:
    mu, logvar: <f32>[B, T, Z] per-step posteriors.
    lengths: <i32>[B] valid steps per sentence.
    window: see `kl_window_mask`.

  Returns:
    <f32>[B, Z] mean over the window of the per-dimension KL; its sum over Z
    is `masked_kl` (up to float rounding).
  """

  @functools.partial(jax.vmap, in_axes=(0, 0, 0))
  def one(mu, logvar, length):  # [T, Z], [T, Z], []
    m = kl_window_mask(length, mu.shape[0], window)[:, None]
    kl_t = gaussian_kl_dims(mu, logvar)
    return jnp.sum(jnp.where(m, kl_t, 0.0), axis=0) / jnp.sum(m)

  return one(mu, logvar, lengths)


def free_bits_kl(kl_dims: Array, weights: Array, free_bits: float,
                 axis_name: str | None = None) -> Array:
  """Free bits (Kingma et al., 2016, eq. 15): per-sentence KL terms whose sum
  over the batch is B * sum_j max(lambda, KL_j).

  KL_j = sum_b w_b KL_bj / sum_b w_b is the batch-mean KL of latent dimension
  j (each dimension its own group, averaged over the real sentences of the
  whole batch, i.e. over all devices of `axis_name`). Below lambda the
  dimension's KL is replaced by the constant lambda, so its gradient is zero;
  above, it is the plain KL. The per-sentence value

    F_b = sum_j (KL_bj if KL_j > lambda else lambda)

  satisfies sum_b w_b F_b = B * sum_j max(lambda, KL_j) (B = sum_b w_b), and
  its gradient is the gradient of that objective, so `objective(rec, F, ...)`
  optimises Kingma's objective for either reduction ('mean' divides by B).

  Args:
    kl_dims: <f32>[B, Z] per-sentence, per-dimension KL (`masked_kl_dims`).
    weights: <f32>[B] 1 for real sentences, 0 for padding rows.
    free_bits: lambda, in nats per dimension (> 0).
    axis_name: the collective axis the batch is split over, if any.

  Returns:
    <f32>[B] F_b.

  References:
    Kingma et al., "Improving Variational Inference with Inverse
    Autoregressive Flow", NeurIPS 2016, "free bits" (eq. 15).
  """
  total = jnp.sum(weights[:, None] * kl_dims, axis=0)  # [Z]
  count = jnp.sum(weights)
  if axis_name is not None:
    total, count = jax.lax.psum((total, count), axis_name)
  active = total / jnp.maximum(count, 1.0) > free_bits  # [Z]
  return jnp.sum(jnp.where(active, kl_dims, free_bits), axis=-1)


def token_nll(logits: Array, targets: Array, lengths: Array) -> Array:
  """Summed cross-entropy of each sentence's targets.

  Args:
    logits: <f32>[B, T-1, V] scores of tokens[:, 1:] (bfloat16 logits are
      cast: the log-softmax is computed in float32).
    targets: <i32>[B, T-1] = tokens[:, 1:] (words then EOS, then PAD).
    lengths: <i32>[B] tokens incl. BOS and EOS; L - 1 targets are scored
      (EOS counted, BOS never a target, pads excluded).

  Returns:
    <f32>[B] -log p(x | z) per sentence.
  """
  ce = optax.softmax_cross_entropy_with_integer_labels(_f32(logits), targets)
  mask = jnp.arange(targets.shape[1]) < (lengths - 1)[:, None]
  return jnp.sum(jnp.where(mask, ce, 0.0), axis=1)


def objective(rec: Array, kl: Array, weights: Array, beta: Array,
              reduction: str, count: Array | None = None) -> Array:
  """Sum over the batch of (rec + beta * kl), like the paper, or its mean.

  Args:
    rec, kl: <f32>[B] per-sentence terms.
    weights: <f32>[B] 1 for real sentences, 0 for padding rows.
    beta: KL weight.
    reduction: 'sum' (paper) or 'mean' (per sentence).
    count: the number of sentences to divide by for 'mean' (the global count
      when the batch is split across devices); defaults to sum(weights).

  Returns:
    The scalar loss.
  """
  total = jnp.sum(weights * (rec + beta * kl))
  if reduction == 'sum':
    return total
  if reduction != 'mean':
    raise ValueError(f'reduction must be one of {REDUCTIONS}, got {reduction!r}')
  return total / (jnp.sum(weights) if count is None else count)
