"""Evaluation of a language model on a whole split (standard definitions).

Every number is a function of the split and the parameters only: each
sentence's noise comes from its own key, padding rows are masked out, and the
MI groups are formed in a fixed order, so results do not change with the
evaluation batch size or the device count.

Per split it reports, per sentence unless noted:
  loss      the training objective at beta = 1 (rec + timestep-wise KL term);
  rec       -log p(x | z), z sampled from q(z | x);
  kl        KL(q(z | x) || N(0, I)) of the Gaussian z is really drawn from
            (SPEC A.10: q_T for 'last', the pooled Gaussian for mean / sum);
  kl_twr    the objective's per-step-average KL (not a KL of z; SPEC A.9);
  kl_last   KL of the posterior at the true last token (the TWR term with
            weight 1/L in the objective);
  nll_elbo  rec + kl: a one-sample upper bound on -log p(x);
  ppl       exp(sum nll_elbo / sum(|x| + 1)) (EOS counted, BOS not): an upper
            bound on perplexity;
  mi        He et al.'s mutual-information estimate (groups of
            eval.mi_group_size sentences of similar length);
  au        active units, Var_x E_q[z] >= eval.au_threshold (NaN for a split
            of one sentence, where the variance is undefined).
"""

from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from twr_jax.core import losses
from twr_jax.core import parallel
from twr_jax.core import prng
from twr_jax.lm import input_pipeline
from twr_jax.lm import metrics
from twr_jax.lm import model as models

Array = jax.Array


PROFILE_BINS = 10


def make_eval_step(model: models.TWRVAE, config: ml_collections.ConfigDict):
  """Returns `eval_step(params, batch, key, *, axis_name)` -> per-sentence
  outputs: 'rec', 'kl', 'kl_twr', 'kl_last' <f32>[B]; 'z_mu', 'z_logvar', 'z'
  <f32>[B, Z]; 'profile_kl', 'profile_n' <f32>[B, PROFILE_BINS] (sums and
  counts of per-step KL by relative position t / (L - 1))."""
  window = config.model.kl_window

  def eval_step(params, batch, key, *, axis_name=None):
    del axis_name  # Per-sentence outputs need no collective.
    tokens, lengths = batch['tokens'], batch['lengths']
    keys = prng.example_keys(key, batch['index'])
    noise = models.example_noise(keys, tokens.shape[1], model.emb_dim,
                                 model.latent, model.dropout, train=False)
    out = model.apply({'params': params}, tokens, lengths, noise)
    mu, logvar = out['mu'], out['logvar']
    kl_t = losses.gaussian_kl(mu, logvar)  # [B, T]
    t = jnp.arange(tokens.shape[1])
    valid = t < lengths[:, None]
    rel = t / jnp.maximum(lengths[:, None] - 1, 1)
    bins = jax.nn.one_hot(
        jnp.minimum((rel * PROFILE_BINS).astype(jnp.int32), PROFILE_BINS - 1),
        PROFILE_BINS) * valid[..., None]
    last_mu, last_logvar = models.pool_posterior(mu, logvar, lengths, 'last')
    return dict(
        rec=losses.token_nll(out['logits'], tokens[:, 1:], lengths),
        kl=losses.gaussian_kl(out['z_mu'], out['z_logvar']),
        kl_twr=losses.masked_kl(mu, logvar, lengths, window),
        kl_last=losses.gaussian_kl(last_mu, last_logvar),
        z_mu=out['z_mu'], z_logvar=out['z_logvar'], z=out['z'],
        profile_kl=jnp.einsum('bt,btk->bk', kl_t, bins),
        profile_n=jnp.sum(bins, axis=1),
    )

  return eval_step


class Evaluator:
  """Evaluates parameters on a split's `Batcher`.

  Attributes:
    config: the run config ('eval' section).
    layout: the device layout the parameters live in.
    key: the evaluation key (fixed: the same noise at every evaluation).
  """

  def __init__(self, model: models.TWRVAE, config: ml_collections.ConfigDict,
               layout: parallel.Layout, key: jax.Array):
    self.config = config
    self.layout = layout
    self.key = key
    self._step = layout.compile(make_eval_step(model, config), 3,
                                broadcast_argnums=(2,))

  def outputs(self, params, batcher: input_pipeline.Batcher) -> dict[str, np.ndarray]:
    """Per-sentence outputs for every sentence of the split, in index order."""
    chunks = []
    for batch in batcher.eval_batches():
      local = self.layout.shard(parallel.process_rows(batch))
      out = self.layout.unshard(self._step(params, local, self.key))
      if jax.process_count() > 1:
        # Processes hold consecutive row blocks: gather them in order.
        out = jax.tree_util.tree_map(
            lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]),
            multihost_utils.process_allgather(out),
        )
      keep = batch['weights'] > 0
      out = {k: np.asarray(v)[keep] for k, v in out.items()}
      out['length'] = batch['lengths'][keep]
      out['index'] = batch['index'][keep]
      chunks.append(out)
    merged = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    order = np.argsort(merged['index'], kind='stable')
    return {k: v[order] for k, v in merged.items()}

  def evaluate(self, params, batcher: input_pipeline.Batcher) -> dict[str, float]:
    """The split's metrics (see the module docstring)."""
    return summarise(self.outputs(params, batcher), self.config)


def summarise(out: dict[str, np.ndarray],
              config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Reduces per-sentence outputs to the split's scalar metrics."""
  n = len(out['rec'])
  f64 = lambda k: out[k].astype(np.float64)
  rec, kl, kl_twr = f64('rec'), f64('kl'), f64('kl_twr')
  tokens = float(np.sum(out['length'] - 1))  # |x| + 1 scored tokens each.
  # AU is a variance over the split's sentences: undefined below 2 (NaN).
  au = (metrics.active_units(f64('z_mu'), config.eval.au_threshold)[0]
        if n >= 2 else float('nan'))
  if n < 2:
    logging.warning('AU is undefined for a split of %d sentence(s): NaN.', n)
  return dict(
      loss=float(np.sum(rec + kl_twr) / n), rec=float(np.sum(rec) / n),
      kl=float(np.sum(kl) / n), kl_twr=float(np.sum(kl_twr) / n),
      kl_last=float(np.mean(f64('kl_last'))),
      nll_elbo=float(np.sum(rec + kl) / n),
      ppl=float(np.exp(np.sum(rec + kl) / tokens)),
      mi=grouped_mi(out, config.eval.mi_group_size), au=au,
      sentences=n, tokens=tokens,
  )


def grouped_mi(out: dict[str, np.ndarray], group_size: int) -> float:
  """He et al.'s MI over groups of similar-length sentences (their batches
  hold one length); the (length, index) order does not depend on batching."""
  order = np.lexsort((out['index'], out['length']))
  return float(metrics.grouped_mutual_information(
      *(out[k][order].astype(np.float64) for k in ('z_mu', 'z_logvar', 'z')),
      group_size))


def kl_profile(out: dict[str, np.ndarray]) -> dict[str, list[float]]:
  """Mean per-step KL by relative position in the sentence (0 = BOS)."""
  kl = out['profile_kl'].astype(np.float64).sum(0)
  count = out['profile_n'].astype(np.float64).sum(0)
  centres = (np.arange(PROFILE_BINS) + 0.5) / PROFILE_BINS
  return dict(bins=centres.tolist(),
              kl=(kl / np.maximum(count, 1)).tolist())
