"""The original code's evaluation protocol (SPEC A.7), to set beside the paper.

Labelled `paper` everywhere: these numbers are NOT a likelihood bound
(SPEC A.9). With the original's batching (length-sorted consecutive chunks of
64, each padded to its longest sentence T_b) and eval mode:

  z        = mu at the padded last position T_b ('last'), or the mean / sum of
             mu over all T_b padded steps ('mean' / 'sum') - no sampling;
  rec      = teacher-forced cross-entropy from that z (pads not scored);
  kl       = the objective's per-step-average KL over the padded length;
  nll      = (sum rec + sum kl) / N;
  ppl      = exp((sum rec + sum kl) / sum(|x| + 2))  (BOS counted too);
  mi       = sum_b B_b MI_b / N, MI_b He et al.'s estimator on the batch with
             q at position T_b (even for mean / sum) and one draw of z.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from twr_jax.core import losses
from twr_jax.core import prng
from twr_jax.lm import input_pipeline
from twr_jax.lm import metrics
from twr_jax.lm import model as models

NOTE = ('SPEC A.7 protocol of the original code: z = posterior mean at the'
        ' padded last position, per-step-average KL, PPL denominator counts'
        ' BOS and EOS, MI per batch of 64 from q_T. Not a likelihood bound'
        ' (SPEC A.9); compare only with the paper\'s own TWR rows.')


@functools.partial(jax.jit, static_argnames=('model', 'window'))
def _paper_step(model: models.TWRVAE, window: str, params, batch, key):
  tokens, lengths, enc = batch['tokens'], batch['lengths'], batch['enc_lengths']
  variables = {'params': params}
  mu, logvar = model.apply(variables, tokens, method=models.TWRVAE.encode)
  z, _ = models.pool_posterior(mu, logvar, enc, model.z_mode)
  logits = model.apply(variables, tokens[:, :-1], z,
                       method=models.TWRVAE.decode)
  last_mu, last_logvar = models.pool_posterior(mu, logvar, enc, 'last')
  keys = prng.example_keys(key, batch['index'])
  eps = jax.vmap(lambda k: jax.random.normal(k, last_mu.shape[-1:]))(keys)
  return dict(
      rec=losses.token_nll(logits, tokens[:, 1:], lengths),
      kl=losses.masked_kl(mu, logvar, enc, window),
      mu=last_mu, logvar=last_logvar,
      z=last_mu + jnp.exp(0.5 * last_logvar) * eps,
  )


def evaluate(model: models.TWRVAE, params, sequences, window: str,
             key: jax.Array, batch_size: int = 64,
             bucket_size: int = 8) -> dict[str, Any]:
  """The paper-protocol numbers of a split (see the module docstring)."""
  rec = kl = words = 0.0
  mi_sum, n = 0.0, 0
  for batch in input_pipeline.paper_batches(sequences, batch_size,
                                            bucket_size):
    out = jax.device_get(_paper_step(model, window, params, batch, key))
    keep = batch['weights'] > 0
    rec += float(np.sum(out['rec'][keep], dtype=np.float64))
    kl += float(np.sum(out['kl'][keep], dtype=np.float64))
    words += float(np.sum(batch['lengths'][keep]))  # len + 2 per sentence.
    b = int(keep.sum())
    if b > 1:  # One sentence carries no information about the aggregate.
      mi_sum += b * metrics.mutual_information(
          *(out[k][keep].astype(np.float64) for k in ('mu', 'logvar', 'z')))
    n += b
  return dict(nll=(rec + kl) / n, rec=rec / n, kl=kl / n,
              ppl=float(np.exp((rec + kl) / words)), mi=mi_sum / n,
              sentences=n, words=words, batch_size=batch_size, note=NOTE)
