"""Tests of ROUGE in twr_jax.lm.metrics (rouge-score with SPEC C's tokenizer):
hand-computed values of the conventions interpolation relies on."""

from absl.testing import absltest
from absl.testing import parameterized

from twr_jax.lm import metrics


class RougeScoresTest(parameterized.TestCase):

  def test_spec_golden_value(self):
    scores = metrics.rouge_scores(
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

  def test_repeated_ngrams_are_clipped_not_deduplicated(self):
    # Unique-n-gram counting (pltrdy `rouge`) would give R1 = 1 here.
    scores = metrics.rouge_scores('a a a b', 'a b')
    self.assertEqual(scores['rouge1'], 2 * 1 * 0.5 / 1.5)
    # Each of the two shared 'a's matches: P = R = 2/3.
    self.assertAlmostEqual(metrics.rouge_scores('a a b', 'a a c')['rouge1'],
                           2 / 3, delta=1e-15)

  def test_case_is_preserved(self):
    self.assertEqual(metrics.rouge_scores('The cat', 'the cat'),
                     {'rouge1': 0.5, 'rouge2': 0.0, 'rougeL': 0.5})

  @parameterized.named_parameters(
      ('empty_hypothesis', 'the cat sat', ''),
      ('empty_reference', '', 'the cat sat'),
      ('both_empty', '', ''),
      ('whitespace_only', ' \t\n', 'the cat'),
      ('disjoint', 'a b c', 'd e f'),
  )
  def test_zero(self, reference, hypothesis):
    self.assertEqual(metrics.rouge_scores(reference, hypothesis),
                     {'rouge1': 0.0, 'rouge2': 0.0, 'rougeL': 0.0})

  def test_identical(self):
    self.assertEqual(metrics.rouge_scores('a b a c', 'a  b a\tc'),
                     {'rouge1': 1.0, 'rouge2': 1.0, 'rougeL': 1.0})

  def test_single_identical_token_has_no_bigrams(self):
    # rouge-score's convention: no bigrams on either side gives F = 0.
    self.assertEqual(metrics.rouge_scores('cat', 'cat'),
                     {'rouge1': 1.0, 'rouge2': 0.0, 'rougeL': 1.0})

  def test_rouge_l_uses_subsequence_not_substring(self):
    # LCS 'a c e' (3 of 5 and 3 of 3): F = 2 * 1 * 0.6 / 1.6.
    self.assertAlmostEqual(
        metrics.rouge_scores('a b c d e', 'a c e')['rougeL'], 0.75,
        delta=1e-15)


if __name__ == '__main__':
  absltest.main()
