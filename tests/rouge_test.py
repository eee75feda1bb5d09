"""Tests for twr_jax.rouge, against rouge-score 0.1.2 (SPEC C)."""

import random

from absl.testing import absltest
from absl.testing import parameterized
from rouge_score import rouge_scorer

from twr_jax import rouge


class _WhitespaceTokenizer:
  """The tokenizer SPEC C gives rouge-score: `str.split`, nothing else."""

  def tokenize(self, text):
    return text.split()


_SCORER = rouge_scorer.RougeScorer(
    ['rouge1', 'rouge2', 'rougeL'], use_stemmer=False,
    tokenizer=_WhitespaceTokenizer(),
)


def _reference_f1(reference, hypothesis):
  scores = _SCORER.score(reference, hypothesis)
  return {key: score.fmeasure for key, score in scores.items()}


class RougeScoresTest(parameterized.TestCase):

  def test_spec_golden_value(self):
    scores = rouge.rouge_scores(
        'the company said it expects to report a loss <unk> N',
        'the company said it will report a loss',
    )
    self.assertAlmostEqual(scores['rouge1'], 0.7368, delta=1e-4)
    self.assertAlmostEqual(scores['rouge2'], 0.5882, delta=1e-4)
    self.assertAlmostEqual(scores['rougeL'], 0.7368, delta=1e-4)
    # Exactly 14/19, 10/17 and 14/19, up to rounding.
    for key, value in {'rouge1': 14 / 19, 'rouge2': 10 / 17,
                       'rougeL': 14 / 19}.items():
      self.assertAlmostEqual(scores[key], value, delta=1e-15)

  def test_matches_rouge_score_on_random_texts(self):
    # A small vocabulary forces repeated n-grams (clipping) and long common
    # subsequences; case and bracket variants check that nothing normalises.
    vocab = ['a', 'A', 'the', 'cat', '<unk>', 'N', '.', "'s", 'cat.']
    separators = [' ', '  ', '\t', '\n']
    rng = random.Random(0)

    def text():
      tokens = rng.choices(vocab, k=rng.randint(0, 12))
      return ''.join(tok + rng.choice(separators) for tok in tokens)

    for _ in range(200):
      reference, hypothesis = text(), text()
      ours = rouge.rouge_scores(reference, hypothesis)
      theirs = _reference_f1(reference, hypothesis)
      for key in rouge.ROUGE_TYPES:
        self.assertAlmostEqual(ours[key], theirs[key], delta=1e-12,
                               msg=f'{key}: {reference!r} vs {hypothesis!r}')

  def test_repeated_ngrams_are_clipped_not_deduplicated(self):
    # Unique-n-gram counting (pltrdy `rouge`) would give R1 = 1 here.
    scores = rouge.rouge_scores('a a a b', 'a b')
    self.assertEqual(scores['rouge1'], 2 * 1 * 0.5 / 1.5)
    self.assertEqual(scores, _reference_f1('a a a b', 'a b'))
    # Each of the two shared 'a's matches: P = R = 2/3.
    self.assertAlmostEqual(rouge.rouge_scores('a a b', 'a a c')['rouge1'],
                           2 / 3, delta=1e-15)

  def test_case_is_preserved(self):
    self.assertEqual(rouge.rouge_scores('The cat', 'the cat'),
                     {'rouge1': 0.5, 'rouge2': 0.0, 'rougeL': 0.5})
    self.assertEqual(rouge.rouge_scores('The cat', 'the cat'),
                     _reference_f1('The cat', 'the cat'))

  @parameterized.named_parameters(
      ('empty_hypothesis', 'the cat sat', ''),
      ('empty_reference', '', 'the cat sat'),
      ('both_empty', '', ''),
      ('whitespace_only', ' \t\n', 'the cat'),
      ('disjoint', 'a b c', 'd e f'),
  )
  def test_zero(self, reference, hypothesis):
    self.assertEqual(rouge.rouge_scores(reference, hypothesis),
                     {'rouge1': 0.0, 'rouge2': 0.0, 'rougeL': 0.0})
    self.assertEqual(rouge.rouge_scores(reference, hypothesis),
                     _reference_f1(reference, hypothesis))

  def test_identical(self):
    self.assertEqual(rouge.rouge_scores('a b a c', 'a  b a\tc'),
                     {'rouge1': 1.0, 'rouge2': 1.0, 'rougeL': 1.0})

  def test_single_identical_token_has_no_bigrams(self):
    # rouge-score's convention: no bigrams on either side gives F = 0.
    self.assertEqual(rouge.rouge_scores('cat', 'cat'),
                     {'rouge1': 1.0, 'rouge2': 0.0, 'rougeL': 1.0})
    self.assertEqual(rouge.rouge_scores('cat', 'cat'),
                     _reference_f1('cat', 'cat'))

  def test_rouge_l_uses_subsequence_not_substring(self):
    # LCS 'a c e' (3 of 5 and 3 of 3): F = 2 * 1 * 0.6 / 1.6.
    self.assertAlmostEqual(
        rouge.rouge_l('a b c d e'.split(), 'a c e'.split()), 0.75,
        delta=1e-15)
    self.assertEqual(rouge.lcs_length('abcbdab', 'bdcaba'), 4)

  def test_rouge_n_rejects_bad_order(self):
    with self.assertRaisesRegex(ValueError, 'n >= 1'):
      rouge.rouge_n(['a'], ['a'], 0)

  def test_mean_rouge(self):
    pairs = [('a b', 'a b'), ('a b', 'c d'), ('a b c', 'a c')]
    mean = rouge.mean_rouge(pairs)
    for key in rouge.ROUGE_TYPES:
      expected = sum(_reference_f1(r, h)[key] for r, h in pairs) / 3
      self.assertAlmostEqual(mean[key], expected, delta=1e-12)
    self.assertAlmostEqual(mean['rouge1'], (1 + 0 + 0.8) / 3, delta=1e-12)

  def test_mean_rouge_rejects_no_pairs(self):
    with self.assertRaisesRegex(ValueError, 'at least one pair'):
      rouge.mean_rouge([])


if __name__ == '__main__':
  absltest.main()
