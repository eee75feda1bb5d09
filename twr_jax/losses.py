"""Losses of the TWR-VAE language model (SPEC A.4).

All functions return per-example values; the reduction to a scalar happens once,
in `objective`, so that the paper's sum over the batch and a per-sentence mean
are one switch apart.

References:
  Li et al., "Improving Variational Autoencoder for Text Modelling with
  Timestep-Wise Regularisation", COLING 2020, Section 3.
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


def gaussian_kl(mu: Array, logvar: Array) -> Array:
  """KL(N(mu, exp(logvar)) || N(0, I)), summed over the last axis.

  Args:
    mu, logvar: <f32>[..., Z].

  Returns:
    <f32>[...].
  """
  return -0.5 * jnp.sum(1.0 + logvar - mu**2 - jnp.exp(logvar), axis=-1)


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


def token_nll(logits: Array, targets: Array, lengths: Array) -> Array:
  """Summed cross-entropy of each sentence's targets.

  Args:
    logits: <f32>[B, T-1, V] scores of tokens[:, 1:].
    targets: <i32>[B, T-1] = tokens[:, 1:] (words then EOS, then PAD).
    lengths: <i32>[B] tokens incl. BOS and EOS; L - 1 targets are scored
      (EOS counted, BOS never a target, pads excluded).

  Returns:
    <f32>[B] -log p(x | z) per sentence.
  """
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
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
