"""Dialogue response metrics: BLEU, BOW embedding and distinct (SPEC B.7/B.8).

In-house BLEU is the paper mode's only: NLTK 3.5's smoothing arithmetic,
which no maintained library (modern NLTK included) still computes.

Two modes, side by side:

  paper     what DialogWAE's `Metrics` and the TWR-VAE `evaluate()` compute,
            quirks included, so that numbers can be set next to the paper's
            Table 5 (SPEC B.7);
  standard  the same quantities with the quirks of SPEC B.8 fixed.

`sentence_bleu` is nltk's `sentence_bleu([ref], hyp, weights=(1/3, 1/3,
1/3), smoothing_function=SmoothingFunction().method7)`: the installed NLTK's
(>= 3.6) for the standard mode, and a port of NLTK 3.5's for the paper mode
(`multi_sentence_bleu` the same with several references, for a kgCVAE-style
multi-reference file read by `read_references`). `cosine_similarity` is
sklearn's for dense arrays (sklearn is not needed).
"""

from collections import Counter
from collections.abc import Callable, Sequence
from fractions import Fraction
import functools
import json
import math
import os
from typing import Any

from absl import logging
import numpy as np

from twr_jax import errors
from twr_jax.core import text
from twr_jax.dialogue import data as dialogue_data

EOS = '</s>'
BOS = '<s>'
PAD = '<pad>'
UNK = '<unk>'

BLEU_IMPLS = ('nltk35', 'nltk_modern')
BOW_MODES = ('paper', 'standard')
BOW_SKIPPED = 'skipped: no embedding file'

_BLEU_WEIGHTS = (1 / 3, 1 / 3, 1 / 3)
# SmoothingFunction()'s default k, the constant of smoothing method 4.
_METHOD4_K = 5


@functools.cache
def _nltk_method7() -> tuple[Callable[..., float], Callable[..., Any]]:
  """nltk's (sentence_bleu, SmoothingFunction().method7), imported once.

  Imported on first use, not with this module: nltk pulls in scipy.stats,
  over half of the import time of `twr_jax.tasks`, which every launcher
  pays even when it computes no BLEU.
  """
  from nltk.translate import bleu_score  # pylint: disable=g-import-not-at-top
  return bleu_score.sentence_bleu, bleu_score.SmoothingFunction().method7

Tokens = Sequence[str]


# ----------------------------------------------------------------------------
# BLEU


def _ngram_counts(tokens: Tokens, n: int) -> Counter:
  return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _modified_precision(references: Sequence[Tokens], hypothesis: Tokens,
                        n: int) -> tuple[int, int]:
  """nltk's clipped n-gram precision, as (numerator, denominator) ints.

  Each hypothesis n-gram count is clipped to its largest count in any one
  reference (nltk's `max_counts`). The counts are kept apart from their value
  because smoothing method 4 divides by the *unreduced* denominator (nltk
  builds its Fractions with `_normalize=False`), e.g. 0/3 must stay 3 and not
  become 0/1.
  """
  hyp_counts = _ngram_counts(hypothesis, n)
  ref_counts = [_ngram_counts(reference, n) for reference in references]
  numerator = sum(min(count, max(counts[gram] for counts in ref_counts))
                  for gram, count in hyp_counts.items())
  return numerator, max(1, sum(hyp_counts.values()))


def _closest_ref_length(references: Sequence[Tokens], hyp_len: int) -> int:
  # nltk's closest_ref_length (unchanged since 3.5): the reference length
  # nearest to the hypothesis length, the shorter one on a tie.
  return min((len(reference) for reference in references),
             key=lambda ref_len: (abs(ref_len - hyp_len), ref_len))


def _brevity_penalty(ref_len: int, hyp_len: int) -> float:
  if hyp_len > ref_len:
    return 1
  if hyp_len == 0:
    return 0
  return math.exp(1 - ref_len / hyp_len)


def _method4_nltk35(p_n: list, counts: list[tuple[int, int]],
                    hyp_len: int) -> None:
  # NLTK <= 3.5 computes `i + 1 * k / ln L`, which parses as i + k / ln L:
  # the "smoothed" count of a missing order is several units, so its
  # precision can exceed 1; and ln 1 = 0 divides by zero (SPEC B.7).
  for i, (numerator, denominator) in enumerate(counts):
    if numerator == 0 and hyp_len != 0:
      incvnt = i + 1 * _METHOD4_K / math.log(hyp_len)
      p_n[i] = incvnt / denominator


def _method5(p_n: list, references: Sequence[Tokens],
             hypothesis: Tokens) -> None:
  # Averages each order with its neighbours. nltk appends the *5-gram*
  # precision (against all the references) as the "n+1" neighbour of the last
  # order whatever the number of weights, so with 3 weights the trigram is
  # averaged with 5-grams.
  p_n_plus1 = p_n + [Fraction(*_modified_precision(references, hypothesis,
                                                   5))]
  previous = p_n[0] + 1
  for i, p_i in enumerate(p_n):
    # Fraction + float falls back to float, exactly as in nltk.
    p_n[i] = (previous + p_i + p_n_plus1[i + 1]) / 3
    previous = p_n[i]


def _check_impl(impl: str) -> None:
  if impl not in BLEU_IMPLS:
    raise ValueError(f'impl must be one of {BLEU_IMPLS}, got {impl!r}.')


def _bleu(references: list[list[str]], hypothesis: list[str],
          impl: str) -> float:
  """The BLEU core of `sentence_bleu` and `multi_sentence_bleu`."""
  if impl == 'nltk_modern':
    nltk_sentence_bleu, method7 = _nltk_method7()
    return float(nltk_sentence_bleu(
        references, hypothesis, weights=_BLEU_WEIGHTS,
        smoothing_function=method7))
  # NLTK 3.5's arithmetic, with its Fraction/float mix (see sentence_bleu).
  counts = [_modified_precision(references, hypothesis, n)
            for n in range(1, len(_BLEU_WEIGHTS) + 1)]
  if counts[0][0] == 0:
    return 0.0
  hyp_len = len(hypothesis)
  bp = _brevity_penalty(_closest_ref_length(references, hyp_len), hyp_len)
  p_n = [Fraction(numerator, denominator) for numerator, denominator in counts]
  try:
    _method4_nltk35(p_n, counts, hyp_len)
    _method5(p_n, references, hypothesis)
    log_terms = (w * math.log(p) for w, p in zip(_BLEU_WEIGHTS, p_n))
    return float(bp * math.exp(math.fsum(log_terms)))
  except (ZeroDivisionError, ValueError):
    return 0.0  # The original's bare try/except (see sentence_bleu).


def sentence_bleu(reference: Tokens, hypothesis: Tokens,
                  impl: str = 'nltk_modern') -> float:
  """Smoothed sentence BLEU-3 of one hypothesis against one reference.

  Equal to nltk's `sentence_bleu([reference], hypothesis, weights=(1/3, 1/3,
  1/3), smoothing_function=SmoothingFunction().method7)` (method 4, then
  method 5): for 'nltk_modern' the installed NLTK's; for 'nltk35' a port with
  NLTK 3.5's Fraction/float arithmetic in the same order, so that the floats
  agree bit for bit (checked on 20,000 random token lists against NLTK 3.5
  on Python 3.11):

    * modified precisions are exact Fractions; method 4 turns zero-count
      orders into floats, and method 5 mixes the two (Fraction + float is a
      float addition, as in Python's `fractions`);
    * brevity penalty exp(1 - r/c) for c <= r, 1 for c > r, 0 for c = 0;
    * no unigram match returns 0 before any smoothing;
    * the score is bp * exp(fsum(w_n * log p_n)) and, because method 5
      averages in p_1 + 1, can exceed 1 in both versions.

  This is `multi_sentence_bleu([reference], hypothesis, impl)`.

  Args:
    reference: the reference tokens.
    hypothesis: the hypothesis tokens.
    impl: 'nltk_modern' for NLTK >= 3.6 (method 4 as 1/(2^k K / ln L) and
      orders with p_n = 0 left out of the geometric mean), or 'nltk35' for
      NLTK 3.5, whose broken method 4 inflates short hypotheses (SPEC B.7).
      Under 'nltk35' an arithmetic error (ln 1 = 0 for a one-token hypothesis
      with a unigram match, log 0) gives 0.0: the original wraps the call in
      a bare try/except, and these are the only errors that NLTK 3.5 raises on
      lists of strings.

  Returns:
    The BLEU score, a float >= 0.
  """
  _check_impl(impl)
  return _bleu([list(reference)], list(hypothesis), impl)


def multi_sentence_bleu(references: Sequence[Tokens], hypothesis: Tokens,
                        impl: str = 'nltk_modern') -> float:
  """Smoothed sentence BLEU-3 of one hypothesis against several references.

  nltk's `sentence_bleu(references, hypothesis, weights=(1/3, 1/3, 1/3),
  smoothing_function=SmoothingFunction().method7)`, with the arithmetic of
  `sentence_bleu` (which is this function with one reference) and the
  multi-reference rules that NLTK 3.5 and NLTK >= 3.6 share:

    * each hypothesis n-gram count is clipped to the largest count of that
      n-gram in any single reference (not to the sum over references);
    * the brevity penalty uses the reference length closest to the
      hypothesis length, the shorter one on a tie (`closest_ref_length`);
    * method 5's extra 5-gram precision is clipped the same way.

  Args:
    references: one or more reference token lists (order does not matter).
    hypothesis: the hypothesis tokens.
    impl: 'nltk_modern' or 'nltk35', as for `sentence_bleu`.

  Returns:
    The BLEU score, a float >= 0.

  Raises:
    ValueError: for an unknown impl or no reference; TypeError if a
      reference is a string rather than a token list (a common slip for
      `multi_sentence_bleu(reference, ...)`).
  """
  _check_impl(impl)
  if isinstance(references, str) or any(
      isinstance(reference, str) for reference in references):
    raise TypeError('references must be a list of token lists, got a string '
                    'among them.')
  references = [list(reference) for reference in references]
  if not references:
    raise ValueError('multi_sentence_bleu needs at least one reference.')
  return _bleu(references, list(hypothesis), impl)


def _recall_precision_f1(
    scores_per_context: Sequence[Sequence[float]]) -> dict[str, float]:
  recalls = [np.max(scores) for scores in scores_per_context]
  precisions = [np.mean(scores) for scores in scores_per_context]
  recall = float(np.mean(recalls))
  precision = float(np.mean(precisions))
  # 10e-12 is the original's spelling of 1e-11.
  f1 = 2 * (precision * recall) / (precision + recall + 10e-12)
  return {'recall': recall, 'precision': precision, 'f1': f1}


def bleu_scores(references: Sequence[Tokens],
                hypotheses: Sequence[Sequence[Tokens]],
                impl: str = 'nltk_modern') -> dict[str, float]:
  """BLEU recall, precision and F1 over K samples per context (SPEC B.7).

  Args:
    references: [C] reference token lists, one per context.
    hypotheses: [C][K] hypothesis token lists.
    impl: the `sentence_bleu` implementation.

  Returns:
    {'recall': mean_c max_k b_ck, 'precision': mean_c mean_k b_ck,
     'f1': 2PR / (P + R + 1e-11)}, the F1 taken of the averaged P and R as in
    the original, not averaged per context.
  """
  _check_contexts(references, hypotheses)
  return _recall_precision_f1(
      [[sentence_bleu(reference, hyp, impl) for hyp in samples]
       for reference, samples in zip(references, hypotheses)])


def multi_bleu_scores(references: Sequence[Sequence[Tokens]],
                      hypotheses: Sequence[Sequence[Tokens]],
                      impl: str = 'nltk_modern') -> dict[str, float]:
  """`bleu_scores` with several references per context.

  Args:
    references: [C][R_c] reference token lists, R_c >= 1 per context.
    hypotheses: [C][K] hypothesis token lists.
    impl: the `multi_sentence_bleu` implementation.

  Returns:
    {'recall', 'precision', 'f1'} as in `bleu_scores`, each b_ck being
    `multi_sentence_bleu(references[c], hypotheses[c][k], impl)`.
  """
  _check_contexts(references, hypotheses)
  _check_impl(impl)
  _check_multi_references(references)
  return _recall_precision_f1(
      [[multi_sentence_bleu(context_refs, hyp, impl) for hyp in samples]
       for context_refs, samples in zip(references, hypotheses)])


def _check_multi_references(references: Sequence[Sequence[Any]]) -> None:
  for c, context_refs in enumerate(references):
    if isinstance(context_refs, str) or len(context_refs) == 0:
      raise ValueError(f'Context {c} needs a non-empty list of references.')
    if any(isinstance(reference, str) for reference in context_refs):
      raise TypeError(f'Context {c}: references must be token lists, got a '
                      'string.')


def _check_contexts(references: Sequence[Any],
                    hypotheses: Sequence[Sequence[Any]]) -> None:
  if len(references) != len(hypotheses):
    raise ValueError(f'{len(references)} references but {len(hypotheses)} '
                     'contexts of hypotheses.')
  if not hypotheses:
    raise ValueError('No contexts to score.')
  if any(len(samples) == 0 for samples in hypotheses):
    raise ValueError('Every context needs at least one hypothesis.')


def _reference_tokens(utterance: str) -> list[str]:
  # tokenize_utterance lower-cases, splits with WordPunct and wraps the words
  # in <s> ... </s>; only the words are wanted here.
  tokens = dialogue_data.tokenize_utterance(utterance)
  if tokens[:1] == [BOS]:
    tokens = tokens[1:]
  if tokens[-1:] == [EOS]:
    tokens = tokens[:-1]
  return tokens


def read_references(path: str | os.PathLike[str],
                    num_contexts: int) -> list[list[list[str]]]:
  """Reads a multi-reference file for `score_responses(multi_references=...)`.

  JSON Lines: line c is a JSON list of the reference responses (strings) of
  the c-th evaluation context, in the evaluator's context order. Each string
  is tokenised like the dialogue data (`dialogue_data.tokenize_utterance`:
  lower-cased WordPunct tokens), without its `<s>`/`</s>`. Words are kept as
  they are: nothing is mapped to <unk>. Blank lines at the end of the file
  are ignored; a blank line before the last reference line is an error. A
  leading byte-order mark, and U+FEFF anywhere (`text.BOM`), is dropped.

  Args:
    path: the .jsonl file.
    num_contexts: the number of evaluation contexts of the whole split,
      which must equal the number of lines.

  Returns:
    [num_contexts][R_c] word lists, R_c >= 1.

  Raises:
    errors.DataError: naming `file:line` for a line that is blank, not JSON,
      not a non-empty list, or holds an item that is not a string or has no
      token; naming the file and both counts if there are not `num_contexts`
      lines; or the file is missing or not UTF-8.
  """
  name = os.fspath(path)
  try:
    with open(path, encoding='utf-8-sig') as f:
      # Not splitlines(): JSON strings may hold a raw U+2028 or U+0085.
      lines = [line.rstrip('\n').replace(text.BOM, '') for line in f]
  except FileNotFoundError:
    raise errors.DataError(f'{name}: file not found') from None
  except UnicodeDecodeError as e:
    raise errors.DataError(f'{name}: not UTF-8 ({e.reason} at byte'
                           f' {e.start})') from None
  while lines and not lines[-1].strip():
    lines.pop()
  references = []
  for number, line in enumerate(lines, start=1):
    where = f'{name}:{number}'
    if not line.strip():
      raise errors.DataError(
          f'{where}: blank line; every context needs a line.')
    try:
      item = json.loads(line)
    except json.JSONDecodeError as e:
      raise errors.DataError(f'{where}: invalid JSON: {e}.') from None
    if not isinstance(item, list):
      raise errors.DataError(
          f'{where}: expected a JSON list of reference strings, got'
          f' {type(item).__name__}.')
    if not item:
      raise errors.DataError(f'{where}: empty list; a context needs at least'
                             ' one reference.')
    context_refs = []
    for i, reference in enumerate(item):
      if not isinstance(reference, str):
        raise errors.DataError(f'{where}: reference {i} is a '
                               f'{type(reference).__name__}, not a string.')
      tokens = _reference_tokens(reference)
      if not tokens:
        raise errors.DataError(f'{where}: reference {i} ({reference!r}) has'
                               ' no token.')
      context_refs.append(tokens)
    references.append(context_refs)
  if len(references) != num_contexts:
    raise errors.DataError(
        f'{name}: {len(references)} reference lines for {num_contexts}'
        ' evaluation contexts (the whole split); the file needs one line per'
        ' context, in the evaluation order.')
  return references


# ----------------------------------------------------------------------------
# BOW embedding metrics


def _normalize_rows(x: np.ndarray) -> np.ndarray:
  # sklearn.preprocessing.normalize: rows of (near-)zero norm are divided by 1
  # instead, so that a zero vector has cosine 0 with everything.
  norms = np.sqrt(np.einsum('ij,ij->i', x, x))
  norms[norms < 10 * np.finfo(norms.dtype).eps] = 1.0
  return x / norms[:, np.newaxis]


def cosine_similarity(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """sklearn.metrics.pairwise.cosine_similarity of dense [N, D] and [M, D].

  Returns:
    [N, M] cosines; a zero row gives 0 (sklearn's convention), not NaN.
  """
  x = np.asarray(x, dtype=np.float64)
  y = np.asarray(y, dtype=np.float64)
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
    raise ValueError(f'Need [N, D] and [M, D] arrays, got {x.shape} and '
                     f'{y.shape}.')
  return _normalize_rows(x) @ _normalize_rows(y).T


def _paper_mask(lengths: np.ndarray, embs: np.ndarray) -> np.ndarray:
  # The original's int mask of the full [B, T, D] shape: the same products and
  # the same reduction layout give the same floats.
  positions = np.arange(embs.shape[1])[np.newaxis, :, np.newaxis]
  mask = positions < lengths[:, np.newaxis, np.newaxis]
  return np.broadcast_to(mask, embs.shape).astype(np.int64)


def _paper_mean(embs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  mask = _paper_mask(lengths, embs)
  return (embs * mask).sum(1) / (mask.sum(1) + 1e-8)


def _paper_extrema(embs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  max_mask = _paper_mask(lengths, embs)
  seq_max = (embs * max_mask).max(1)
  # The bug kept in paper mode: masked positions add 1 instead of +inf, so
  # they take part in the min as e + 1 (and as 0 in the max above).
  seq_min = (embs + (1 - max_mask)).min(1)
  take_max = seq_max >= np.abs(seq_min)
  return seq_max * take_max + seq_min * np.logical_not(take_max)


def _paper_bow(pred: np.ndarray, pred_lens: np.ndarray, ref: np.ndarray,
               ref_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  ref = ref[np.newaxis]
  ref_lens = np.array([ref_len])
  average = cosine_similarity(_paper_mean(pred, pred_lens),
                              _paper_mean(ref, ref_lens))[:, 0]
  extrema = cosine_similarity(_paper_extrema(pred, pred_lens),
                              _paper_extrema(ref, ref_lens))[:, 0]
  # Greedy ignores the lengths: every decoded position (garbage after </s>
  # included) against every reference position (its </s> included).
  k, t, d = pred.shape
  cos = cosine_similarity(pred.reshape(-1, d), ref.reshape(-1, d))
  cos = cos.reshape(k, t, 1, ref.shape[1])
  best_pred = cos.max(1).mean(2)  # per reference token, best prediction
  best_ref = cos.max(3).mean(1)  # per predicted token, best reference
  greedy = ((best_pred + best_ref) / 2)[:, 0]
  return average, extrema, greedy


def _standard_bow(pred: np.ndarray, pred_lens: np.ndarray, ref: np.ndarray,
                  ref_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  k, t, d = pred.shape
  valid_pred = np.arange(t)[np.newaxis, :] < pred_lens[:, np.newaxis]
  valid_ref = np.arange(ref.shape[0]) < ref_len
  ref_valid = ref[valid_ref]
  nonempty = (pred_lens > 0) & (ref_len > 0)

  sums = np.where(valid_pred[..., np.newaxis], pred, 0.0).sum(1)
  pred_mean = sums / np.maximum(pred_lens, 1)[:, np.newaxis]
  ref_mean = ref_valid.sum(0, keepdims=True) / max(ref_len, 1)
  average = cosine_similarity(pred_mean, ref_mean)[:, 0]

  # Extrema over the valid tokens only: per dimension the max or the min,
  # whichever is further from 0 (ties to the max, like the original). An
  # empty sequence gets the zero vector, hence cosine 0.
  seq_max = np.where(valid_pred[..., np.newaxis], pred, -np.inf).max(1)
  seq_min = np.where(valid_pred[..., np.newaxis], pred, np.inf).min(1)
  pred_ext = np.where(seq_max >= np.abs(seq_min), seq_max, seq_min)
  pred_ext = np.where((pred_lens > 0)[:, np.newaxis], pred_ext, 0.0)
  if ref_len > 0:
    ref_max, ref_min = ref_valid.max(0), ref_valid.min(0)
    ref_ext = np.where(ref_max >= np.abs(ref_min), ref_max, ref_min)
  else:
    ref_ext = np.zeros(d)
  extrema = cosine_similarity(pred_ext, ref_ext[np.newaxis])[:, 0]

  # Greedy over valid predicted tokens x valid reference words (no </s>).
  cos = cosine_similarity(pred.reshape(-1, d), ref).reshape(k, t, -1)
  pair = valid_pred[:, :, np.newaxis] & valid_ref[np.newaxis, np.newaxis, :]
  cos = np.where(pair, cos, -np.inf)
  best_pred = np.where(valid_ref, cos.max(1), 0.0).sum(1) / max(ref_len, 1)
  best_ref = (np.where(valid_pred, cos.max(2), 0.0).sum(1)
              / np.maximum(pred_lens, 1))
  greedy = np.where(nonempty, (best_pred + best_ref) / 2, 0.0)
  return average, extrema, greedy


def bow_metrics(pred_ids: np.ndarray, pred_lens: Sequence[int] | np.ndarray,
                ref_ids: Sequence[int] | np.ndarray, ref_len: int,
                embedding: np.ndarray,
                mode: str = 'standard') -> dict[str, float]:
  """Embedding Average, Extrema and Greedy of K samples for one context.

  Each score is the maximum over the K samples (SPEC B.7), in both modes.

  Args:
    pred_ids: <int>[K, T] decoded ids, the full decode (T = 40 in the
      original), tokens after the first </s> included.
    pred_lens: <int>[K] tokens before the first </s> (T if none).
    ref_ids: <int>[R] the reference without <s>: w_1..w_n </s>, so R = n + 1.
    ref_len: n, the number of reference words, </s> excluded.
    embedding: <float>[V, D] word vectors (see `load_word_vectors`).
    mode: 'paper' reproduces the original exactly: masked means divided by
      (len + 1e-8); extrema with the max over masked embeddings (masked
      positions give 0) and the min over e + (1 - mask) (masked positions
      give e + 1, the bug of SPEC B.7); greedy over all T predicted positions
      and all R reference positions, unmasked. 'standard' (SPEC B.8) uses
      only the first pred_lens[k] predicted and the first ref_len reference
      tokens in all three; an empty side scores 0.

  Returns:
    {'average', 'extrema', 'greedy'}: floats, each max_k of the cosines.
  """
  if mode not in BOW_MODES:
    raise ValueError(f'mode must be one of {BOW_MODES}, got {mode!r}.')
  embedding = np.asarray(embedding, dtype=np.float64)
  pred_ids = np.asarray(pred_ids)
  pred_lens = np.asarray(pred_lens, dtype=np.int64)
  ref_ids = np.asarray(ref_ids)
  if pred_ids.ndim != 2 or pred_ids.shape[0] == 0 or pred_ids.shape[1] == 0:
    raise ValueError(f'pred_ids must be a non-empty [K, T], got '
                     f'{pred_ids.shape}.')
  if pred_lens.shape != pred_ids.shape[:1]:
    raise ValueError(f'pred_lens has shape {pred_lens.shape}, want '
                     f'{pred_ids.shape[:1]}.')
  if ref_ids.ndim != 1 or ref_ids.shape[0] == 0:
    raise ValueError(f'ref_ids must be a non-empty [R], got {ref_ids.shape}.')
  if not 0 <= ref_len <= ref_ids.shape[0]:
    raise ValueError(f'ref_len {ref_len} outside [0, {ref_ids.shape[0]}].')
  if embedding.ndim != 2:
    raise ValueError(f'embedding must be [V, D], got {embedding.shape}.')
  bow = _paper_bow if mode == 'paper' else _standard_bow
  scores = bow(embedding[pred_ids], pred_lens, embedding[ref_ids],
               int(ref_len))
  return {name: float(np.max(values)) for name, values in
          zip(('average', 'extrema', 'greedy'), scores)}


def _is_number(field: bytes) -> bool:
  try:
    float(field)
  except ValueError:
    return False
  return True


def load_word_vectors(path: str | os.PathLike[str],
                      vocab_tokens: Sequence[str],
                      seed: int = 1111) -> np.ndarray:
  """Reads GloVe / word2vec text vectors for a vocabulary (SPEC B.7).

  As the original `load_word2vec`: a line is a word and its D values, parsed
  as float64. Vocabulary words without a vector (the special tokens,
  typically) get `RandomState(seed).randn(D) * 0.1`, drawn one word at a time
  in vocabulary order, which is the original's `np.random.seed(1111)`
  followed by `np.random.randn(200) * 0.1` per missing word.

  D is the header's (a word2vec / fastText first line `N D`, two integers)
  or else the first vector line's number of values. The last D fields of a
  line are its vector and the rest is its token, so a token may hold spaces
  (GloVe 840B has lines like `at name@domain.com 0.1 ...`); such a token is
  never a vocabulary word (vocabularies hold no whitespace), so those lines
  are skipped and counted in one warning. Fields are split at ASCII
  whitespace only, so a token may hold U+00A0 and the like.

  Differences from the original, none of which changes a vector of a
  well-formed file: the header is skipped instead of being read as the word
  'N'; blank lines are skipped; a leading byte-order mark, and U+FEFF inside
  a token (concatenated files), is dropped; values are parsed only for
  vocabulary words (the GloVe files have over a million lines); a word with
  several lines keeps its first vector (the original kept the last), and
  the repeats are counted in one warning.

  Args:
    path: the text file.
    vocab_tokens: the vocabulary, in id order.
    seed: the legacy NumPy seed of the random vectors.

  Returns:
    <float64>[len(vocab_tokens), D].

  Raises:
    errors.DataError: naming `file:line` for a line with fewer than D
      values, a vocabulary word followed by more than D numbers (a vector of
      the wrong dimension) or by a value that is not a number; naming the
      file if it is missing or has no vector.
  """
  name = os.fspath(path)
  wanted = {token.encode('utf-8'): token for token in vocab_tokens}
  vectors: dict[bytes, np.ndarray] = {}
  dim = None
  skipped = {'spaced': [0, 0, b''], 'repeated': [0, 0, b''],
             'bom': [0, 0, b'']}  # kind -> [count, first line, token]

  def count(kind, number, token):
    entry = skipped[kind]
    if not entry[0]:
      entry[1:] = [number, token]
    entry[0] += 1

  try:
    f = open(path, 'rb')  # Bytes: tokens need not be valid UTF-8.
  except FileNotFoundError:
    raise errors.DataError(f'{name}: file not found') from None
  with f:
    for number, line in enumerate(f, start=1):
      if number == 1:
        line = line.removeprefix(text.BOM_BYTES)
      if dim is None:
        fields = line.split()
        if not fields:
          continue
        if number == 1 and len(fields) == 2 and all(
            x.isdigit() for x in fields):
          dim = int(fields[1])  # The word2vec header `N D`.
          continue
        dim = len(fields) - 1
      parts = line.rsplit(None, dim)
      if not parts:
        continue
      where = f'{name}:{number}'
      if len(parts) <= dim or not dim:
        raise errors.DataError(
            f'{where}: {len(parts) - 1} values, expected "word v_1 ... v_D"'
            f' with D = {dim} (the header\'s or the first vector\'s size):'
            f' {line[:80].decode("utf-8", "replace").rstrip()!r}')
      token, values = parts[0], parts[1:]
      if text.BOM_BYTES in token:
        count('bom', number, token)
        token = token.replace(text.BOM_BYTES, b'')
      words = token.split()
      if len(words) > 1:
        if words[0] in wanted and all(_is_number(w) for w in words[1:]):
          raise errors.DataError(
              f'{where}: {len(words) - 1 + dim} values for'
              f' {wanted[words[0]]!r}, expected {dim} (the header\'s or the'
              ' first vector\'s size)')
        count('spaced', number, token)
        continue
      if token not in wanted:
        continue
      if token in vectors:
        count('repeated', number, token)
        continue
      try:
        vectors[token] = np.array([float(x) for x in values])
      except ValueError as e:
        raise errors.DataError(f'{where}: non-numeric value for'
                               f' {wanted[token]!r}: {e}.') from None
  if dim is None:
    raise errors.DataError(f'{name}: no word vectors found.')
  messages = {
      'spaced': 'line(s) whose token holds a space skipped (no vocabulary'
                ' word can match them)',
      'repeated': 'line(s) repeating a vocabulary word skipped (the first'
                  ' vector of each word is used)',
      'bom': 'token(s) held U+FEFF (a byte-order mark: concatenated'
             ' files?), removed',
  }
  for kind, (n, first, token) in skipped.items():
    if n:
      logging.warning('%s: %d %s; the first: line %d, %r.', name, n,
                      messages[kind], first, token.decode('utf-8', 'replace'))
  rng = np.random.RandomState(seed)
  rows = []
  for token in vocab_tokens:
    vector = vectors.get(token.encode('utf-8'))
    rows.append(rng.randn(dim) * 0.1 if vector is None else vector)
  return np.stack(rows) if rows else np.zeros((0, dim))


# ----------------------------------------------------------------------------
# Distinct


def _before_eos(tokens: Tokens) -> list[str]:
  tokens = list(tokens)
  return tokens[:tokens.index(EOS)] if EOS in tokens else tokens


def _ngrams(tokens: Tokens, n: int) -> list[tuple[str, ...]]:
  return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _check_n(n: int) -> None:
  if n < 1:
    raise ValueError(f'Distinct-n needs n >= 1, got {n}.')


def _dialogwae_ratio(grams: list[tuple[str, ...]]) -> float:
  """DialogWAE's (#distinct n-grams + 1e-12) / (#n-grams + 1e-5)."""
  return (len(set(grams)) + 1e-12) / (len(grams) + 1e-5)


def _mean_over_contexts(samples: Sequence[Sequence[Tokens]], n: int,
                        score: Callable[[list[list[tuple[str, ...]]]], float]
                        ) -> float:
  """The mean over contexts of `score(per-sample n-gram lists)`, each sample
  cut before its first </s> (the paper's intra / inter distinct)."""
  _check_n(n)
  return float(np.mean([
      score([_ngrams(_before_eos(sample), n) for sample in context])
      for context in samples]))


def intra_distinct(samples: Sequence[Sequence[Tokens]], n: int) -> float:
  """DialogWAE's intra-dist-n (paper mode, SPEC B.7).

  Per sample (the tokens before its first </s>),
  (#distinct n-grams + 1e-12) / (max(0, len - n + 1) + 1e-5); then the mean
  over a context's samples and the mean over contexts. An empty sample
  scores 1e-12 / 1e-5 = 1e-7, as in the original.

  Args:
    samples: [C][K] token lists; anything from the first </s> on is ignored.
    n: the n-gram order.

  Returns:
    The score, a float.
  """
  return _mean_over_contexts(
      samples, n, lambda grams: np.mean([_dialogwae_ratio(g) for g in grams]))


def inter_distinct(samples: Sequence[Sequence[Tokens]], n: int) -> float:
  """DialogWAE's inter-dist-n (paper mode, SPEC B.7): per context, then mean.

  Per context, (#distinct n-grams pooled over its samples + 1e-12) /
  (#n-grams of its samples + 1e-5), tokens before each first </s>; then the
  mean over contexts. Not corpus-level distinct (see `corpus_distinct`).

  Args:
    samples: [C][K] token lists.
    n: the n-gram order.

  Returns:
    The score, a float.
  """
  return _mean_over_contexts(
      samples, n, lambda grams: _dialogwae_ratio(sum(grams, [])))


def corpus_distinct(samples: Sequence[Sequence[Tokens]], n: int) -> float:
  """Corpus-level distinct-n (Li et al., 2016; standard mode).

  Distinct n-grams over all generated responses of all contexts, divided by
  their total number, tokens before each first </s>; 0.0 if there is no
  n-gram at all.

  Args:
    samples: [C][K] token lists.
    n: the n-gram order.

  Returns:
    The ratio in [0, 1].
  """
  _check_n(n)
  pooled, total = set(), 0
  for context in samples:
    for sample in context:
      grams = _ngrams(_before_eos(sample), n)
      pooled.update(grams)
      total += len(grams)
  return len(pooled) / total if total else 0.0


# ----------------------------------------------------------------------------
# Everything at once


def _paper_bleu_hypothesis(tokens: Tokens) -> list[str]:
  # indexes2sent: drop pad ids, then keep words up to and including </s>.
  out = []
  for token in tokens:
    if token == PAD:
      continue
    out.append(token)
    if token == EOS:
      break
  return out


def reference_words(tokens: Tokens) -> list[str]:
  """`<s> w_1 .. w_n </s> ...` -> w_1 .. w_n (a decoded response's words)."""
  tokens = list(tokens)
  if tokens and tokens[0] == BOS:
    tokens = tokens[1:]
  return _before_eos(tokens)


def _token_ids(tokens: Tokens, index: dict[str, int]) -> list[int]:
  ids = []
  for token in tokens:
    if token in index:
      ids.append(index[token])
    elif UNK in index:
      ids.append(index[UNK])
    else:
      raise KeyError(f'{token!r} is not in the vocabulary, which has no {UNK}.')
  return ids


def _bow_over_contexts(preds: list[list[list[int]]],
                       pred_lens: list[list[int]], refs: list[list[int]],
                       ref_lens: list[int], embedding: np.ndarray,
                       mode: str) -> dict[str, float]:
  per_context = {'average': [], 'extrema': [], 'greedy': []}
  for samples, lens, ref, ref_len in zip(preds, pred_lens, refs, ref_lens):
    width = max(len(sample) for sample in samples)
    if mode == 'standard':
      # Standard mode reads nothing past each length: pad with any valid id.
      array = np.zeros((len(samples), max(width, 1)), dtype=np.int64)
      for row, sample in zip(array, samples):
        row[:len(sample)] = sample
      scores = bow_metrics(array, lens, ref, ref_len, embedding, mode)
    elif width and all(len(sample) == width for sample in samples):
      scores = bow_metrics(np.array(samples), lens, ref, ref_len, embedding,
                           mode)
    else:
      # Ragged decodes: paper greedy reads every position, so padding would
      # change it; score each sample alone (BOW scores are per sample). An
      # empty decode has nothing to compare and scores 0.
      singles = [
          bow_metrics(np.array([sample]), [length], ref, ref_len, embedding,
                      mode)
          if sample else {'average': 0.0, 'extrema': 0.0, 'greedy': 0.0}
          for sample, length in zip(samples, lens)
      ]
      scores = {key: max(single[key] for single in singles)
                for key in per_context}
    for key, value in scores.items():
      per_context[key].append(value)
  return {f'bow_{key}': float(np.mean(values))
          for key, values in per_context.items()}


NOTES = {
    'paper': (
        'DialogWAE Metrics / TWR-VAE evaluate() (SPEC B.7): BLEU with NLTK'
        ' 3.5 method7 (broken method4, errors -> 0), </s> kept on both'
        ' sides, pads dropped from hypotheses; BOW over the full decode'
        ' (extrema masking bug, greedy unmasked incl. post-</s> tokens and'
        ' the reference </s>), max over samples; intra/inter distinct with'
        ' the 1e-12/1e-5 terms, inter per context; avg_len = tokens before'
        ' </s> (pads counted).'),
    'standard': (
        'SPEC B.8 fixes: BLEU with NLTK >= 3.6 method7 on the words before'
        ' </s> (no free </s> unigram, <pad> and <s> dropped); BOW over those'
        ' words and the reference words only, max over samples; corpus-level'
        ' distinct-n (Li et al. 2016) over all responses; avg_len = words'
        ' before </s>, <pad> and <s> dropped.'),
}

# Appended to NOTES when `score_responses` gets multi_references.
MULTI_REFERENCE_NOTES = {
    'paper': (
        'bleu_multi_*: the same BLEU against every reference of the'
        ' reference file (+ </s>), n-gram counts clipped by their max over'
        ' the references, brevity penalty from the closest reference length'
        ' (kgCVAE-style multi-reference; not in the original TWR code).'),
    'standard': (
        'bleu_multi_*: the same BLEU against the words of every reference of'
        ' the reference file, clipped by the max over references, closest'
        ' reference length.'),
}


def score_responses(
    hypotheses: Sequence[Sequence[Tokens]],
    references: Sequence[Tokens],
    embedding: np.ndarray | None = None,
    vocab_tokens: Sequence[str] | None = None,
    multi_references: Sequence[Sequence[Tokens]] | None = None,
) -> dict[str, Any]:
  """Scores sampled responses in both paper and standard mode.

  Inputs are token strings as decoded from ids, so that paper mode can
  reproduce the original exactly:

    * hypotheses[c][k] is the full decode of sample k, e.g. all 40 greedy
      steps: tokens after the first </s> are kept (paper greedy BOW reads
      them), and '<pad>' tokens may appear (paper BLEU drops them, paper
      distinct counts them, as the original did with id 0);
    * references[c] is the true response as decoded from its ids; a leading
      <s> is dropped and anything from the first </s> on is ignored, then
      paper mode appends </s> again.

  Paper section (SPEC B.7): BLEU-R/P/F1 with `impl='nltk35'` on hypotheses
  cut after their first </s> (pads dropped) against the reference + </s>;
  BOW with `mode='paper'` on the full decodes and ref = words + </s>,
  ref_len = #words; intra-dist-1/2 and inter-dist-1/2; avg_len = mean over
  contexts of the mean number of tokens before the first </s>.

  Standard section (SPEC B.8): each hypothesis becomes its words before the
  first </s> with <pad> and <s> dropped; BLEU-R/P/F1 with `impl='nltk_modern'` against
  the reference words, neither side ending in </s>; BOW with
  `mode='standard'` on those words; corpus distinct-1/2 over all responses;
  avg_len = mean number of those words. BOW and BLEU keep the original's
  max/mean over samples, so that both sections measure the same thing.

  Without `embedding`, each section's 'bow' entry is the string
  `BOW_SKIPPED` and there are no bow_* numbers.

  With `multi_references` (e.g. from `read_references`), both sections also
  get bleu_multi_recall/precision/f1: `multi_bleu_scores` on the same
  hypotheses as the section's single-reference BLEU, with the same impl,
  against every reference of the context, each + </s> in the paper section
  (as the single reference there) and as words in the standard section. The
  single-reference bleu_* entries are unchanged.

  Args:
    hypotheses: [C][K] decoded token lists.
    references: [C] reference token lists.
    embedding: optional <float>[V, D] vectors of `vocab_tokens`, e.g. from
      `load_word_vectors`.
    vocab_tokens: the vocabulary, in id order; required with `embedding`.
      Tokens outside it map to <unk>.
    multi_references: optional [C][R_c] reference word lists (R_c >= 1, no
      <s>/</s>; as for `references`, a leading <s> is dropped and anything
      from the first </s> on is ignored).

  Returns:
    {'num_contexts': C, 'notes': {mode: description}, 'paper': {...},
     'standard': {...}}, each section a flat dict of floats (bleu_recall,
    bleu_precision, bleu_f1, with multi_references bleu_multi_recall,
    bleu_multi_precision, bleu_multi_f1, then bow_average, bow_extrema,
    bow_greedy, the distinct scores, avg_len).
  """
  _check_contexts(references, hypotheses)
  if multi_references is not None:
    if len(multi_references) != len(references):
      raise ValueError(f'{len(multi_references)} contexts of multi_references '
                       f'for {len(references)} contexts.')
    _check_multi_references(multi_references)
  if embedding is not None:
    if vocab_tokens is None:
      raise ValueError('An embedding needs its vocab_tokens.')
    if len(vocab_tokens) != np.shape(embedding)[0]:
      raise ValueError(f'{len(vocab_tokens)} vocab tokens for '
                       f'{np.shape(embedding)[0]} embedding rows.')

  words = [reference_words(ref) for ref in references]
  full = [[list(sample) for sample in samples] for samples in hypotheses]
  lens = [[len(_before_eos(sample)) for sample in samples] for samples in full]
  paper_tokens = [[sample[:n] for sample, n in zip(samples, sample_lens)]
                  for samples, sample_lens in zip(full, lens)]
  # Standard mode reads words: no <pad>, and no <s> (the unmasked argmax
  # can emit it; it is not a word of a response).
  standard_tokens = [[[t for t in sample if t not in (PAD, BOS)]
                      for sample in samples] for samples in paper_tokens]

  paper_hyps = [[_paper_bleu_hypothesis(s) for s in samples]
                for samples in full]
  paper_bleu = bleu_scores([w + [EOS] for w in words], paper_hyps,
                           impl='nltk35')
  standard_bleu = bleu_scores(words, standard_tokens, impl='nltk_modern')

  paper = {f'bleu_{key}': value for key, value in paper_bleu.items()}
  standard = {f'bleu_{key}': value for key, value in standard_bleu.items()}
  notes = dict(NOTES)
  if multi_references is not None:
    multi_words = [[reference_words(ref) for ref in context_refs]
                   for context_refs in multi_references]
    paper_multi = multi_bleu_scores(
        [[w + [EOS] for w in context_words] for context_words in multi_words],
        paper_hyps, impl='nltk35')
    standard_multi = multi_bleu_scores(multi_words, standard_tokens,
                                       impl='nltk_modern')
    paper.update({f'bleu_multi_{key}': value
                  for key, value in paper_multi.items()})
    standard.update({f'bleu_multi_{key}': value
                     for key, value in standard_multi.items()})
    notes = {mode: f'{note} {MULTI_REFERENCE_NOTES[mode]}'
             for mode, note in notes.items()}
  if embedding is None:
    paper['bow'] = standard['bow'] = BOW_SKIPPED
  else:
    embedding = np.asarray(embedding, dtype=np.float64)
    index = {token: i for i, token in enumerate(vocab_tokens)}
    refs = [_token_ids(w + [EOS], index) for w in words]
    ref_lens = [len(w) for w in words]
    paper.update(_bow_over_contexts(
        [[_token_ids(s, index) for s in samples] for samples in full], lens,
        refs, ref_lens, embedding, 'paper'))
    standard.update(_bow_over_contexts(
        [[_token_ids(s, index) for s in samples] for samples in
         standard_tokens],
        [[len(s) for s in samples] for samples in standard_tokens], refs,
        ref_lens, embedding, 'standard'))

  for n in (1, 2):
    paper[f'intra_dist{n}'] = intra_distinct(paper_tokens, n)
    paper[f'inter_dist{n}'] = inter_distinct(paper_tokens, n)
    standard[f'distinct{n}'] = corpus_distinct(standard_tokens, n)
  paper['avg_len'] = float(np.mean([np.mean(l) for l in lens]))
  standard['avg_len'] = float(np.mean(
      [len(s) for samples in standard_tokens for s in samples]))
  return {'num_contexts': len(references), 'notes': notes,
          'paper': paper, 'standard': standard}
