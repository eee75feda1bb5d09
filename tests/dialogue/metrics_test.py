"""Tests for twr_jax.dialogue.metrics (SPEC B.7, B.8 and the D table).

References: the SPEC B.7 golden BLEU table; the installed (modern) nltk's
`sentence_bleu`; a table of NLTK 3.5 values (below); sklearn's
`cosine_similarity`; and loop-by-loop re-implementations of the original BOW
and distinct formulas, written from SPEC B.7.
"""

import math
import os
import random
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
from nltk.translate import bleu_score as nltk_bleu
import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

from twr_jax.dialogue import metrics as dm

_GOLDEN_REF = "i do n't know </s>"
# SPEC B.7: hypothesis, NLTK 3.5, NLTK >= 3.6.
_GOLDEN = (
    ('yeah </s>', 1.122512, 0.058696),
    ('i know </s>', 1.102311, 0.279694),
    ("i do n't know </s>", 1.153888, 1.153888),
    ("i do n't think so </s>", 0.495626, 0.495626),
    ('</s>', 0.0, 0.006105),  # NLTK 3.5: ZeroDivisionError -> 0.0.
    (' '.join(['i'] * 40), 0.177308, 0.122453),
)

# (reference, hypothesis, value) from nltk==3.5's
# sentence_bleu([ref.split()], hyp.split(), weights=(1/3, 1/3, 1/3),
# smoothing_function=SmoothingFunction().method7) on Python 3.11, with any
# exception recorded as 0.0 (the original's try/except). Inputs: random
# token lists from a 9-word vocabulary plus hand-picked edge cases.
_NLTK35_TABLE = (
    ("do yeah do yeah n't yeah i n't know uh </s>",
     'i yeah know uh you i know know know yeah you so uh', 0.3727775200948638),
    ("yeah so so do i n't </s>", 'yeah yeah do the', 0.70709265664334),
    ('do </s>', 'do i do so the yeah uh so yeah do </s>', 0.35633400884474575),
    ("uh n't i uh n't n't n't n't so so </s>", 'do i know do yeah </s>',
     0.3508156482306676),
    ("n't the you so i know do </s>",
     'know uh the uh uh i do know yeah yeah i you </s>', 0.44054027506960686),
    ("n't you know i do the so i the n't </s>",
     "yeah n't i yeah yeah so know yeah you you you do", 0.473357035999028),
    ("do yeah know do know uh i uh the n't </s>", 'do yeah the do </s>',
     0.3003586186989635),
    ('do the you yeah yeah </s>', "n't yeah uh </s>", 0.9079249430833067),
    ('know </s>', 'do </s>', 5.0307476982202),
    ("you uh so know the yeah i i n't uh </s>", 'do yeah uh i the i yeah know',
     0.48935139745246664),
    ('know you know do i uh uh i </s>',
     "do yeah know uh n't so yeah yeah know you so so </s>",
     0.3919870203927083),
    ('uh so the </s>', "yeah i n't know n't", 0.0),
    ('so know you the the </s>', "do so know the n't know do uh i",
     0.4536076078862568),
    ("do n't the </s>", "i so do know yeah you the n't i i </s>",
     0.4664804599359825),
    ("i do you n't the n't uh uh </s>", "n't n't do the n't do the </s>",
     0.5089187676119973),
    ('so i the the the i uh uh </s>',
     "i you the so yeah n't so know do you the do n't you </s>",
     0.37346930723022),
    ("n't do you </s>", "n't i you n't </s>", 1.105345139927387),
    ("do so n't the the n't i so n't n't </s>", 'you uh the i',
     0.26012485138238245),
    ('yeah uh you you do know uh you know </s>', 'so </s>',
     0.09214135818093185),
    ('know do the uh know do the you the </s>',
     "the know the n't so you know so do n't so yeah so </s>",
     0.43078588148485464),
    ("yeah i i uh n't yeah do the n't n't </s>",
     "yeah n't i i so i n't do i you i do </s>", 0.41100945887100476),
    ('uh </s>', "do yeah n't the n't so do i know yeah i i n't n't", 0.0),
    ('the </s>', "the i know i know n't uh do i so n't", 0.39305135826105236),
    ("so yeah n't know do the i n't do </s>", "yeah the you n't the so",
     0.46643741747435974),
    ("yeah n't so you you the </s>", '', 0.0),
    ("i you n't n't </s>", '', 0.0),
    ("i i the n't </s>", 'uh do uh uh the know know the the know the the do',
     0.34134625360054766),
    ('yeah so you you i </s>', 'you know the the know know',
     0.7535119745226898),
    ('uh huh </s>', 'uh', 0.0),  # ZeroDivisionError in NLTK 3.5.
    ('uh huh </s>', 'uh huh uh huh uh huh </s>', 0.39931705663593786),
    ('yeah </s>', 'yeah </s>', 2.816613023199125),
    ('yeah </s>', 'no </s>', 5.0307476982202),
    ('i think that is right </s>', 'that is right i think </s>',
     0.634224660660407),
    ('a b a b a b </s>', 'a b a b a b a b a b a b </s>', 0.6223095770166231),
)

# (references, hypothesis, value) from nltk==3.5's
# sentence_bleu([ref.split() for ref in refs], hyp.split(), weights=(1/3,
# 1/3, 1/3), smoothing_function=SmoothingFunction().method7) on Python 3.11,
# any exception recorded as 0.0. Random token lists, picked for ties in the
# closest reference length, counts clipped above every single reference's,
# zero-count orders (3.5's method 4), one-token hypotheses (ZeroDivisionError)
# and four references.
_NLTK35_MULTI_TABLE = (
    (['yeah the i', 'yeah uh i you </s> i the',
      'uh you uh </s> the know yeah i', 'uh'],
     'yeah </s>', 5.229317289076315),
    (['uh know yeah the </s> know uh the the',
      '</s> </s> uh i the </s> yeah', 'i',
      '</s> the you you know yeah you'],
     'i know know </s> know i </s> you', 0.6101411642223662),
    (['know uh yeah </s> you yeah </s> uh the', 'you',
      'know i know know the know you'],
     'know know </s> </s>', 1.3030882394413055),
    (['the know i i uh yeah uh i yeah',
      'the the the the the the you the yeah', 'i you i', '</s> the'],
     '</s> i know the </s> you', 0.9568849222748443),
    (['know you </s> </s> i', 'the the know know the i </s>', 'you know',
      'i </s> know'],
     'i yeah know know i i', 0.6919405450543459),
    (['</s> know </s>', 'uh the', 'know know yeah uh i i'],
     'yeah the i the the', 0.9049800588238369),
    (['i know i </s> the you you know know', 'i yeah'],
     'yeah know you uh uh yeah the yeah', 0.5685675268024764),
    (['know the </s> uh know the i uh yeah', 'know you yeah'],
     'know you uh </s> uh uh uh uh you', 0.5508729236849155),
    (['yeah yeah yeah </s> the', '</s> </s> you yeah know'],
     'yeah i you i the uh </s>', 0.7504067248072044),
    (['i yeah yeah uh uh uh the </s> the', 'i i the </s>',
      'uh yeah the the the yeah i', 'uh yeah'],
     'i yeah uh yeah uh uh you uh you', 0.48192385557643647),
    (['the the', 'i the yeah the yeah yeah'],
     'yeah </s> know you you uh', 0.7535119745226898),
    (['yeah </s> uh know </s>'], 'yeah you', 1.1225115395702179),
    (['uh </s> know </s> know', 'yeah you', 'i you know </s> i',
      'know you i yeah yeah the </s> the'],
     '</s> you you you you yeah the', 0.5404181471222734),
    (['uh </s> uh yeah you the', 'yeah </s> </s> </s> know you',
      'yeah know yeah </s>', 'yeah'],
     'uh i the </s> uh uh', 0.742391875715051),
    (['i know know yeah </s>', '</s> the uh yeah </s> </s> the yeah know',
      'i the i i you you know'],
     'i', 0.0),
    (['know i i'], 'i', 0.0),
    (['uh you you know', 'uh know yeah uh', '</s>',
      '</s> the uh yeah uh </s>'],
     'yeah yeah i', 1.8797471000505739),
    (['the uh you', 'yeah uh yeah', 'the yeah yeah uh </s> i',
      'you uh yeah yeah'],
     'yeah the', 3.171741265190137),
)


def _nltk_modern(reference, hypothesis):
  return nltk_bleu.sentence_bleu(
      [reference], hypothesis, weights=(1 / 3, 1 / 3, 1 / 3),
      smoothing_function=nltk_bleu.SmoothingFunction().method7)


def _shares_an_ngram(reference, hypothesis, n):
  def grams(tokens):
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}
  return bool(grams(reference) & grams(hypothesis))


def _random_pair(rng, vocab):
  reference = rng.choices(vocab, k=rng.randint(0, 12))
  hypothesis = rng.choices(vocab, k=rng.randint(0, 15))
  if rng.random() < 0.5:
    reference.append('</s>')
  if rng.random() < 0.5:
    hypothesis.append('</s>')
  return reference, hypothesis


class SentenceBleuTest(parameterized.TestCase):

  @parameterized.parameters(*_GOLDEN)
  def test_spec_golden_table(self, hypothesis, nltk35, modern):
    reference, hypothesis = _GOLDEN_REF.split(), hypothesis.split()
    self.assertAlmostEqual(
        dm.sentence_bleu(reference, hypothesis, 'nltk35'), nltk35, delta=1e-6)
    self.assertAlmostEqual(
        dm.sentence_bleu(reference, hypothesis, 'nltk_modern'), modern,
        delta=1e-6)

  def test_nltk35_matches_values_from_nltk35(self):
    for reference, hypothesis, expected in _NLTK35_TABLE:
      self.assertAlmostEqual(
          dm.sentence_bleu(reference.split(), hypothesis.split(), 'nltk35'),
          expected, delta=1e-12, msg=f'{reference} / {hypothesis}')

  def test_versions_agree_when_no_order_has_zero_matches(self):
    # Method 4 only touches orders without matches; with none, 3.5 and
    # modern must give the same number, and otherwise (for hypotheses of two
    # or more tokens) 3.5's smoothing is the larger one.
    rng = random.Random(1)
    vocab = ['a', 'b', 'c']
    seen_equal = seen_larger = 0
    for _ in range(200):
      reference, hypothesis = _random_pair(rng, vocab)
      if len(hypothesis) < 2:
        continue
      old = dm.sentence_bleu(reference, hypothesis, 'nltk35')
      new = dm.sentence_bleu(reference, hypothesis, 'nltk_modern')
      matched = [_shares_an_ngram(reference, hypothesis, n)
                 for n in (1, 2, 3)]
      if all(matched):
        self.assertEqual(old, new)
        seen_equal += 1
      elif matched[0]:
        self.assertGreater(old, new)
        seen_larger += 1
    self.assertGreater(seen_equal, 10)
    self.assertGreater(seen_larger, 10)

  def test_edge_cases(self):
    ref = ['a', 'b', '</s>']
    for impl in dm.BLEU_IMPLS:
      self.assertEqual(dm.sentence_bleu(ref, [], impl), 0.0)
      self.assertEqual(dm.sentence_bleu(ref, ['x', 'y'], impl), 0.0)
      self.assertEqual(dm.sentence_bleu([], ['a'], impl), 0.0)
    # One matching token: NLTK 3.5 divides by ln 1 = 0 (-> 0.0), modern
    # leaves the zero orders unsmoothed and averages them in method 5.
    self.assertEqual(dm.sentence_bleu(ref, ['a'], 'nltk35'), 0.0)
    self.assertAlmostEqual(
        dm.sentence_bleu(ref, ['a'], 'nltk_modern'),
        math.exp(1 - 3) * (1 * (1 / 3) * (1 / 9))**(1 / 3), delta=1e-15)
    with self.assertRaisesRegex(ValueError, 'impl'):
      dm.sentence_bleu(ref, ref, 'nltk')


class BleuScoresTest(absltest.TestCase):

  def test_recall_precision_f1_by_hand(self):
    reference = _GOLDEN_REF.split()
    hypotheses = [['yeah </s>'.split(), 'i know </s>'.split()],
                  [list(reference), ['</s>']]]
    scores = dm.bleu_scores([reference, reference], hypotheses, 'nltk35')
    # From the golden table: context 1 scores 1.122512 and 1.102311,
    # context 2 scores 1.153888 (copy) and 0 ('</s>' alone).
    recall = (1.122512 + 1.153888) / 2
    precision = ((1.122512 + 1.102311) / 2 + 1.153888 / 2) / 2
    self.assertAlmostEqual(scores['recall'], recall, delta=1e-6)
    self.assertAlmostEqual(scores['precision'], precision, delta=1e-6)
    self.assertAlmostEqual(
        scores['f1'],
        2 * scores['precision'] * scores['recall']
        / (scores['precision'] + scores['recall'] + 1e-11), delta=1e-15)
    self.assertAlmostEqual(scores['f1'], 2 * precision * recall
                           / (precision + recall), delta=1e-6)

  def test_rejects_mismatched_inputs(self):
    with self.assertRaisesRegex(ValueError, '2 references'):
      dm.bleu_scores([['a'], ['b']], [[['a']]])
    with self.assertRaisesRegex(ValueError, 'at least one'):
      dm.bleu_scores([['a']], [[]])
    with self.assertRaisesRegex(ValueError, 'No contexts'):
      dm.bleu_scores([], [])


class MultiReferenceBleuTest(absltest.TestCase):

  def test_hand_example_clips_by_the_max_over_references(self):
    references = ['a b c d'.split(), 'a a b'.split()]
    hypothesis = 'a a b c'.split()
    # Clipped by the max over references: a 2/2 (from the second), b, c:
    # p1 = 4/4; aa, ab, bc: p2 = 3/3; aab, abc: p3 = 2/2; no 5-gram: 0/1.
    # Closest reference length 4 = c, so bp = exp(0) = 1. Method 5 with
    # p_0 = p_1 + 1 = 2: (2 + 1 + 1)/3 = 4/3, (4/3 + 1 + 1)/3 = 10/9,
    # (10/9 + 1 + 0)/3 = 19/27.
    expected = (4 / 3 * 10 / 9 * 19 / 27)**(1 / 3)
    for impl in dm.BLEU_IMPLS:  # No zero-count order: method 4 is idle.
      self.assertAlmostEqual(
          dm.multi_sentence_bleu(references, hypothesis, impl), expected,
          delta=1e-14)
      # Either reference alone clips a or c away, so scores less.
      for reference in references:
        self.assertLess(dm.sentence_bleu(reference, hypothesis, impl),
                        expected)

  def test_hand_example_tie_in_reference_length_takes_the_shorter(self):
    hypothesis = 'a b c'.split()
    short, long = 'a b'.split(), 'a b c x'.split()
    # Both are 1 from c = 3; the shorter (2 < c) gives bp = 1, the longer
    # would give exp(1 - 4/3). The precisions are those of the example
    # above: every order fully matched, 5-gram 0.
    expected = (4 / 3 * 10 / 9 * 19 / 27)**(1 / 3)
    for impl in dm.BLEU_IMPLS:
      for references in ([short, long], [long, short]):
        self.assertAlmostEqual(
            dm.multi_sentence_bleu(references, hypothesis, impl), expected,
            delta=1e-14)
      self.assertAlmostEqual(
          dm.multi_sentence_bleu([long], hypothesis, impl),
          math.exp(1 - 4 / 3) * expected, delta=1e-14)

  def test_hand_example_five_gram_precision_uses_every_reference(self):
    references = [['x', 'y'], 'a b c d e'.split()]
    hypothesis = 'a b c d e'.split()
    # p1..p3 = 1, and method 5's extra 5-gram precision is 1/1 thanks to the
    # second reference: (2 + 1 + 1)/3, (4/3 + 1 + 1)/3, (10/9 + 1 + 1)/3.
    # Closest reference length 5 = c: bp = 1.
    expected = (4 / 3 * 10 / 9 * 28 / 27)**(1 / 3)
    for impl in dm.BLEU_IMPLS:
      for refs in (references, references[::-1]):
        self.assertAlmostEqual(dm.multi_sentence_bleu(refs, hypothesis, impl),
                               expected, delta=1e-14)

  def test_nltk35_matches_values_from_nltk35(self):
    for references, hypothesis, expected in _NLTK35_MULTI_TABLE:
      references = [reference.split() for reference in references]
      self.assertAlmostEqual(
          dm.multi_sentence_bleu(references, hypothesis.split(), 'nltk35'),
          expected, delta=1e-12, msg=f'{references} / {hypothesis}')

  def test_one_reference_is_sentence_bleu(self):
    cases = [(r.split(), h.split()) for r, h, _ in _NLTK35_TABLE]
    cases += [(_GOLDEN_REF.split(), h.split()) for h, _, _ in _GOLDEN]
    for reference, hypothesis in cases:
      for impl in dm.BLEU_IMPLS:
        self.assertEqual(
            dm.multi_sentence_bleu([reference], hypothesis, impl),
            dm.sentence_bleu(reference, hypothesis, impl))
    # A duplicated reference changes nothing either.
    reference, hypothesis = cases[0]
    self.assertEqual(
        dm.multi_sentence_bleu([reference, reference], hypothesis, 'nltk35'),
        dm.sentence_bleu(reference, hypothesis, 'nltk35'))

  def test_rejects_bad_references(self):
    with self.assertRaisesRegex(ValueError, 'at least one reference'):
      dm.multi_sentence_bleu([], ['a'])
    with self.assertRaisesRegex(TypeError, 'token lists'):
      dm.multi_sentence_bleu(['a', 'b'], ['a'])
    with self.assertRaisesRegex(ValueError, 'impl'):
      dm.multi_sentence_bleu([['a']], ['a'], 'nltk')

  def test_multi_bleu_scores(self):
    references = [['a b c d'.split(), 'a a b'.split()], [['x', 'y']]]
    hypotheses = [['a a b c'.split(), ['a'], []], [['x', 'y'], ['y']]]
    for impl in dm.BLEU_IMPLS:
      scores = dm.multi_bleu_scores(references, hypotheses, impl)
      per_context = [[dm.multi_sentence_bleu(refs, h, impl) for h in hyps]
                     for refs, hyps in zip(references, hypotheses)]
      recall = np.mean([max(s) for s in per_context])
      precision = np.mean([np.mean(s) for s in per_context])
      self.assertEqual(scores['recall'], recall)
      self.assertEqual(scores['precision'], precision)
      self.assertEqual(scores['f1'], 2 * precision * recall
                       / (precision + recall + 1e-11))
      # One reference per context: bleu_scores, exactly.
      golden_hyps = [[h.split() for h, _, _ in _GOLDEN]] * 2
      self.assertEqual(
          dm.multi_bleu_scores([[_GOLDEN_REF.split()]] * 2, golden_hyps,
                               impl),
          dm.bleu_scores([_GOLDEN_REF.split()] * 2, golden_hyps, impl))
    with self.assertRaisesRegex(ValueError, 'Context 1 needs'):
      dm.multi_bleu_scores([[['a']], []], [[['a']], [['a']]])
    with self.assertRaisesRegex(TypeError, 'Context 0'):
      dm.multi_bleu_scores([['a b']], [[['a']]])
    with self.assertRaisesRegex(ValueError, '1 references'):
      dm.multi_bleu_scores([[['a']]], [[['a']], [['a']]])


def test_read_references_tokenises_like_the_dialogue_data(tmp_path):
  path = _write(tmp_path / 'refs.jsonl',
                '["Don\'t know.", "yeah"]\n'
                '["Uh-huh,  RIGHT", "ok", "i see"]\n\n')
  assert dm.read_references(path, 2) == [
      [['don', "'", 't', 'know', '.'], ['yeah']],
      [['uh', '-', 'huh', ',', 'right'], ['ok'], ['i', 'see']],
  ]
  # No trailing newline at all is fine too, and so are CRLF line ends and a
  # raw U+2028 (legal inside a JSON string) splitting two words.
  path = _write(tmp_path / 'bare.jsonl', '["a"]')
  assert dm.read_references(path, 1) == [[['a']]]
  path = tmp_path / 'crlf.jsonl'
  path.write_bytes('["x\u2028y"]\r\n["z"]\r\n'.encode('utf-8'))
  assert dm.read_references(path, 2) == [[['x', 'y']], [['z']]]


@pytest.mark.parametrize('name, text, pattern', [
    ('json.jsonl', '["a"]\n["b"\n', r'json\.jsonl:2: invalid JSON'),
    ('dict.jsonl', '{"refs": ["a"]}\n["b"]\n', r'dict\.jsonl:1: expected a'
     ' JSON list'),
    ('string.jsonl', '["a"]\n"b"\n', r'string\.jsonl:2: expected a JSON'),
    ('emptylist.jsonl', '["a"]\n[]\n', r'emptylist\.jsonl:2: empty list'),
    ('number.jsonl', '["a", 3]\n["b"]\n', r'number\.jsonl:1: reference 1'
     ' is a int'),
    ('nested.jsonl', '[["a"]]\n["b"]\n', r'nested\.jsonl:1: reference 0 is'
     ' a list'),
    ('blankref.jsonl', '["a"]\n["b", "  "]\n', r'blankref\.jsonl:2:'
     ' reference 1'),
    ('emptyref.jsonl', '[""]\n["b"]\n', r'emptyref\.jsonl:1: reference 0'),
    ('gap.jsonl', '["a"]\n\n["b"]\n', r'gap\.jsonl:2: blank line'),
    ('short.jsonl', '["a"]\n', r'short\.jsonl: 1 reference lines for 2'),
    ('long.jsonl', '["a"]\n["b"]\n["c"]\n',
     r'long\.jsonl: 3 reference lines for 2'),
    ('empty.jsonl', '\n', r'empty\.jsonl: 0 reference lines for 2'),
])
def test_read_references_errors_name_file_and_line(tmp_path, name, text,
                                                   pattern):
  with pytest.raises(ValueError, match=pattern):
    dm.read_references(_write(tmp_path / name, text), 2)


# ----------------------------------------------------------------------------
# BOW: reference implementations written out position by position.


def _extrema_reference(vectors, length, paper):
  """Per dimension, the value furthest from 0 (SPEC B.7 extrema)."""
  out = []
  for d in range(vectors.shape[1]):
    if paper:
      # Masked positions count as 0 in the max and as e + 1 in the min.
      mx = max(v[d] if t < length else 0.0 for t, v in enumerate(vectors))
      mn = min(v[d] if t < length else v[d] + 1 for t, v in
               enumerate(vectors))
    elif length == 0:
      out.append(0.0)
      continue
    else:
      mx = max(v[d] for v in vectors[:length])
      mn = min(v[d] for v in vectors[:length])
    out.append(mx if mx >= abs(mn) else mn)
  return np.array(out)


def _mean_reference(vectors, length, paper):
  total = sum((vectors[t] for t in range(length)), np.zeros(vectors.shape[1]))
  if paper:
    return total / (length + 1e-8)
  return total / max(length, 1)


def _greedy_reference(pred, pred_len, ref, ref_len, paper):
  if not paper:
    pred, ref = pred[:pred_len], ref[:ref_len]
    if not len(pred) or not len(ref):
      return 0.0
  cos = sk_cosine(pred, ref)
  per_ref = np.mean([max(cos[i, j] for i in range(len(pred)))
                     for j in range(len(ref))])
  per_pred = np.mean([max(cos[i, j] for j in range(len(ref)))
                      for i in range(len(pred))])
  return (per_ref + per_pred) / 2


def _bow_reference(embedding, pred_ids, pred_lens, ref_ids, ref_len, mode):
  paper = mode == 'paper'
  ref = embedding[ref_ids]
  scores = {'average': [], 'extrema': [], 'greedy': []}
  for ids, length in zip(pred_ids, pred_lens):
    pred = embedding[ids]
    scores['average'].append(sk_cosine(
        _mean_reference(pred, length, paper)[None],
        _mean_reference(ref, ref_len, paper)[None])[0, 0])
    scores['extrema'].append(sk_cosine(
        _extrema_reference(pred, length, paper)[None],
        _extrema_reference(ref, ref_len, paper)[None])[0, 0])
    scores['greedy'].append(
        _greedy_reference(pred, length, ref, ref_len, paper))
  return {key: max(values) for key, values in scores.items()}


def _write(path, text):
  path.write_text(text, encoding='utf-8')
  return str(path)


class CosineTest(absltest.TestCase):

  def test_matches_sklearn_with_zero_rows(self):
    rng = np.random.RandomState(0)
    x, y = rng.randn(7, 5), rng.randn(4, 5)
    x[2] = 0.0
    y[1] = 0.0
    np.testing.assert_allclose(dm.cosine_similarity(x, y), sk_cosine(x, y),
                               rtol=0, atol=1e-12)
    self.assertTrue(np.all(dm.cosine_similarity(x, y)[2] == 0.0))

  def test_rejects_bad_shapes(self):
    with self.assertRaisesRegex(ValueError, r'\[N, D\]'):
      dm.cosine_similarity(np.ones((2, 3)), np.ones((2, 4)))


class BowMetricsTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    # Rows: 0 valid word a, 1 post-</s> garbage g, 2 reference word r,
    # 3 '</s>'. Chosen so that the extrema bug and the unmasked greedy show.
    self.embedding = np.array([[0.3, 1.0], [-2.0, 1.0], [1.0, 0.0],
                               [0.0, 0.5]])
    self.pred, self.pred_lens = np.array([[0, 1]]), [1]
    self.ref, self.ref_len = [2, 3], 1

  def test_extrema_bug_and_greedy_by_hand(self):
    paper = dm.bow_metrics(self.pred, self.pred_lens, self.ref, self.ref_len,
                           self.embedding, 'paper')
    standard = dm.bow_metrics(self.pred, self.pred_lens, self.ref,
                              self.ref_len, self.embedding, 'standard')
    cos_ar = 0.3 / math.sqrt(1.09)
    # Average is a direction: the 1e-8 does not move it, both modes agree.
    self.assertAlmostEqual(paper['average'], cos_ar, delta=1e-12)
    self.assertAlmostEqual(standard['average'], cos_ar, delta=1e-12)
    # Paper: dim 0 takes min(0.3, -2 + 1) = -1 from the masked garbage, so
    # the predicted extrema is [-1, 1]; the reference's is [1, 0].
    self.assertAlmostEqual(paper['extrema'], -1 / math.sqrt(2), delta=1e-12)
    self.assertAlmostEqual(standard['extrema'], cos_ar, delta=1e-12)
    # Paper greedy: pred {a, g} x ref {r, </s>}; standard: {a} x {r}.
    cos_aeos, cos_gr, cos_geos = 1 / math.sqrt(1.09), -2 / math.sqrt(5), (
        1 / math.sqrt(5))
    per_ref = (max(cos_ar, cos_gr) + max(cos_aeos, cos_geos)) / 2
    per_pred = (max(cos_ar, cos_aeos) + max(cos_gr, cos_geos)) / 2
    self.assertAlmostEqual(paper['greedy'], (per_ref + per_pred) / 2,
                           delta=1e-12)
    self.assertAlmostEqual(standard['greedy'], cos_ar, delta=1e-12)

  @parameterized.parameters('paper', 'standard')
  def test_matches_position_by_position_reference(self, mode):
    rng = np.random.RandomState(3)
    vocab_size, dim, k, t = 12, 5, 4, 8
    embedding = rng.randn(vocab_size, dim)
    embedding[0] = 0.0  # A zero vector (sklearn: cosine 0).
    for trial in range(20):
      pred = rng.randint(0, vocab_size, size=(k, t))
      # Lengths 0 (decode starts with </s>) to t (no </s>).
      lens = rng.randint(0, t + 1, size=k)
      lens[0] = trial % (t + 1)
      n = rng.randint(0, 6)
      ref = rng.randint(0, vocab_size, size=n + 1)
      ours = dm.bow_metrics(pred, lens, ref, n, embedding, mode)
      theirs = _bow_reference(embedding, pred, lens, ref, n, mode)
      for key in ('average', 'extrema', 'greedy'):
        self.assertAlmostEqual(ours[key], theirs[key], delta=1e-9,
                               msg=f'{mode} {key} trial {trial}')

  def test_max_over_samples(self):
    rng = np.random.RandomState(4)
    embedding = rng.randn(10, 4)
    pred = rng.randint(0, 10, size=(5, 6))
    lens, ref = [3, 6, 0, 2, 4], [1, 2, 3]
    together = dm.bow_metrics(pred, lens, ref, 2, embedding, 'paper')
    alone = [dm.bow_metrics(pred[i:i + 1], lens[i:i + 1], ref, 2, embedding,
                            'paper') for i in range(5)]
    for key, value in together.items():
      # Batched and single matmuls may differ in the last bit.
      self.assertAlmostEqual(value, max(single[key] for single in alone),
                             delta=1e-12)

  def test_rejects_bad_inputs(self):
    args = (self.pred, self.pred_lens, self.ref, self.ref_len, self.embedding)
    with self.assertRaisesRegex(ValueError, 'mode'):
      dm.bow_metrics(*args, mode='compat')
    with self.assertRaisesRegex(ValueError, 'pred_lens'):
      dm.bow_metrics(self.pred, [1, 1], self.ref, 1, self.embedding)
    with self.assertRaisesRegex(ValueError, 'ref_len'):
      dm.bow_metrics(self.pred, [1], self.ref, 3, self.embedding)


# The loader tests are plain pytest functions, for pytest's tmp_path.


def test_load_word_vectors_glove_file_and_random_missing_words(tmp_path):
  path = _write(tmp_path / 'glove.txt',
                'the 0.1 -0.2 0.3\ncat 1e-3 2 -4.5\nsat 7 8 9 \n'
                'cat 1 1 1\n\n')
  vocab = ['<pad>', '<unk>', 'the', 'dog', 'cat', '</s>']
  vectors = dm.load_word_vectors(path, vocab)
  assert vectors.dtype == np.float64
  assert vectors.shape == (6, 3)
  np.testing.assert_array_equal(vectors[2], [0.1, -0.2, 0.3])
  # First wins (the original kept the last; issue 13).
  np.testing.assert_array_equal(vectors[4], [1e-3, 2.0, -4.5])
  # The original: np.random.seed(1111), then randn(D) * 0.1 per missing word
  # in vocabulary order.
  np.random.seed(1111)
  expected = [np.random.randn(3) * 0.1 for _ in range(4)]
  for row, want in zip((0, 1, 3, 5), expected):
    np.testing.assert_array_equal(vectors[row], want)
  other = dm.load_word_vectors(path, vocab, seed=7)
  assert not np.allclose(other[0], vectors[0])
  np.testing.assert_array_equal(other[2], vectors[2])


def test_load_word_vectors_skips_word2vec_header(tmp_path):
  # Read as GloVe, the header would be the vector [2.] of the word '2'.
  path = _write(tmp_path / 'w2v.txt', '2 2\n2 0.5 0.25\nb 1 2\n')
  vectors = dm.load_word_vectors(path, ['2', 'b', 'c'])
  assert vectors.shape == (3, 2)
  np.testing.assert_array_equal(vectors[0], [0.5, 0.25])
  np.testing.assert_array_equal(vectors[1], [1.0, 2.0])


@pytest.mark.parametrize('name, text, pattern', [
    ('count.txt', 'a 1 2\nb 1 2 3\n', r'count\.txt:2: 3 values'),
    ('header.txt', '2 3\na 1 2\n', r'header\.txt:2: 2 values'),
    ('text.txt', 'a 1 2\nb 1 x\n', r'text\.txt:2: non-numeric'),
    ('bare.txt', 'a 1 2\n\nb\n', r'bare\.txt:3: 0 values, expected'),
    ('empty.txt', '\n', r'empty\.txt: no word vectors'),
])
def test_load_word_vectors_malformed_lines_name_file_and_line(
    tmp_path, name, text, pattern):
  with pytest.raises(ValueError, match=pattern):
    dm.load_word_vectors(_write(tmp_path / name, text), ['a', 'b'])


class DistinctTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    # Context 1: 'a b a' and 'a a' (after </s> ignored); context 2: 'a b'
    # and the empty response.
    self.samples = [
        [['a', 'b', 'a', '</s>', 'x', 'y'], ['a', 'a']],
        [['a', 'b', '</s>'], ['</s>', 'z']],
    ]

  def test_intra_distinct_by_hand(self):
    eps = 1e-7  # 1e-12 / 1e-5 for an empty sample.
    dist1 = ((2 / 3.00001 + 1 / 2.00001) / 2 + (2 / 2.00001 + eps) / 2) / 2
    dist2 = ((2 / 2.00001 + 1 / 1.00001) / 2 + (1 / 1.00001 + eps) / 2) / 2
    self.assertAlmostEqual(dm.intra_distinct(self.samples, 1), dist1,
                           delta=1e-11)
    self.assertAlmostEqual(dm.intra_distinct(self.samples, 2), dist2,
                           delta=1e-11)

  def test_inter_distinct_is_per_context(self):
    # Context 1 pools {a, b} over 5 unigrams and {ab, ba, aa} over 3 bigrams;
    # context 2 {a, b} over 2 and {ab} over 1.
    self.assertAlmostEqual(dm.inter_distinct(self.samples, 1),
                           (2 / 5.00001 + 2 / 2.00001) / 2, delta=1e-11)
    self.assertAlmostEqual(dm.inter_distinct(self.samples, 2),
                           (3 / 3.00001 + 1 / 1.00001) / 2, delta=1e-11)

  def test_corpus_distinct_pools_everything(self):
    # Unigrams a b a a a a b: 2 distinct of 7; bigrams ab ba aa ab: 3 of 4.
    self.assertEqual(dm.corpus_distinct(self.samples, 1), 2 / 7)
    self.assertEqual(dm.corpus_distinct(self.samples, 2), 3 / 4)
    self.assertEqual(dm.corpus_distinct([[['</s>']]], 1), 0.0)
    with self.assertRaisesRegex(ValueError, 'n >= 1'):
      dm.corpus_distinct(self.samples, 0)

  def test_matches_id_array_formulas(self):
    # SPEC B.7 on [K, T] id arrays with lengths, as the original computes it,
    # against the token-list functions (id i <-> token 'w{i}', 0 = '</s>').
    rng = np.random.RandomState(5)
    ids = rng.randint(0, 6, size=(30, 10, 12))
    lens = [[list(row).index(0) if 0 in row else 12 for row in context]
            for context in ids]
    intra = {1: [], 2: []}
    inter = {1: [], 2: []}
    for context, context_lens in zip(ids, lens):
      for n in (1, 2):
        pooled, total = set(), 0
        for row, length in zip(context, context_lens):
          grams = [tuple(row[i:i + n]) for i in range(length - n + 1)]
          intra[n].append((len(set(grams)) + 1e-12)
                          / (max(0, length - n + 1) + 1e-5))
          pooled.update(grams)
          total += max(0, length - n + 1)
        inter[n].append((len(pooled) + 1e-12) / (total + 1e-5))
    samples = [[['</s>' if i == 0 else f'w{i}' for i in row]
                for row in context] for context in ids]
    for n in (1, 2):
      self.assertAlmostEqual(dm.intra_distinct(samples, n),
                             np.mean(intra[n]), delta=1e-12)
      self.assertAlmostEqual(dm.inter_distinct(samples, n),
                             np.mean(inter[n]), delta=1e-12)


class ScoreResponsesTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.vocab = ['<pad>', '<unk>', '<s>', '</s>', 'i', 'do', "n't", 'know',
                  'yeah', 'so']
    self.embedding = np.random.RandomState(6).randn(len(self.vocab), 4)
    # Two contexts, K = 3 decodes of T = 6 steps each, with post-</s>
    # garbage, a pad inside a response and a decode without </s>.
    self.hypotheses = [
        ['yeah </s> so so i i'.split(),
         "i <pad> know </s> </s> do".split(),
         "i do n't know so yeah".split()],
        ['</s> i i i i i'.split(),
         'so yeah </s> yeah yeah yeah'.split(),
         "do n't know </s> </s> </s>".split()],
    ]
    self.references = ["<s> i do n't know </s>".split(), 'yeah so'.split()]
    self.index = {token: i for i, token in enumerate(self.vocab)}

  def _ids(self, tokens):
    return [self.index[token] for token in tokens]

  def test_both_sections(self):
    result = dm.score_responses(self.hypotheses, self.references,
                                self.embedding, self.vocab)
    self.assertEqual(result['num_contexts'], 2)
    paper, standard = result['paper'], result['standard']

    paper_refs = [["i", "do", "n't", "know", "</s>"], ['yeah', 'so', '</s>']]
    paper_hyps = [[['yeah', '</s>'], ['i', 'know', '</s>'],
                   ['i', 'do', "n't", 'know', 'so', 'yeah']],
                  [['</s>'], ['so', 'yeah', '</s>'],
                   ['do', "n't", 'know', '</s>']]]
    bleu = dm.bleu_scores(paper_refs, paper_hyps, 'nltk35')
    for key, value in bleu.items():
      self.assertEqual(paper[f'bleu_{key}'], value)
    # Golden values for context 1: 'yeah </s>' and 'i know </s>'.
    self.assertAlmostEqual(
        paper['bleu_recall'], (1.122512 + max(
            dm.sentence_bleu(paper_refs[1], h, 'nltk35')
            for h in paper_hyps[1])) / 2, delta=1e-6)

    standard_refs = [["i", "do", "n't", "know"], ['yeah', 'so']]
    standard_hyps = [[['yeah'], ['i', 'know'],
                      ['i', 'do', "n't", 'know', 'so', 'yeah']],
                     [[], ['so', 'yeah'], ['do', "n't", 'know']]]
    recalls, precisions = [], []
    for ref, hyps in zip(standard_refs, standard_hyps):
      scores = [float(_nltk_modern(ref, h)) for h in hyps]
      recalls.append(max(scores))
      precisions.append(sum(scores) / len(scores))
    self.assertAlmostEqual(standard['bleu_recall'], np.mean(recalls),
                           delta=1e-12)
    self.assertAlmostEqual(standard['bleu_precision'], np.mean(precisions),
                           delta=1e-12)

    paper_lens = [[1, 3, 6], [0, 2, 3]]
    for mode, section, preds, lens in (
        ('paper', paper, [[self._ids(h) for h in c] for c in self.hypotheses],
         paper_lens),
        ('standard', standard,
         [[self._ids(h) for h in c] for c in standard_hyps],
         [[len(h) for h in c] for c in standard_hyps]),
    ):
      per_context = []
      for c in range(2):
        ref_ids = self._ids(paper_refs[c])
        per_context.append(_bow_reference(
            self.embedding, [np.array(p, dtype=int) for p in preds[c]],
            lens[c], np.array(ref_ids), len(ref_ids) - 1, mode))
      for key in ('average', 'extrema', 'greedy'):
        self.assertAlmostEqual(
            section[f'bow_{key}'],
            np.mean([scores[key] for scores in per_context]), delta=1e-9,
            msg=f'{mode} {key}')

    # Paper distinct counts the pad token; standard drops it.
    paper_tokens = [[h[:n] for h, n in zip(c, lens)]
                    for c, lens in zip(self.hypotheses, paper_lens)]
    self.assertEqual(paper_tokens[0][1], ['i', '<pad>', 'know'])
    for n in (1, 2):
      self.assertEqual(paper[f'intra_dist{n}'],
                       dm.intra_distinct(paper_tokens, n))
      self.assertEqual(paper[f'inter_dist{n}'],
                       dm.inter_distinct(paper_tokens, n))
      self.assertEqual(standard[f'distinct{n}'],
                       dm.corpus_distinct(standard_hyps, n))
    self.assertEqual(paper['avg_len'], (10 / 3 + 5 / 3) / 2)
    self.assertEqual(standard['avg_len'], 14 / 6)

  def test_without_embedding_bow_is_marked_skipped(self):
    result = dm.score_responses(self.hypotheses, self.references)
    for section in ('paper', 'standard'):
      self.assertEqual(result[section]['bow'], dm.BOW_SKIPPED)
      self.assertNotIn('bow_average', result[section])
    self.assertIn('NLTK 3.5', result['notes']['paper'])
    self.assertIn('NLTK >= 3.6', result['notes']['standard'])
    with self.assertRaisesRegex(ValueError, 'vocab_tokens'):
      dm.score_responses(self.hypotheses, self.references, self.embedding)
    with self.assertRaisesRegex(ValueError, '9 vocab tokens'):
      dm.score_responses(self.hypotheses, self.references, self.embedding,
                         self.vocab[:-1])

  def test_multi_references(self):
    multi = [[['i', 'know'], ["i", "do", "n't", "know"]], [['so', 'yeah']]]
    plain = dm.score_responses(self.hypotheses, self.references)
    result = dm.score_responses(self.hypotheses, self.references,
                                multi_references=multi)
    paper_hyps = [[['yeah', '</s>'], ['i', 'know', '</s>'],
                   ['i', 'do', "n't", 'know', 'so', 'yeah']],
                  [['</s>'], ['so', 'yeah', '</s>'],
                   ['do', "n't", 'know', '</s>']]]
    standard_hyps = [[['yeah'], ['i', 'know'],
                      ['i', 'do', "n't", 'know', 'so', 'yeah']],
                     [[], ['so', 'yeah'], ['do', "n't", 'know']]]
    expected = {
        'paper': dm.multi_bleu_scores(
            [[r + ['</s>'] for r in refs] for refs in multi], paper_hyps,
            'nltk35'),
        'standard': dm.multi_bleu_scores(multi, standard_hyps, 'nltk_modern'),
    }
    for mode in ('paper', 'standard'):
      section = result[mode]
      for key in ('recall', 'precision', 'f1'):
        self.assertEqual(section[f'bleu_multi_{key}'], expected[mode][key])
        self.assertNotIn(f'bleu_multi_{key}', plain[mode])
      # Everything else is as without multi-references.
      self.assertEqual(
          {k: v for k, v in section.items() if 'multi' not in k},
          plain[mode])
      self.assertIn('bleu_multi_', result['notes'][mode])
      self.assertTrue(result['notes'][mode].startswith(dm.NOTES[mode]))
    # The second context's reference 'so yeah' matches the second sample
    # exactly, which the single reference 'yeah so' does not.
    self.assertGreater(result['standard']['bleu_multi_recall'],
                       result['standard']['bleu_recall'])

    # One reference per context, the words of `references`: the same BLEU.
    same = dm.score_responses(
        self.hypotheses, self.references,
        multi_references=[[["i", "do", "n't", "know"]], [['yeah', 'so']]])
    for mode in ('paper', 'standard'):
      for key in ('recall', 'precision', 'f1'):
        self.assertEqual(same[mode][f'bleu_multi_{key}'],
                         same[mode][f'bleu_{key}'])

    with self.assertRaisesRegex(ValueError, '1 contexts of multi_references'):
      dm.score_responses(self.hypotheses, self.references,
                         multi_references=multi[:1])
    with self.assertRaisesRegex(ValueError, 'Context 1 needs'):
      dm.score_responses(self.hypotheses, self.references,
                         multi_references=[multi[0], []])
    with self.assertRaisesRegex(TypeError, 'Context 1'):
      dm.score_responses(self.hypotheses, self.references,
                         multi_references=[multi[0], ['so yeah']])

  def test_ragged_paper_decodes_score_each_sample_alone(self):
    hypotheses = [['i know </s> so'.split(), 'yeah </s>'.split()]]
    result = dm.score_responses(hypotheses, [['i', 'know']], self.embedding,
                                self.vocab)
    ref = self._ids(['i', 'know', '</s>'])
    alone = [dm.bow_metrics(np.array([self._ids(h)]), [n], ref, 2,
                            self.embedding, 'paper')
             for h, n in zip(hypotheses[0], (2, 1))]
    for key in ('average', 'extrema', 'greedy'):
      self.assertAlmostEqual(result['paper'][f'bow_{key}'],
                             max(scores[key] for scores in alone), delta=1e-12)


if __name__ == '__main__':
  absltest.main()


class PaperSectionByHandTest(absltest.TestCase):
  """The paper section end to end (SPEC B.7), every number by hand.

  Inputs as the evaluator passes them: full decodes (post-</s> tail and
  <pad> included), reference words; vectors from a made-up file that has a
  vector for every vocabulary token (so no random ones).
  """

  VECTORS = {'<pad>': (-1, 0), '<unk>': (-1, -1), '<s>': (1, -1),
             '</s>': (0, 2), 'a': (1, 0), 'b': (0, 1), 'c': (1, 1),
             'yes': (2, 1), 'no': (0, -1)}

  def setUp(self):
    super().setUp()
    self.vocab = list(self.VECTORS)
    self.hypotheses = [
        [['a', 'b', '</s>', 'c', '<pad>'], ['</s>', 'a', 'a', 'a', 'a']],
        [['yes', '</s>', 'no', 'no', 'no'], ['<pad>', 'no', '</s>', 'a', 'a']],
    ]
    self.references = [['a', 'b', 'c'], ['yes']]

  def test_paper_section(self):
    with tempfile.TemporaryDirectory() as folder:
      path = os.path.join(folder, 'vectors.txt')
      with open(path, 'w') as f:
        f.writelines(f'{w} {x} {y}\n' for w, (x, y) in self.VECTORS.items())
      embedding = dm.load_word_vectors(path, self.vocab)
    np.testing.assert_array_equal(embedding, list(self.VECTORS.values()))
    paper = dm.score_responses(self.hypotheses, self.references, embedding,
                               self.vocab)['paper']

    # BLEU, NLTK 3.5 method7 = method4 (i + k / ln L for a zero count, k = 5)
    # then method5 (p_i <- (p_{i-1}' + p_i + p_{i+1}) / 3, p_0' = p_1 + 1,
    # p_4 = the 5-gram precision = 0 here); hyp up to and incl. </s>, pads
    # dropped; ref + </s>.
    def bleu(p, bp):
      p1 = (p[0] + 1 + p[0] + p[1]) / 3
      p2 = (p1 + p[1] + p[2]) / 3
      p3 = (p2 + p[2] + 0) / 3
      return bp * (p1 * p2 * p3)**(1 / 3)
    # 'a b </s>' vs 'a b c </s>': p = 3/3, 1/2, 0/1 -> 2 + 5 / ln 3;
    # brevity penalty exp(1 - 4/3).
    b11 = bleu([1, 1 / 2, 2 + 5 / math.log(3)], math.exp(1 - 4 / 3))
    # '</s>' alone: ln 1 = 0 divides by zero -> 0.0 (the original's except).
    b12 = 0.0
    # 'yes </s>' vs 'yes </s>': p = 1, 1, 0/1 -> 2 + 5 / ln 2; bp 1.
    b21 = bleu([1, 1, 2 + 5 / math.log(2)], 1.0)
    # 'no </s>' (pad dropped): p = 1/2, 0/1 -> 1 + 5 / ln 2, 0/1 -> 2 + ...
    b22 = bleu([1 / 2, 1 + 5 / math.log(2), 2 + 5 / math.log(2)], 1.0)
    self.assertAlmostEqual(b22, 5.0307476982202, delta=1e-9)  # nltk 3.5 table
    recall = (max(b11, b12) + max(b21, b22)) / 2
    precision = ((b11 + b12) / 2 + (b21 + b22) / 2) / 2
    self.assertAlmostEqual(paper['bleu_recall'], recall, delta=1e-12)
    self.assertAlmostEqual(paper['bleu_precision'], precision, delta=1e-12)
    self.assertAlmostEqual(paper['bleu_f1'], 2 * precision * recall
                           / (precision + recall + 1e-11), delta=1e-12)

    # BOW. cos of 2-D vectors; per context the max over the 2 samples.
    def cos(u, v):
      u, v = np.asarray(u, float), np.asarray(v, float)
      n = np.linalg.norm(u) * np.linalg.norm(v)
      return 0.0 if n == 0 else float(u @ v / n)
    e = {w: np.array(v, float) for w, v in self.VECTORS.items()}
    # Context 1, ref a b c (</s> read by greedy only), len 3, mean (2/3, 2/3).
    # Sample 1 (len 2): mean (1/2, 1/2) -> cos 1. Sample 2 (len 0): mean 0
    # -> cos 0.
    average1 = max(1.0, 0.0)
    # Context 2, ref 'yes': sample 1 (len 1) mean = yes -> 1; sample 2
    # (len 2, <pad> no): mean (-1/2, -1/2) -> cos((-1,-1), (2,1)).
    average2 = max(1.0, cos((-1, -1), (2, 1)))
    self.assertAlmostEqual(paper['bow_average'], (average1 + average2) / 2,
                           delta=1e-9)
    # Extrema: mx = max_t e_t m_t (masked -> 0), mn = min_t e_t + 1 - m_t
    # (masked -> e + 1), per dim mx if mx >= |mn| else mn.
    # Ref 1 [a b c </s>], mask 1 1 1 0: mx (1, 1); mn min(a, b, c, (1, 3))
    # = (0, 0) -> (1, 1).
    # Sample 1,1 [a b </s> c <pad>] mask 1 1 0 0 0: mx (1, 1); mn min(a, b,
    # (1, 3), (2, 2), (0, 1)) = (0, 0) -> (1, 1): cos 1.
    # Sample 1,2 [</s> a a a a] all masked: mx (0, 0); mn min((1, 3),
    # (2, 1)) = (1, 1) -> (1, 1): cos 1 (the bug: nothing decoded, cos 1).
    extrema1 = max(cos((1, 1), (1, 1)), cos((1, 1), (1, 1)))
    # Ref 2 [yes </s>] mask 1 0: mx (2, 1); mn min((2, 1), (1, 3)) = (1, 1)
    # -> (2, 1).
    # Sample 2,1 [yes </s> no no no] mask 1 0 0 0 0: mx (2, 1); mn
    # min((2, 1), (1, 3), (1, 0) x3) = (1, 0) -> (2, 1): cos 1.
    # Sample 2,2 [<pad> no </s> a a] mask 1 1 0 0 0: mx max((-1, 0),
    # (0, -1), 0, 0, 0) = (0, 0); mn min((-1, 0), (0, -1), (1, 3), (2, 1),
    # (2, 1)) = (-1, -1) -> (-1, -1): cos((-1, -1), (2, 1)).
    extrema2 = max(1.0, cos((-1, -1), (2, 1)))
    self.assertAlmostEqual(paper['bow_extrema'], (extrema1 + extrema2) / 2,
                           delta=1e-9)

    # Greedy, unmasked: every decoded position x every ref position (its
    # </s> included): (mean_ref max_pred S + mean_pred max_ref S) / 2.
    def greedy(pred, ref):
      s = [[cos(e[p], e[r]) for r in ref] for p in pred]
      per_ref = np.mean([max(s[i][j] for i in range(len(pred)))
                         for j in range(len(ref))])
      per_pred = np.mean([max(row) for row in s])
      return (per_ref + per_pred) / 2
    greedy1 = max(greedy(h, ['a', 'b', 'c', '</s>'])
                  for h in self.hypotheses[0])
    greedy2 = max(greedy(h, ['yes', '</s>']) for h in self.hypotheses[1])
    # Spot values: sample 1,1 matches a, b, c, </s> exactly (cos 1 each,
    # per_ref 1); its rows' maxima are 1, 1, 1, 1 and <pad>'s
    # max(cos((-1, 0), .)) = 0 (against b), so per_pred 4/5: 0.9.
    self.assertAlmostEqual(greedy(self.hypotheses[0][0],
                                  ['a', 'b', 'c', '</s>']), 0.9, delta=1e-12)
    self.assertAlmostEqual(paper['bow_greedy'], (greedy1 + greedy2) / 2,
                           delta=1e-9)

    # Distinct over the tokens before </s> (<pad> counted):
    # [a b], [], [yes], [<pad> no].
    eps = 1e-12 / 1e-5
    intra1 = ((2 / 2.00001 + eps) / 2 + (1 / 1.00001 + 2 / 2.00001) / 2) / 2
    intra2 = ((1 / 1.00001 + eps) / 2 + (eps + 1 / 1.00001) / 2) / 2
    inter1 = (2 / 2.00001 + 3 / 3.00001) / 2
    inter2 = (1 / 1.00001 + 1 / 1.00001) / 2
    for key, value in (('intra_dist1', intra1), ('intra_dist2', intra2),
                       ('inter_dist1', inter1), ('inter_dist2', inter2)):
      self.assertAlmostEqual(paper[key], value, delta=1e-11, msg=key)
    self.assertEqual(paper['avg_len'], (2 + 0 + 1 + 2) / 4)


def test_standard_mode_reads_words_paper_mode_every_token():
  """An emitted <s> or <pad> before </s>: paper counts it (the original
  counts ids), standard drops it (not a word)."""
  hypotheses = [[['yes', '<s>', '<pad>', 'no', '</s>', 'no']]]
  result = dm.score_responses(hypotheses, [['yes', 'no']])
  assert result['paper']['avg_len'] == 4
  assert result['paper']['intra_dist1'] == pytest.approx(4 / 4.00001)
  assert result['standard']['avg_len'] == 2
  assert result['standard']['distinct2'] == 1.0  # The bigram (yes, no).
  # Standard BLEU: 'yes no' is the reference itself.
  assert result['standard']['bleu_recall'] == pytest.approx(
      dm.sentence_bleu(['yes', 'no'], ['yes', 'no']))
