"""Reconstruction from z: the direct evidence that the decoder uses the latent.

Each sentence x is encoded, z is set to the mean of the Gaussian z really
follows (`models.pool_posterior`, over the sentence's own steps), and the
decoder runs free (greedy, no teacher forcing) from z. The output is scored
against x:

  bleu4           corpus BLEU-4 (uniform weights, no smoothing, NLTK's
                  `corpus_bleu`; Papineni et al., 2002) of the words, EOS
                  excluded, one reference per sentence;
  token_accuracy  the fraction of the |x| + 1 target positions (the words,
                  then EOS) where the greedy output has the same token.

A model whose decoder ignores z (posterior collapse) produces the same
sentence for every x and scores near zero on both; this is the measure that
Optimus (Li et al., 2020) and similar projects report as reconstruction.
"""

import functools
from typing import Any
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from twr_jax.core import text
from twr_jax.lm import decoding as decode
from twr_jax.lm import input_pipeline
from twr_jax.lm import model as models


def token_accuracy(references: list[list[int]],
                   hypotheses: list[list[int]]) -> float:
  """Position-wise accuracy over the references' tokens.

  Args:
    references: per sentence, the target ids (words then EOS), |x| + 1 each.
    hypotheses: per sentence, the decoded ids (words then EOS if decoding
      ended); positions past a hypothesis' end count as wrong.

  Returns:
    sum of matches / sum of reference lengths, in [0, 1].
  """
  hits = total = 0
  for ref, hyp in zip(references, hypotheses, strict=True):
    hits += sum(r == h for r, h in zip(ref, hyp))
    total += len(ref)
  return hits / total


@functools.partial(jax.jit, static_argnames='model')
def _posterior_mean(model, params, tokens, lengths):
  mu, logvar = model.apply({'params': params}, tokens,
                           method=models.TWRVAE.encode)
  return models.pool_posterior(mu, logvar, lengths, model.z_mode)[0]


def reconstruct(model: models.TWRVAE, params,
                batcher: input_pipeline.Batcher) -> dict[str, Any]:
  """Greedy reconstructions of every sentence of a split.

  Args:
    model, params: the trained model (eval mode: no dropout).
    batcher: the split's batches (`eval_batches`: every sentence once).

  Returns:
    'index' <i32>[N] split positions, 'references' and 'hypotheses' (lists
    of id lists: the targets words + EOS, and the greedy output words, + EOS
    if decoding ended within the batch's padded length T), in batch order.
  """
  index, refs, hyps = [], [], []
  for batch in batcher.eval_batches():
    tokens, lengths = batch['tokens'], batch['lengths']
    z = _posterior_mean(model, params, jnp.asarray(tokens),
                        jnp.asarray(lengths))
    # T >= |x| + 2 steps: room for every word, EOS, and one more.
    out, out_len = jax.device_get(
        decode.greedy(model, params, z, tokens.shape[1]))
    for row in np.flatnonzero(batch['weights'] > 0):
      index.append(int(batch['index'][row]))
      refs.append(tokens[row, 1:lengths[row]].tolist())
      hyp = out[row, :out_len[row]].tolist()
      if out_len[row] < out.shape[1]:  # Ended with EOS.
        hyp.append(text.EOS)
      hyps.append(hyp)
  return dict(index=np.asarray(index, np.int32), references=refs,
              hypotheses=hyps)


def scores(references: list[list[int]],
           hypotheses: list[list[int]]) -> dict[str, float]:
  """'bleu4' (corpus BLEU-4 of the words, EOS dropped) and 'token_accuracy'
  (see the module docstring) of `reconstruct`'s output."""
  # Imported here: nltk pulls in scipy.stats, most of a launcher's import
  # time, and only this function needs it.
  from nltk.translate import bleu_score  # pylint: disable=g-import-not-at-top
  words = lambda ids: [str(i) for i in ids if i != text.EOS]
  with warnings.catch_warnings():
    # With no matching n-gram of some order the corpus BLEU is 0 by its
    # definition (an untrained or collapsed model); NLTK warns at every call.
    warnings.filterwarnings('ignore', message=r'\s*The hypothesis contains 0',
                            category=UserWarning)
    bleu = bleu_score.corpus_bleu([[words(r)] for r in references],
                                  [words(h) for h in hypotheses])
  return dict(bleu4=float(bleu),
              token_accuracy=token_accuracy(references, hypotheses))
