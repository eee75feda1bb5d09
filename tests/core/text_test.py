"""Tests for twr_jax.core.text: tokeniser, vocabulary, checked file reading."""

import pathlib
import re

import numpy as np
import pytest

from twr_jax.core import text

PTB_DIR = pathlib.Path(__file__).resolve().parents[2].parent / 'shared/data/ptb'


@pytest.mark.parametrize(
    'line, expected',
    [
        ('  Hello World  \n', ['hello', 'world']),
        # Runs of dots collapse to one, then every mark is split off.
        ('Wait... what?!', ['wait', '.', 'what', '?', '!']),
        # The space goes before a mark only, so marks glue to the next word.
        ('u.s. corp.', ['u', '.s', '.', 'corp', '.']),
        ('yes,no', ['yes', ',no']),
        # 's is split off after lowercasing, even inside a word.
        ("John'S dog's", ['john', "'s", 'dog', "'s"]),
        ("let'sgo", ['let', "'sgo"]),
        ("it 's", ['it', "'s"]),
        ('a \t b\u00a0c', ['a', 'b', 'c']),
        ('<unk> N', ['<unk>', 'n']),
    ],
)
def test_split(line, expected):
  assert text.split(line) == expected
  assert text.split(line, keep_empty=True) == expected


@pytest.mark.parametrize(
    'line, compat',
    [
        ('', ['']),
        ('   ', ['']),
        ('. hi', ['', '.', 'hi']),
        ('...', ['', '.']),
        ("'s ok", ['', "'s", 'ok']),
        ('? yes !', ['', '?', 'yes', '!']),
    ],
)
def test_split_empty_tokens(line, compat):
  assert text.split(line, keep_empty=True) == compat
  assert text.split(line) == [t for t in compat if t]


def test_vocab_order_counts_then_code_points():
  sentences = [
      ['bee', 'ant', 'cat', 'zoo'],
      ['cat', 'bee', '$'],
      ['ant', 'zoo', 'cat', 'Quo'],
  ]
  vocab = text.Vocab.build(sentences)
  # cat: 3; ant, bee, zoo: 2, in code-point order; $, Quo: 1 ('$' < 'Q').
  expected = ['cat', 'ant', 'bee', 'zoo', '$', 'Quo']
  assert vocab.tokens == list(text.SPECIALS) + expected
  assert len(vocab) == 10
  vocab = text.Vocab.build(sentences, min_count=2)
  assert vocab.tokens == list(text.SPECIALS) + expected[:4]


def test_vocab_specials_in_text_map_to_specials():
  vocab = text.Vocab.build([['<sos>', 'a', '<pad>']])
  assert vocab.tokens == list(text.SPECIALS) + ['a']
  np.testing.assert_array_equal(vocab.encode(['<sos>', 'a']), [text.BOS, 4])


def test_vocab_rejects_empty_token_and_bad_min_count():
  with pytest.raises(ValueError, match='empty-string token'):
    text.Vocab.build([text.split('. a', keep_empty=True)])
  with pytest.raises(ValueError, match='min_count'):
    text.Vocab.build([['a']], min_count=0)


def test_encode_decode_and_oov():
  vocab = text.Vocab.build([['the', 'cat'], ['the', 'dog']])
  ids = vocab.encode(['the', 'cow', 'dog'])
  assert ids.dtype == np.int32
  np.testing.assert_array_equal(ids, [4, text.UNK, 6])
  sentence = vocab.encode_sentence(['cat', 'cow'])
  assert sentence.dtype == np.int32
  np.testing.assert_array_equal(sentence, [text.BOS, 5, text.UNK, text.EOS])
  padded = np.concatenate([sentence, [text.PAD, 4, text.PAD]])
  assert vocab.decode(padded) == ['cat', '<unk0>']
  assert vocab.decode([text.BOS, 4, text.PAD, 6]) == ['the', 'dog']


def test_vocab_save_load_round_trip(tmp_path):
  vocab = text.Vocab.build([text.split("The cat's hat, the HAT.")])
  path = tmp_path / 'vocab.txt'
  vocab.save(path)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['vocab.txt']
  loaded = text.Vocab.load(path)
  assert loaded.tokens == vocab.tokens
  tokens = ['hat', "'s", 'dog']
  np.testing.assert_array_equal(loaded.encode(tokens), vocab.encode(tokens))


@pytest.mark.parametrize(
    'content, message',
    [
        ('<pad>\n<unk0>\n<sos>\n<eos>\na\nb\na\n', r':7: duplicate token .a.'),
        ('<pad>\n<unk0>\n<sos>\n<eos>\na\n\nb\n', r':6: blank line'),
        ('<pad>\n<unk0>\n<sos>\n<eos>\na b\n', r':5: .*whitespace'),
        ('<pad>\n<sos>\n<unk0>\n', r":2: expected special token '<unk0>'"),
        ('<pad>\n<unk0>\n', r':2: file ends before the special tokens'),
    ],
)
def test_vocab_load_errors_name_file_and_line(tmp_path, content, message):
  path = tmp_path / 'vocab.txt'
  path.write_text(content)
  with pytest.raises(text.DataError, match=f'^{re.escape(str(path))}{message}'):
    text.Vocab.load(path)


def test_read_lines_line_endings_and_options(tmp_path):
  path = tmp_path / 'x.txt'
  path.write_bytes(b'a b\r\nc\rd \xc3\xa9\n')
  assert text.read_lines(path) == ['a b', 'c', 'd \u00e9']
  path.write_bytes(b'3 good food\n-1\tbad  food \n')
  assert text.read_lines(path, strip_label=True) == ['good food', 'bad  food ']
  path.write_bytes(b'a\n  \nb\n')
  assert text.read_lines(path, allow_blank=True) == ['a', '  ', 'b']


@pytest.mark.parametrize(
    'content, kwargs, message',
    [
        (b'', {}, r': file is empty'),
        (b'one\n\ntwo\n', {}, r':2: line is blank'),
        (b'one\ntwo\n \t \n', {}, r':3: line is blank'),
        (b'one\ntwo\nab\xffc\n', {}, r':3: invalid UTF-8 at byte column 3'),
        (b'1 one\nx two\n', {'strip_label': True}, r":2: expected an integer"),
        (b'1 one\n2\n', {'strip_label': True}, r':2: line holds a label'),
    ],
)
def test_read_lines_errors_name_file_and_line(
    tmp_path, content, kwargs, message
):
  path = tmp_path / 'train.txt'
  path.write_bytes(content)
  with pytest.raises(text.DataError, match=f'^{re.escape(str(path))}{message}'):
    text.read_lines(path, **kwargs)


def test_read_lines_missing_file(tmp_path):
  with pytest.raises(text.DataError, match='nope.txt: file not found'):
    text.read_lines(tmp_path / 'nope.txt')


def test_read_corpus(tmp_path):
  for split in ('train', 'valid', 'test'):
    (tmp_path / f'ptb.{split}.txt').write_text(f'1 {split} line\n')
  corpus = text.read_corpus(
      tmp_path, file_pattern='ptb.{split}.txt', strip_label=True
  )
  assert corpus == {
      'train': ['train line'],
      'valid': ['valid line'],
      'test': ['test line'],
  }


def test_read_corpus_errors(tmp_path):
  with pytest.raises(text.DataError, match='data directory not found'):
    text.read_corpus(tmp_path / 'missing')
  (tmp_path / 'train.txt').write_text('a\n')
  expected = f"missing split 'valid': expected file {tmp_path / 'valid.txt'}"
  with pytest.raises(text.DataError, match=f'^{re.escape(expected)}$'):
    text.read_corpus(tmp_path)


def test_ptb_statistics():
  """The numbers of SPEC A.1, measured with the original tokeniser."""
  corpus = text.read_corpus(PTB_DIR)
  tokenized = {k: [text.split(l) for l in v] for k, v in corpus.items()}
  vocab = text.Vocab.build(tokenized['train'])
  assert len(vocab) == 9_947
  assert vocab.tokens[4:8] == ['the', '<unk>', 'n', 'of']
  expected = {
      'train': (42_068, 904_244, 82),
      'valid': (3_370, 71_645, 74),
      'test': (3_761, 80_185, 84),
  }
  for split, sentences in tokenized.items():
    lengths = [len(s) for s in sentences]
    assert (len(lengths), sum(lengths), max(lengths)) == expected[split]
    # Mikolov's PTB has a closed vocabulary: no OOV in valid or test.
    ids = np.concatenate([vocab.encode(s) for s in sentences])
    assert not np.any(ids == text.UNK), split
    # No line yields an empty token, so compat and standard modes agree.
    assert all(
        text.split(l, keep_empty=True) == s
        for l, s in zip(corpus[split], sentences)
    )
