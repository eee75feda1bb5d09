"""The language model's metrics: mutual information, active units, ROUGE.

Both follow He et al. (2019), "Lagging Inference Networks and Posterior
Collapse in Variational Autoencoders" (jxhe/vae-lagging-encoder, `calc_mi`
and `calc_au`); see SPEC A.8. They run on the host in float64 NumPy, on
posterior statistics gathered from the device, so that the log-sum-exp over a
batch and the variance over a whole split do not lose precision.
"""

import functools

import numpy as np

_LOG_2PI = np.log(2.0 * np.pi)


def _as_posterior(mu, logvar, z) -> tuple[np.ndarray, ...]:
  """Converts to float64 and checks that all three are `[B, Z]` alike."""
  mu, logvar, z = (np.asarray(a, np.float64) for a in (mu, logvar, z))
  if mu.ndim != 2 or not mu.shape == logvar.shape == z.shape:
    raise ValueError(
        'mu, logvar and z must all have shape [batch, latent]; got '
        f'{mu.shape}, {logvar.shape}, {z.shape}.'
    )
  return mu, logvar, z


def mutual_information(mu, logvar, z) -> float:
  """He et al.'s estimate of I(x; z) under q on one batch.

  The aggregate posterior q(z) is approximated by the mixture of the batch's
  B posteriors, so the estimate is at most about log B and depends on the
  batch size (SPEC A.8). The samples are arguments, not drawn here, so that a
  result can be reproduced exactly.

  Args:
    mu: `[B, Z]` posterior means of q(z|x_i).
    logvar: `[B, Z]` posterior log-variances of q(z|x_i).
    z: `[B, Z]` one sample z_i ~ q(z|x_i) per example.

  Returns:
    negH - mean_i log q̂(z_i), in nats, where negH is the mean negative entropy
    of the posteriors and q̂(z_i) = (1/B) Σ_k q(z_i|x_k).
  """
  mu, logvar, z = _as_posterior(mu, logvar, z)
  batch, latent = mu.shape
  neg_entropy = np.mean(
      -0.5 * latent * _LOG_2PI - 0.5 * np.sum(1.0 + logvar, axis=-1)
  )
  # log q(z_i | x_k) for every pair: [B (i), B (k)]. The [B, B, Z] temporary is
  # small at the batch sizes this estimator is meant for (32 or 64).
  dev = z[:, None, :] - mu[None, :, :]
  log_norm = -0.5 * (latent * _LOG_2PI + np.sum(logvar, axis=-1))  # [B (k)]
  log_density = -0.5 * np.sum(dev**2 / np.exp(logvar), axis=-1) + log_norm
  top = np.max(log_density, axis=1, keepdims=True)
  log_mixture = top[:, 0] + np.log(np.sum(np.exp(log_density - top), axis=1))
  log_qz = log_mixture - np.log(batch)
  return float(neg_entropy - np.mean(log_qz))


def grouped_mutual_information(mu, logvar, z, group_size: int) -> float:
  """Batch-size-weighted mean of `mutual_information` over consecutive groups.

  This is how He et al. report MI over a split: one estimate per batch,
  averaged with weights B_g, so the last, smaller group counts less.

  Args:
    mu: `[N, Z]` posterior means, in the order that defines the groups.
    logvar: `[N, Z]` posterior log-variances.
    z: `[N, Z]` one posterior sample per example.
    group_size: examples per group; the last group may be smaller.

  Returns:
    Σ_g B_g MI_g / Σ_g B_g, in nats.
  """
  mu, logvar, z = _as_posterior(mu, logvar, z)
  if group_size < 1:
    raise ValueError(f'group_size must be >= 1, got {group_size}.')
  total = 0.0
  for start in range(0, mu.shape[0], group_size):
    end = start + group_size
    mi = mutual_information(mu[start:end], logvar[start:end], z[start:end])
    total += mi * len(mu[start:end])
  return total / mu.shape[0]


def active_units(mu, threshold: float = 0.01) -> tuple[int, np.ndarray]:
  """Counts latent dimensions whose posterior mean varies across the data.

  Args:
    mu: `[N, Z]` posterior means over a whole split, N >= 2.
    threshold: a dimension is active when its variance is >= threshold.

  Returns:
    `(count, variances)`: the number of active units and the `[Z]` unbiased
    variances Σ_n (μ_nj − μ̄_j)² / (N − 1).
  """
  mu = np.asarray(mu, np.float64)
  if mu.ndim != 2 or mu.shape[0] < 2:
    raise ValueError(f'mu must have shape [N >= 2, latent], got {mu.shape}.')
  variances = np.var(mu, axis=0, ddof=1)
  return int(np.sum(variances >= threshold)), variances


ROUGE_TYPES = ('rouge1', 'rouge2', 'rougeL')


class _WhitespaceTokenizer:
  """SPEC C's tokenizer: `str.split`, no lowercasing or punctuation removal
  (rouge-score's default tokenizer would drop `<unk>`'s brackets)."""

  def tokenize(self, text: str) -> list[str]:
    return text.split()


@functools.cache
def _rouge_scorer():
  # Built on first use: rouge-score imports nltk, which pulls in scipy.stats,
  # over half of a launcher's import time, for interpolation alone.
  from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top
  return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False,
                                 tokenizer=_WhitespaceTokenizer())


def rouge_scores(reference: str, hypothesis: str) -> dict[str, float]:
  """ROUGE-1, ROUGE-2 and ROUGE-L F1 of two whitespace-tokenised texts, by
  rouge-score (the reference SPEC C names; for latent interpolation).

  Tokens are compared exactly as `str.split()` returns them ('The' !=
  'the'); n-gram matches are clipped counts; ROUGE-L is the sentence-level
  LCS; a text shorter than n scores 0 for ROUGE-N.

  Args:
    reference: the reference text, e.g. an interpolation end point x1.
    hypothesis: the text to score, e.g. a decoded y(tau).

  Returns:
    {'rouge1': f, 'rouge2': f, 'rougeL': f}, each F1 in [0, 1].
  """
  scores = _rouge_scorer().score(reference, hypothesis)
  return {key: scores[key].fmeasure for key in ROUGE_TYPES}
