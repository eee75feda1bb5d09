"""Files as people save them (issue 13, cases 1 and 2): byte-order marks in
every reader, and word-vector files with spaced tokens, headers, wrong
dimensions and repeated words."""

import json

from absl import logging
import numpy as np
import pytest

from twr_jax import errors
from twr_jax import tfds_data
from twr_jax.core import text
from twr_jax.dialogue import data as dialogue_data
from twr_jax.dialogue import metrics as dialogue_metrics

BOM = b'\xef\xbb\xbf'


def _write(path, data: bytes):
  path.write_bytes(data)
  return path


def _tokens_of_dialogues(dialogues):
  return [t for d in dialogues for turn in dialogue_data.tokenize_dialogue(d)[0]
          for t in turn]


# ----------------------------------------------------------------------------
# Case 1: byte-order marks.


def test_ptb_reader_drops_a_leading_bom(tmp_path):
  path = _write(tmp_path / 'train.txt', BOM + b'the cat\nthe dog\n')
  lines = text.read_lines(path)
  assert lines == ['the cat', 'the dog']
  vocab = text.Vocab.build(text.split(line) for line in lines)
  # Before: both '\ufeffthe' and 'the', each counted once.
  assert vocab.tokens[4:] == ['the', 'cat', 'dog']


def test_labelled_reader_drops_a_leading_bom(tmp_path):
  # Yelp's "<label> <text>": the BOM made the first label unreadable.
  path = _write(tmp_path / 'train.txt', BOM + b'3 good food\n1 bad\n')
  assert text.read_lines(path, strip_label=True) == ['good food', 'bad']


def test_vocab_file_with_a_bom_loads(tmp_path):
  vocab = text.Vocab.build([['a', 'b']])
  vocab.save(tmp_path / 'vocab.txt')
  data = (tmp_path / 'vocab.txt').read_bytes()
  path = _write(tmp_path / 'edited.txt', BOM + data)
  assert text.Vocab.load(path).tokens == vocab.tokens


def test_bom_inside_a_file_is_removed_with_one_warning(tmp_path, caplog):
  # Two files concatenated, each with its BOM: the second is on line 3.
  path = _write(tmp_path / 'train.txt', BOM + b'the cat\nthe dog\n'
                + BOM + b'the end\nthe' + BOM + b're\n')
  with caplog.at_level(logging.WARNING):
    lines = text.read_lines(path)
  assert lines == ['the cat', 'the dog', 'the end', 'there']
  warnings = [r.getMessage() for r in caplog.records
              if r.levelname == 'WARNING']
  assert len(warnings) == 1
  assert f'{path}:3: removed 2 U+FEFF' in warnings[0]


def test_split_never_makes_a_bom_token():
  assert text.split('\ufeffthe cat\ufeff .') == ['the', 'cat', '.']
  with pytest.raises(ValueError, match='U\\+FEFF'):
    text.Vocab(text.SPECIALS + ('\ufeffthe',))


def test_dailydialog_reader_drops_a_leading_bom(tmp_path):
  path = _write(tmp_path / 'train.utts.txt',
                BOM + b'Hi there __eou__ Hello __eou__\n')
  dialogues = dialogue_data.read_dailydialog(path)
  assert dialogues[0].utterances == ('Hi there ', ' Hello ')
  tokens = _tokens_of_dialogues(dialogues)
  assert not any('\ufeff' in t for t in tokens)
  assert 'hi' in tokens


def test_switchboard_reader_drops_a_leading_bom(tmp_path):
  record = {'topic': 't', 'prompt': 'p',
            'utts': [['A', 'hello there', ['statement', None]],
                     # A JSON-escaped U+FEFF inside an utterance.
                     ['B', '\ufeffhi', ['statement', None]]]}
  path = _write(tmp_path / 'train.jsonl',
                BOM + json.dumps(record).encode('utf-8') + b'\n')
  # Before: "invalid JSON: Unexpected UTF-8 BOM".
  dialogues = dialogue_data.read_switchboard(path)
  tokens = _tokens_of_dialogues(dialogues)
  assert 'hi' in tokens and not any('\ufeff' in t for t in tokens)


def test_tfds_builders_reuse_the_readers(tmp_path):
  # The TFDS builders read with text.read_lines and the Switchboard reader;
  # their example generators see the same lines.
  path = _write(tmp_path / 'train.utts.txt', BOM + b'a __eou__ b __eou__\n')
  builder = tfds_data.DailyDialog.__new__(tfds_data.DailyDialog)
  (example,) = list(builder._examples(path))
  assert example['utterances'] == ['a ', ' b ']


def test_references_file_drops_a_leading_bom(tmp_path):
  path = _write(tmp_path / 'refs.jsonl', BOM + b'["Hi there"]\n["ok"]\n')
  # Before: "invalid JSON: Unexpected UTF-8 BOM".
  assert dialogue_metrics.read_references(path, 2) == [
      [['hi', 'there']], [['ok']]]


def test_word_vectors_drop_a_leading_bom(tmp_path):
  path = _write(tmp_path / 'glove.txt', BOM + b'the 1 2\ncat 3 4\n')
  vectors = dialogue_metrics.load_word_vectors(path, ['the', 'cat'])
  # Before: the first line was the word '\ufeffthe', so 'the' got a random
  # vector.
  np.testing.assert_array_equal(vectors, [[1, 2], [3, 4]])
  # Two files concatenated: the second one's BOM is dropped from its token.
  path = _write(tmp_path / 'cat.txt', BOM + b'the 1 2\n' + BOM + b'cat 3 4\n')
  vectors = dialogue_metrics.load_word_vectors(path, ['the', 'cat'])
  np.testing.assert_array_equal(vectors, [[1, 2], [3, 4]])


# ----------------------------------------------------------------------------
# Case 2: word-vector files.


def test_word_vectors_tokens_with_spaces_are_skipped(tmp_path, caplog):
  # GloVe 840B has such lines; they used to abort the whole load.
  path = _write(tmp_path / 'glove.840B.txt',
                b'the 0.5 1.5 2.5\n'
                b'at name@domain.com 0.1 0.2 0.3\n'
                b'. . . 1 2 3\n'
                b'cat 4 5 6\n'
                b'caf\xc3\xa9\xc2\xa0bar 7 8 9\n')  # U+00A0 is not a field gap.
  with caplog.at_level(logging.WARNING):
    vectors = dialogue_metrics.load_word_vectors(
        path, ['the', 'cat', 'at', 'café\u00a0bar'])
  np.testing.assert_array_equal(vectors[:2], [[0.5, 1.5, 2.5], [4, 5, 6]])
  np.testing.assert_array_equal(vectors[3], [7, 8, 9])
  # 'at' has no line of its own: a random vector.
  np.testing.assert_array_equal(vectors[2],
                                np.random.RandomState(1111).randn(3) * 0.1)
  (warning,) = [r.getMessage() for r in caplog.records
                if r.levelname == 'WARNING']
  assert "2 line(s) whose token holds a space skipped" in warning
  assert "line 2, 'at name@domain.com'" in warning


def test_word_vectors_word2vec_header(tmp_path):
  path = _write(tmp_path / 'w2v.txt', b'3 2\nthe 1 2\n1 3 4\nx 5 6\n')
  vectors = dialogue_metrics.load_word_vectors(path, ['the', '1'])
  np.testing.assert_array_equal(vectors, [[1, 2], [3, 4]])
  # The header's D is the dimension: a vocabulary word with 3 values is
  # wrong even on the first vector line.
  path = _write(tmp_path / 'w2v3.txt', b'3 2\nthe 1 2 3\n')
  with pytest.raises(errors.DataError,
                     match=r"w2v3\.txt:2: 3 values for 'the', expected 2"):
    dialogue_metrics.load_word_vectors(path, ['the'])


@pytest.mark.parametrize('data, pattern', [
    # A vocabulary word followed by D + 1 numbers.
    (b'the 1 2\ncat 1 2 3\n', r"v\.txt:2: 3 values for 'cat', expected 2"),
    # Fewer than D values: a cut line (truncated download).
    (b'the 1 2\ncat 1\n', r'v\.txt:2: 1 values, expected "word v_1'),
    (b'the 1 2\ncat 1 x\n', r"v\.txt:2: non-numeric value for 'cat'"),
])
def test_word_vectors_wrong_dimension_names_file_and_line(tmp_path, data,
                                                          pattern):
  with pytest.raises(errors.DataError, match=pattern):
    dialogue_metrics.load_word_vectors(_write(tmp_path / 'v.txt', data),
                                       ['the', 'cat'])


def test_word_vectors_repeated_words_first_wins_one_warning(tmp_path, caplog):
  path = _write(tmp_path / 'v.txt',
                b'the 1 2\ncat 3 4\nthe 5 6\ncat 7 8\nthe 9 9\nzzz 0 0\n'
                b'zzz 1 1\n')
  with caplog.at_level(logging.WARNING):
    vectors = dialogue_metrics.load_word_vectors(path, ['the', 'cat'])
  np.testing.assert_array_equal(vectors, [[1, 2], [3, 4]])
  (warning,) = [r.getMessage() for r in caplog.records
                if r.levelname == 'WARNING']
  assert "3 line(s) repeating a vocabulary word skipped" in warning
  assert "line 3, 'the'" in warning


def test_word_vectors_missing_file_is_a_data_error(tmp_path):
  with pytest.raises(errors.DataError, match='nope.txt: file not found'):
    dialogue_metrics.load_word_vectors(tmp_path / 'nope.txt', ['a'])
