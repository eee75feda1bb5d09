"""ROUGE-1/2/L F1 on whitespace tokens, for latent interpolation (SPEC C).

Equal to `rouge-score==0.1.2`'s

  RougeScorer(['rouge1', 'rouge2', 'rougeL'], use_stemmer=False,
              tokenizer=<an object whose tokenize(text) is text.split()>)

without depending on it. With a custom tokenizer rouge-score does no
normalisation of its own: it never lowercases, drops punctuation or `<unk>`
brackets (only its default tokenizer does), so tokens are compared exactly as
`str.split()` returns them and 'The' != 'the'.

Conventions copied from rouge-score 0.1.2, so that scores match to the last
bit:
  * ROUGE-N counts clipped multiset n-gram matches: an n-gram occurring twice
    in both texts matches twice (pltrdy `rouge` counts unique n-grams).
  * precision = matches / max(#hypothesis n-grams, 1), recall likewise with
    the reference; F1 = 2PR / (P + R), or 0 when P + R = 0. A text shorter
    than n therefore scores 0, even against an identical text.
  * ROUGE-L is sentence-level: LCS length over the token lists; 0 if either
    text is empty.
"""

from collections import Counter
from collections.abc import Iterable, Sequence

ROUGE_TYPES = ('rouge1', 'rouge2', 'rougeL')


def _f1(matches: int, hypothesis_count: int, reference_count: int) -> float:
  # max(., 1) is rouge-score's guard against empty texts; keep it rather than
  # an early return so that the floating-point operations are the same.
  precision = matches / max(hypothesis_count, 1)
  recall = matches / max(reference_count, 1)
  if precision + recall > 0:
    return 2 * precision * recall / (precision + recall)
  return 0.0


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
  return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(reference: Sequence[str], hypothesis: Sequence[str],
            n: int) -> float:
  """ROUGE-N F1 of two token lists, with clipped n-gram counts.

  Args:
    reference: the reference tokens.
    hypothesis: the hypothesis tokens.
    n: the n-gram order, >= 1.

  Returns:
    The F1 in [0, 1].
  """
  if n < 1:
    raise ValueError(f'ROUGE-N needs n >= 1, got {n}.')
  ref, hyp = _ngrams(reference, n), _ngrams(hypothesis, n)
  matches = sum(min(count, hyp[gram]) for gram, count in ref.items())
  return _f1(matches, sum(hyp.values()), sum(ref.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
  """Length of the longest common subsequence of two token lists."""
  # One DP row at a time: O(len(b)) memory instead of rouge-score's full table.
  previous = [0] * (len(b) + 1)
  for token in a:
    current = [0]
    for j, other in enumerate(b):
      if token == other:
        current.append(previous[j] + 1)
      else:
        current.append(max(previous[j + 1], current[j]))
    previous = current
  return previous[-1]


def rouge_l(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
  """Sentence-level ROUGE-L F1 (LCS-based) of two token lists."""
  if not reference or not hypothesis:
    return 0.0
  lcs = lcs_length(reference, hypothesis)
  return _f1(lcs, len(hypothesis), len(reference))


def rouge_scores(reference: str, hypothesis: str) -> dict[str, float]:
  """ROUGE-1, ROUGE-2 and ROUGE-L F1 of two whitespace-tokenised texts.

  Args:
    reference: the reference text, e.g. an interpolation end point x1.
    hypothesis: the text to score, e.g. a decoded y(tau).

  Returns:
    {'rouge1': f, 'rouge2': f, 'rougeL': f}, each F1 in [0, 1].
  """
  ref, hyp = reference.split(), hypothesis.split()
  return {
      'rouge1': rouge_n(ref, hyp, 1),
      'rouge2': rouge_n(ref, hyp, 2),
      'rougeL': rouge_l(ref, hyp),
  }


def mean_rouge(pairs: Iterable[tuple[str, str]]) -> dict[str, float]:
  """Mean of `rouge_scores` over (reference, hypothesis) pairs.

  Args:
    pairs: (reference, hypothesis) texts; at least one pair.

  Returns:
    {'rouge1': mean f, 'rouge2': mean f, 'rougeL': mean f}.

  Raises:
    ValueError: `pairs` is empty.
  """
  totals = dict.fromkeys(ROUGE_TYPES, 0.0)
  count = 0
  for reference, hypothesis in pairs:
    for key, value in rouge_scores(reference, hypothesis).items():
      totals[key] += value
    count += 1
  if not count:
    raise ValueError('mean_rouge needs at least one pair.')
  return {key: total / count for key, total in totals.items()}
