"""Loss evaluation of the dialogue model during training (SPEC B.4, B.8).

The loop's evaluation: per-example ELBO terms of a split's contexts, with
z drawn from q with each example's fixed key and beta = 1. Generation metrics
(BLEU, BOW, distinct-n) are `dialogue/report.py`'s.
"""

import jax
import numpy as np

from twr_jax.core import prng
from twr_jax.dialogue import losses as dialogue_losses
from twr_jax.dialogue import model as dialogue_model


def make_eval_step(model: dialogue_model.DialogTWRVAE):
  """`eval_step(params, batch, key, *, axis_name)` -> metric sums (eval
  mode, z sampled from q with each example's fixed key, beta = 1)."""

  def eval_step(params, batch, key, *, axis_name=None):
    keys = prng.example_keys(key, batch['index'])
    _, aux = dialogue_losses.dialogue_loss(
        model, params, batch, keys, 1.0, False,
        max_turns=dialogue_losses.max_turns(batch, axis_name))
    sums = dialogue_losses.metric_sums(aux, batch['weights'], 1.0)
    return sums if axis_name is None else jax.lax.psum(sums, axis_name)

  return eval_step


def summarise(sums: dict[str, float]) -> dict[str, float]:
  """Per-example means. 'nll_elbo' = rec + KL(q(z|x,c) || p(z|c)) at c is a
  bound on -log p(x | c) (the objective's timestep-wise KL is not, SPEC B.4);
  'ppl' = exp(sum nll_elbo / scored tokens), `</s>` counted, `<s>` not."""
  n = max(sums['sentences'], 1.0)
  nll = sums['rec'] + sums['kl']
  return dict(
      loss=sums['loss'] / n, rec=sums['rec'] / n, kl=sums['kl'] / n,
      kl_twr=sums['kl_twr'] / n, nll_elbo=nll / n,
      ppl=float(np.exp(nll / max(sums['tokens'], 1.0))),
      sentences=sums['sentences'], tokens=sums['tokens'],
  )
