"""Importance-weighted log-likelihood (SPEC A.8, A.10).

    log p(x) ~= logsumexp_k [log p(x | z_k) + log N(z_k; 0, I) - log q(z_k | x)]
                - log K,        z_k ~ q(z | x),

with q the Gaussian z really follows (q_T at the true last token for 'last',
the pooled Gaussian for 'mean' / 'sum'), in eval mode. The estimate is a lower
bound on log p(x) that tightens as K grows (Burda et al., 2016), so -log p(x)
reported from it is an upper bound on the NLL, never above the ELBO's.

Sentences are batched and the K samples are processed in chunks within a
budget of decoder positions per call. Sample k of a sentence is drawn from
fold_in(sentence_key, k): the estimate does not depend on the batch size or
the chunk size. Two things make a call fast without changing the estimate
(bench/iwnll_throughput.py measures each): a sentence's samples share its
decoder input projection (`models.TWRVAE.decode` with z <f32>[B, C, Z]), and
the output layer + cross-entropy run one timestep at a time
(`stepwise_token_nll`), so no (samples x tokens x V) logits are ever
materialised and steps past the sentences' ends are skipped.
"""

import functools
import math
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from twr_jax.core import layers
from twr_jax.core import prng
from twr_jax.lm import input_pipeline
from twr_jax.lm import model as models

Array = jax.Array
_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_weights(log_px_given_z: Array, z: Array, eps: Array,
                         logvar: Array) -> Array:
  """log p(x|z) + log N(z; 0, I) - log q(z|x) for z = mu + sigma * eps.

  Args:
    log_px_given_z: <f32>[..., K].
    z, eps: <f32>[..., K, Z].
    logvar: <f32>[..., Z] of q.

  Returns:
    <f32>[..., K].
  """
  log_q = -0.5 * jnp.sum(eps**2 + _LOG_2PI + logvar[..., None, :], axis=-1)
  log_prior = -0.5 * jnp.sum(z**2 + _LOG_2PI, axis=-1)
  return log_px_given_z + log_prior - log_q


@functools.partial(jax.jit, static_argnames=('model',))
def _posterior(model: models.TWRVAE, params, tokens, lengths):
  mu, logvar = model.apply({'params': params}, tokens,
                           method=models.TWRVAE.encode)
  return models.pool_posterior(mu, logvar, lengths, model.z_mode)


@functools.partial(jax.jit, static_argnames=('model', 'chunk'))
def _chunk_log_weights(model: models.TWRVAE, params, tokens, lengths, z_mu,
                       z_logvar, keys, start, chunk: int):
  """Log weights of samples start .. start + chunk - 1: <f32>[B, chunk]."""
  b, t = tokens.shape
  ids = start + jnp.arange(chunk)
  draw = lambda key: jax.vmap(
      lambda j: jax.random.normal(jax.random.fold_in(key, j), z_mu.shape[-1:])
  )(ids)
  eps = jax.vmap(draw)(keys)  # [B, C, Z]
  z = z_mu[:, None] + jnp.exp(0.5 * z_logvar)[:, None] * eps
  # The C decodes of a sentence share its input projection; sentence-major
  # rows b * C + c.
  h = model.apply({'params': params}, tokens[:, :-1], z,
                  method=models.TWRVAE.decode_hidden)
  rep = jnp.repeat(tokens, chunk, axis=0)
  rec = stepwise_token_nll(h, params['out'], rep[:, 1:],
                           jnp.repeat(lengths, chunk), model.dtype)
  return gaussian_log_weights(-rec.reshape(b, chunk), z, eps, z_logvar)


def stepwise_token_nll(h: Array, out_params, targets: Array,
                       lengths: Array, dtype=jnp.float32) -> Array:
  """`losses.token_nll` of the logits h W + b, one timestep at a time.

  Equal to `token_nll(model.out(h), ...)` up to float rounding, but only one
  step's logits <f32>[N, V] exist at a time (they stay in cache instead of
  making a round trip through memory), and steps past every row's length are
  skipped, not computed and masked.

  Args:
    h: <f32>[N, T', H] decoder outputs.
    out_params: the output layer's {'kernel' <f32>[H, V], 'bias' <f32>[V]}.
    targets: <i32>[N, T'].
    lengths: <i32>[N] tokens incl. BOS and EOS (L - 1 targets scored).
    dtype: the model's compute dtype: the output layer's matmul runs in it
      (like `layers.Affine`), the log-softmax and the sum in float32.

  Returns:
    <f32>[N] -log p(x | z) per row.
  """
  w, bias = (out_params[k].astype(dtype) for k in ('kernel', 'bias'))
  n = h.shape[0]

  def step(total, xs):
    t, h_t, y_t = xs

    def nll():
      logits = layers.linear(h_t.astype(dtype), w, bias).astype(jnp.float32)
      label = jnp.take_along_axis(logits, y_t[:, None], axis=-1)[:, 0]
      ce = jax.nn.logsumexp(logits, axis=-1) - label
      return total + jnp.where(t < lengths - 1, ce, 0.0)

    return jax.lax.cond(t < jnp.max(lengths) - 1, nll, lambda: total), None

  steps = jnp.arange(h.shape[1])
  total, _ = jax.lax.scan(step, jnp.zeros((n,), jnp.float32),
                          (steps, h.swapaxes(0, 1), targets.T))
  return total


def chunk_size(num_samples: int, batch_size: int, length: int,
               token_budget: int) -> int:
  """The largest divisor of K with batch * chunk * length <= token_budget."""
  limit = max(1, token_budget // (batch_size * length))
  return max(d for d in range(1, num_samples + 1)
             if num_samples % d == 0 and d <= limit)


def log_likelihood(model: models.TWRVAE, params, batcher:
                   input_pipeline.Batcher, key: Array, num_samples: int,
                   token_budget: int = 65536,
                   log_every_s: float = 30.0) -> dict[str, np.ndarray]:
  """IW estimates of log p(x) for every sentence of a split.

  Args:
    model, params: the model (eval mode).
    batcher: the split; its batch size is the number of sentences per call.
    key: the evaluation key (sentence i uses fold_in(key, i)).
    num_samples: K.
    token_budget: at most batch * chunk * length decoder positions per call
      (their decoder states take budget * H floats; one step's logits,
      batch * chunk * |V| floats, exist at a time). The defaults, one
      sentence and up to 65536 positions (all K = 500 samples of a PTB
      sentence in one call), were the fastest measured (see
      bench/iwnll_throughput.py).
    log_every_s: progress logging interval.

  Returns:
    'log_px' <f64>[N] (in index order), 'length' <i32>[N] tokens incl. BOS and
    EOS, 'index', and 'seconds' (wall time).
  """
  n_total = sum(int(b['weights'].sum()) for b in batcher.eval_batches())
  results, done, t0, t_log = [], 0, time.time(), time.time()
  for batch in batcher.eval_batches():
    tokens, lengths = jnp.asarray(batch['tokens']), jnp.asarray(batch['lengths'])
    keys = prng.example_keys(key, jnp.asarray(batch['index']))
    z_mu, z_logvar = _posterior(model, params, tokens, lengths)
    chunk = chunk_size(num_samples, tokens.shape[0], tokens.shape[1],
                       token_budget)
    log_w = [np.asarray(_chunk_log_weights(
        model, params, tokens, lengths, z_mu, z_logvar, keys, start, chunk))
             for start in range(0, num_samples, chunk)]
    log_w = np.concatenate(log_w, axis=1).astype(np.float64)
    log_px = (np.logaddexp.reduce(log_w, axis=1) - math.log(num_samples))
    keep = batch['weights'] > 0
    results.append((log_px[keep], batch['lengths'][keep], batch['index'][keep]))
    done += int(keep.sum())
    if time.time() - t_log > log_every_s or done == n_total:
      rate = done / (time.time() - t0)
      logging.info('IW-NLL (K=%d): %d/%d sentences, %.2f sentences/s, ETA %ds',
                   num_samples, done, n_total, rate, (n_total - done) / rate)
      t_log = time.time()
  log_px, length, index = (np.concatenate(x) for x in zip(*results))
  order = np.argsort(index, kind='stable')
  return dict(log_px=log_px[order], length=length[order], index=index[order],
              seconds=time.time() - t0)
