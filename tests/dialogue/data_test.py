"""Tests for twr_jax.dialogue.data: readers, tokeniser, vocab, batches."""

import collections
import json
import pathlib

import numpy as np
import pytest

from configs import dailydialog
from configs import switchboard
from twr_jax.core import text
from twr_jax.dialogue import data as dd

DATA_DIR = pathlib.Path(__file__).resolve().parents[2].parent / 'shared/data'
SW_DIR = DATA_DIR / 'switchboard'
DD_DIR = DATA_DIR / 'dailydialog'

BATCH_KEYS = (
    'context',
    'context_lens',
    'floors',
    'num_turns',
    'response',
    'response_len',
    'weights',
    'index',
)


@pytest.fixture(scope='module')
def dd_train():
  return dd.read_dailydialog(DD_DIR / 'train.utts.txt')


@pytest.fixture(scope='module')
def dd_vocab(dd_train):
  return dd.DialogVocab.from_dialogues(dd_train)


def _toy_dialogues(num=50, max_turns=15, seed=0):
  """Random dialogues over a small word list, some turns over 40 tokens."""
  rng = np.random.default_rng(seed)
  words = ['yes', 'no', 'why', 'ok', 'the', 'cat', "don't", 'well', '...']
  dialogues = []
  for i in range(num):
    n = int(rng.integers(1, max_turns + 1))
    utts = [
        ' '.join(rng.choice(words, int(rng.integers(0, 50)))) for _ in range(n)
    ]
    callers = rng.choice(['A', 'B'], n)
    dialogues.append(dd.Dialogue.from_callers(utts, callers, f'toy:{i}'))
  return dialogues


def _reference(dialogues, vocab, batch_size, window, max_utt_len):
  """A literal port of DialogWAE's DailyDialDataLoader, without shuffling.

  `epoch_init` (grouping and (s, e) grid) and `_prepare_batch`, followed by
  the train script's `context[:, :, 1:], utt_lens - 1`, on python lists. The
  sort is stable here, as in `DialogBatcher`.

  Yields:
    (dialogue ids, context, context_lens, utt_lens, floors, response,
    response_lens) per batch, with the original's dynamic shapes.
  """
  data = []
  for d in dialogues:
    turns, floors = dd.tokenize_dialogue(d)
    data.append([(vocab.encode(t).tolist(), f) for t, f in zip(turns, floors)])
  data_lens = [len(row) for row in data]
  indexes = list(np.argsort(data_lens, kind='stable'))

  def pad_to(tokens, do_pad=True):
    if len(tokens) >= max_utt_len:
      return tokens[0 : max_utt_len - 1] + [tokens[-1]]
    elif do_pad:
      return tokens + [0] * (max_utt_len - len(tokens))
    return tokens

  for i in range(len(data) // batch_size):
    b_ids = indexes[i * batch_size : (i + 1) * batch_size]
    max_len, min_len = data_lens[b_ids[-1]], data_lens[b_ids[0]]
    num_seg = max_len - window
    if num_seg > 0:
      cut_start = [0] * (window - 2) + list(range(0, num_seg))
      cut_end = list(range(2, window)) + list(range(window, num_seg + window))
    else:
      cut_start = [0] * (max_len - 2)
      cut_end = list(range(2, max_len))
    for s_id, e_id in zip(cut_start, cut_end):
      if not s_id < min_len - 1:
        continue
      ctx, clens, ulens, floors, outs, olens = [], [], [], [], [], []
      for idx in b_ids:
        cut_row = data[idx][s_id:e_id]
        in_row, (out_utt, out_floor) = cut_row[0:-1], cut_row[-1]
        ctx.append([pad_to(utt) for utt, _ in in_row])
        ulens.append([min(len(utt), max_utt_len) for utt, _ in in_row])
        clens.append(len(cut_row) - 1)
        floors.append([int(f == out_floor) for _, f in in_row])
        out_utt = pad_to(out_utt, do_pad=False)
        outs.append(out_utt)
        olens.append(len(out_utt))
      b = len(b_ids)
      vec_context = np.zeros((b, max(clens), max_utt_len), np.int64)
      vec_utt_lens = np.ones((b, max(clens)), np.int64) + 1
      vec_floors = np.zeros((b, max(clens)), np.int64)
      vec_outs = np.zeros((b, max(olens)), np.int64)
      for r in range(b):
        vec_outs[r, : olens[r]] = outs[r]
        vec_floors[r, : clens[r]] = floors[r]
        vec_context[r, : clens[r], :] = np.array(ctx[r])
        vec_utt_lens[r, : clens[r]] = ulens[r]
      yield (
          np.array(b_ids),
          vec_context[:, :, 1:],
          np.array(clens),
          vec_utt_lens - 1,
          vec_floors,
          vec_outs,
          np.array(olens),
      )


def _assert_matches_reference(batch, ref):
  """Checks a static batch against the original's dynamic-shape arrays."""
  _, context, clens, ulens, floors, outs, olens = ref
  n, m = context.shape[1], outs.shape[1]
  np.testing.assert_array_equal(batch['num_turns'], clens)
  assert batch['num_turns'].max() == n
  np.testing.assert_array_equal(batch['context'][:, :n], context)
  assert not batch['context'][:, n:].any()
  np.testing.assert_array_equal(batch['context_lens'][:, :n], ulens)
  assert (batch['context_lens'][:, n:] == 1).all()
  np.testing.assert_array_equal(batch['floors'][:, :n], floors)
  assert not batch['floors'][:, n:].any()
  np.testing.assert_array_equal(batch['response'][:, :m], outs)
  assert not batch['response'][:, m:].any()
  np.testing.assert_array_equal(batch['response_len'], olens)


def _check_static(batch, batch_size, window, max_utt_len):
  assert tuple(batch) == BATCH_KEYS
  shapes = {
      'context': (batch_size, window - 1, max_utt_len - 1),
      'context_lens': (batch_size, window - 1),
      'floors': (batch_size, window - 1),
      'response': (batch_size, max_utt_len),
  }
  for key, value in batch.items():
    assert value.shape == shapes.get(key, (batch_size,)), key
    assert value.dtype == (np.float32 if key == 'weights' else np.int32), key


# Tokenisation.


@pytest.mark.parametrize(
    'utterance, expected',
    [
        ("I don't know...", ['I', 'don', "'", 't', 'know', '...']),
        ("n't", ['n', "'", 't']),
        ('Wait?!... ok', ['Wait', '?!...', 'ok']),
        # DailyDialog's curly apostrophe and pound sign are punctuation.
        ('it ’ s £ 330 .', ['it', '’', 's', '£', '330', '.']),
        # \w is Unicode-aware and includes digits and underscores.
        ('café naïve_x 3.5', ['café', 'naïve_x', '3', '.', '5']),
        ('(hi)-there', ['(', 'hi', ')-', 'there']),
        ('  \t a\u00a0b ', ['a', 'b']),
        # Python re semantics (nltk <= 3.9): '²' is a word character and
        # '\x1c' whitespace; nltk 3.10's `regex` engine splits 'x²' and keeps
        # '\x1c' as a token.
        ('x\u00b2 a\x1cb', ['x\u00b2', 'a', 'b']),
        ('', []),
    ],
)
def test_wordpunct(utterance, expected):
  assert dd.wordpunct(utterance) == expected


def test_tokenize_utterance_and_dialogue():
  assert dd.tokenize_utterance(' Hello, WORLD! ') == [
      '<s>',
      'hello',
      ',',
      'world',
      '!',
      '</s>',
  ]
  assert dd.tokenize_utterance('  ') == ['<s>', '</s>']
  dialogue = dd.Dialogue.alternating(['Hi .', 'Yo'])
  turns, floors = dd.tokenize_dialogue(dialogue)
  assert turns == [
      ['<s>', '<d>', '</s>'],
      ['<s>', 'hi', '.', '</s>'],
      ['<s>', 'yo', '</s>'],
  ]
  assert floors == [0, 1, 0]


# Readers.


def test_read_dailydialog_splits_on_eou(tmp_path):
  path = tmp_path / 'toy.utts.txt'
  path.write_bytes(
      b'Hi , you ! __eou__ Hello . __eou__ Bye __eou__\r\nOne __eou__   \r\n'
  )
  dialogues = dd.read_dailydialog(path)
  assert [d.utterances for d in dialogues] == [
      ('Hi , you ! ', ' Hello . ', ' Bye '),
      ('One ',),
  ]
  # Floors alternate 1, 0, 1, ... after the bod turn (which gets 0).
  assert [d.floors for d in dialogues] == [(1, 0, 1), (1,)]
  assert dialogues[1].source == f'{path}:2'


def test_read_dailydialog_real_train(dd_train):
  assert len(dd_train) == 11118
  # Line 7852, whose .act/.emotion lines have 11 labels for 12 turns, reads
  # fine because the labels are not used.
  line = dd_train[7851]
  assert len(line.utterances) == 12
  assert line.utterances[0].startswith('Sam , can we stop')
  assert line.source.endswith('train.utts.txt:7852')


def test_read_switchboard_floors(tmp_path):
  record = {
      'A': {},
      'B': {},
      'topic': '"T"',
      'prompt': 'p',
      'utts': [
          ['A', 'hi there', ['x', [0.0]]],
          ['B', 'uh-huh', ['y', []]],
          ['B', 'ok', ['y', []]],
      ],
  }
  path = tmp_path / 'toy.jsonl'
  path.write_text(json.dumps(record) + '\n')
  (dialogue,) = dd.read_switchboard(path)
  assert dialogue.utterances == ('hi there', 'uh-huh', 'ok')
  assert dialogue.floors == (0, 1, 1)  # int(caller == 'B')


def _sw_line(**changes):
  record = {
      'A': {},
      'B': {},
      'topic': 't',
      'prompt': 'p',
      'utts': [['A', 'hi', ['x', []]], ['B', 'yo', ['y', []]]],
  }
  record.update(changes)
  return json.dumps({k: v for k, v in record.items() if v is not None})


@pytest.mark.parametrize(
    'bad_line, message',
    [
        ('{"utts": [', 'invalid JSON'),
        ('[1, 2]', 'expected a JSON object, got list'),
        (_sw_line(utts=None), "key 'utts' is missing"),
        (_sw_line(topic=None), "key 'topic' is missing"),
        (_sw_line(utts='hi'), "key 'utts' is missing or not a list"),
        (_sw_line(utts=[]), "'utts' is empty"),
        (
            _sw_line(utts=[['A', 'hi', ['x', []]], ['C', 'x', ['y', []]]]),
            r'utts\[1\]',
        ),
        (_sw_line(utts=[['A', 'hi', []]]), r'utts\[0\]'),
        (_sw_line(utts=[['A', 3, []]]), r'utts\[0\] = \["A", 3'),
        (_sw_line(utts=[['A', 'hi']]), r'utts\[0\]'),
        ('', 'line is blank'),
    ],
)
def test_read_switchboard_errors_name_file_line_and_field(
    tmp_path, bad_line, message
):
  path = tmp_path / 'bad.jsonl'
  path.write_text(_sw_line() + '\n' + bad_line + '\n' + _sw_line() + '\n')
  with pytest.raises(text.DataError, match=f'bad.jsonl:2: .*{message}'):
    dd.read_switchboard(path)


@pytest.mark.parametrize(
    'bad_line, message',
    [
        ('no terminator here', 'no __eou__ turn terminator'),
        ('', 'no __eou__ turn terminator'),
        ('Hi __eou__ lost words', "text after the last __eou__: ' lost words'"),
    ],
)
def test_read_dailydialog_errors_name_file_and_line(
    tmp_path, bad_line, message
):
  path = tmp_path / 'bad.utts.txt'
  path.write_text('a __eou__ b __eou__\n' + bad_line + '\nc __eou__\n')
  with pytest.raises(text.DataError, match=f'bad.utts.txt:2: {message}'):
    dd.read_dailydialog(path)


def test_readers_reject_missing_and_invalid_files(tmp_path):
  with pytest.raises(text.DataError, match='nope.jsonl: file not found'):
    dd.read_switchboard(tmp_path / 'nope.jsonl')
  path = tmp_path / 'latin1.utts.txt'
  path.write_bytes(b'ok __eou__\ncaf\xe9 __eou__\n')
  with pytest.raises(text.DataError, match='latin1.utts.txt:2: invalid UTF-8'):
    dd.read_dailydialog(path)


# Vocabulary.


def test_vocab_ties_by_first_occurrence():
  dialogue = dd.Dialogue.alternating(['Zeta alpha', 'beta zeta alpha', 'gamma'])
  vocab = dd.DialogVocab.from_dialogues([dialogue])
  # Counts: <s> 4, </s> 4, zeta 2, alpha 2, <d> 1, beta 1, gamma 1. Equal
  # counts keep first-occurrence order (not code-point order: '</s>' < '<s>'
  # and 'alpha' < 'zeta').
  assert vocab.tokens == [
      '<pad>',
      '<unk>',
      '<s>',
      '</s>',
      'zeta',
      'alpha',
      '<d>',
      'beta',
      'gamma',
  ]
  assert (vocab.bos_id, vocab.eos_id, vocab.bod_id) == (2, 3, 6)
  small = dd.DialogVocab.from_dialogues([dialogue], max_size=5)
  assert small.tokens == vocab.tokens[:7]
  np.testing.assert_array_equal(
      small.encode(['<s>', 'beta', 'alpha', '</s>']), [2, dd.UNK, 5, 3]
  )
  with pytest.raises(ValueError, match=r"lacks the tokens \['<d>'\]"):
    dd.DialogVocab.from_dialogues([dialogue], max_size=4)


def test_vocab_real_dailydialog_train(dd_vocab):
  assert len(dd_vocab) == 10002
  assert dd_vocab.tokens[:10] == [
      '<pad>',
      '<unk>',
      '.',
      '<s>',
      '</s>',
      ',',
      'i',
      'you',
      '?',
      'the',
  ]
  assert dd_vocab.bod_id == 21


def test_vocab_encode_decode_save_load(tmp_path):
  vocab = dd.DialogVocab.from_dialogues(
      [dd.Dialogue.alternating(['a b', 'b c'])]
  )
  ids = vocab.encode(['<s>', 'a', 'zzz', 'c', '</s>', 'b'])
  assert ids.dtype == np.int32
  assert ids[2] == dd.UNK
  assert vocab.decode(np.concatenate([[dd.PAD], ids])) == ['a', '<unk>', 'c']
  path = tmp_path / 'vocab.txt'
  vocab.save(path)
  assert not path.with_name('vocab.txt.tmp').exists()
  assert dd.DialogVocab.load(path).tokens == vocab.tokens


@pytest.mark.parametrize(
    'content, message',
    [
        ('<unk>\n<pad>\n', "vocab.txt:1: expected special token '<pad>'"),
        ('<pad>\n<unk>\n<s>\n</s>\n<s>\n', 'vocab.txt:5: duplicate token'),
        ('<pad>\n<unk>\n<s>\n\n', 'vocab.txt:4: blank line'),
        ('<pad>\n<unk>\n<s>\n</s>\n', r"vocab.txt:4: .*\['<d>'\]"),
    ],
)
def test_vocab_load_errors(tmp_path, content, message):
  path = tmp_path / 'vocab.txt'
  path.write_text(content)
  with pytest.raises(text.DataError, match=message):
    dd.DialogVocab.load(path)


# Context/response extraction.


@pytest.mark.parametrize(
    'max_len, min_len, window, pairs',
    [
        (5, 5, 10, [(0, 2), (0, 3), (0, 4)]),
        (2, 2, 10, []),
        (12, 12, 10, [(0, e) for e in range(2, 11)] + [(1, 11)]),
        # Only s < L_min - 1 = 1 is kept.
        (12, 2, 10, [(0, e) for e in range(2, 11)]),
        (6, 6, 3, [(0, 2), (0, 3), (1, 4), (2, 5)]),
    ],
)
def test_context_pairs(max_len, min_len, window, pairs):
  got = dd.context_pairs(max_len, min_len, window)
  assert got.shape == (len(pairs), 2)
  assert [tuple(p) for p in got.tolist()] == pairs


def test_truncate():
  assert dd.truncate(range(39), 40) == list(range(39))
  assert dd.truncate(range(40), 40) == list(range(40))
  assert dd.truncate(range(41), 40) == list(range(39)) + [40]
  assert dd.truncate(range(100), 40) == list(range(39)) + [99]


def test_eval_examples_truncation_and_floors():
  long_text = ' '.join(f'w{i}' for i in range(50))
  dialogue = dd.Dialogue.from_callers(
      ['a', long_text, 'b c', 'd'], ['A', 'B', 'B', 'A']
  )
  vocab = dd.DialogVocab.from_dialogues([dialogue])
  examples = dd.eval_examples([dialogue], vocab, window=10, max_utt_len=40)
  # 5 turns with bod: responses are turns 1..3; the last is never a target.
  assert [ex.turn for ex in examples] == [1, 2, 3]
  assert all(ex.dialogue == 0 for ex in examples)
  # The 52-token turn keeps its first 39 tokens and `</s>`.
  long_ids = vocab.encode(dd.tokenize_utterance(long_text))
  expected = np.concatenate([long_ids[:39], [vocab.eos_id]])
  np.testing.assert_array_equal(examples[1].response, expected)
  # In the context, `<s>` is stripped: 39 tokens, still ending in `</s>`.
  np.testing.assert_array_equal(examples[2].context[2], expected[1:])
  np.testing.assert_array_equal(examples[2].context_lens, [2, 2, 39])
  np.testing.assert_array_equal(
      examples[0].context[0, :3], [vocab.bod_id, vocab.eos_id, dd.PAD]
  )
  # Floors: bod 0, A 0, B 1, B 1; 1 where the speaker is the response's.
  np.testing.assert_array_equal(examples[0].floors, [1])
  np.testing.assert_array_equal(examples[1].floors, [0, 0])
  np.testing.assert_array_equal(examples[2].floors, [0, 0, 1])


@pytest.mark.parametrize(
    'reader, path, count',
    [
        (dd.read_switchboard, SW_DIR / 'test.jsonl', 5481),
        (dd.read_switchboard, SW_DIR / 'valid.jsonl', 5165),
        (dd.read_dailydialog, DD_DIR / 'test.utts.txt', 6740),
        (dd.read_dailydialog, DD_DIR / 'valid.utts.txt', 7069),
    ],
)
def test_real_context_counts(dd_vocab, reader, path, count):
  examples = dd.eval_examples(reader(path), dd_vocab)
  assert len(examples) == count


def test_eval_batches_match_original_on_dailydialog_test(dd_vocab):
  dialogues = dd.read_dailydialog(DD_DIR / 'test.utts.txt')
  examples = dd.eval_examples(dialogues, dd_vocab)
  batches = list(dd.eval_batches(examples, dd_vocab, batch_size=1))
  # The original visits dialogues by length; key both sides by dialogue.
  by_dialogue = collections.defaultdict(list)
  for ex, batch in zip(examples, batches):
    by_dialogue[ex.dialogue].append(batch)
  refs = list(_reference(dialogues, dd_vocab, 1, 10, 40))
  assert len(refs) == len(batches) == 6740
  for ref in refs:
    batch = by_dialogue[ref[0][0]].pop(0)
    _check_static(batch, 1, 10, 40)
    _assert_matches_reference(batch, ref)


def test_eval_batches_pad_the_last_batch():
  dialogues = _toy_dialogues(num=6)
  vocab = dd.DialogVocab.from_dialogues(dialogues)
  examples = dd.eval_examples(dialogues, vocab, window=4, max_utt_len=12)
  batches = list(
      dd.eval_batches(examples, vocab, batch_size=8, window=4, max_utt_len=12)
  )
  assert len(batches) == -(-len(examples) // 8)
  for batch in batches:
    _check_static(batch, 8, 4, 12)
  real = np.concatenate([b['index'][b['weights'] == 1] for b in batches])
  np.testing.assert_array_equal(real, np.arange(len(examples)))
  last, k = batches[-1], len(examples) % 8 or 8
  np.testing.assert_array_equal(last['weights'][:k], 1)
  # Padding rows: one empty context turn, response `<s> </s>`, weight 0.
  pad = {key: value[k:] for key, value in last.items()}
  assert not pad['weights'].any() and not pad['index'].any()
  assert (pad['num_turns'] == 1).all() and (pad['context_lens'] == 1).all()
  assert not pad['context'].any() and not pad['floors'].any()
  assert (pad['response'][:, :2] == (vocab.bos_id, vocab.eos_id)).all()
  assert not pad['response'][:, 2:].any() and (pad['response_len'] == 2).all()


def test_make_batch_rejects_examples_that_do_not_fit():
  dialogues = [dd.Dialogue.alternating(list('abcdefg'))]
  vocab = dd.DialogVocab.from_dialogues(dialogues)
  examples = dd.eval_examples(dialogues, vocab, window=10, max_utt_len=40)
  # The last example has 6 context turns.
  with pytest.raises(ValueError, match='does not fit window=4'):
    dd.make_batch(examples[-1:], vocab, 1, window=4, max_utt_len=40)
  with pytest.raises(ValueError, match='does not fit window=10, max_utt_len=9'):
    dd.make_batch(examples[:1], vocab, 1, window=10, max_utt_len=9)
  with pytest.raises(ValueError, match='need 1 to 2 examples, got 3'):
    dd.make_batch(examples[:3], vocab, 2)


# Training batches.


@pytest.mark.parametrize('window, max_utt_len', [(4, 12), (10, 40)])
def test_training_batches_equal_the_original(window, max_utt_len):
  dialogues = _toy_dialogues(num=50)
  vocab = dd.DialogVocab.from_dialogues(dialogues)
  encoded = dd.EncodedDialogues.encode(dialogues, vocab, max_utt_len)
  batcher = dd.DialogBatcher(encoded, batch_size=8, window=window, seed=3)
  refs = list(_reference(dialogues, vocab, 8, window, max_utt_len))
  assert batcher.num_batches == len(refs)

  # One epoch holds every (group, s, e) once, in shuffled order; key both
  # sides by (group, number of context turns, response per row).
  def key(ids, num_turns, response):
    return (
        tuple(ids.tolist()),
        tuple(num_turns.tolist()),
        response.astype(np.int32).tobytes(),
    )

  expected = collections.defaultdict(list)
  for ref in refs:
    response = np.zeros((8, max_utt_len), np.int32)
    response[:, : ref[5].shape[1]] = ref[5]
    expected[key(ref[0], ref[2], response)].append(ref)
  for step in range(batcher.num_batches):
    batch = batcher.train_batch(step)
    _check_static(batch, 8, window, max_utt_len)
    assert (batch['weights'] == 1).all()
    # Batches with the same key differ at most in their context, so any of
    # them must match.
    candidates = expected[
        key(batch['index'], batch['num_turns'], batch['response'])
    ]
    for i, ref in enumerate(candidates):
      if np.array_equal(batch['context'][:, : ref[1].shape[1]], ref[1]):
        _assert_matches_reference(batch, candidates.pop(i))
        break
    else:
      pytest.fail(f'step {step}: no batch of the original matches')
  assert not any(expected.values())


def test_training_drops_the_longest_dialogues():
  dialogues = _toy_dialogues(num=50)
  vocab = dd.DialogVocab.from_dialogues(dialogues)
  encoded = dd.EncodedDialogues.encode(dialogues, vocab, 40)
  batcher = dd.DialogBatcher(encoded, batch_size=8, seed=0)
  assert (batcher.num_groups, batcher.num_dropped) == (6, 2)
  seen = set()
  for step in range(batcher.num_batches):
    seen.update(batcher.train_batch(step)['index'].tolist())
  dropped = sorted(set(range(50)) - seen)
  lengths = encoded.lengths
  assert len(dropped) == 2
  # Stable sort: the two last dialogues of length order are left out.
  np.testing.assert_array_equal(
      dropped, np.sort(np.argsort(lengths, kind='stable')[-2:])
  )
  with pytest.raises(ValueError, match='cannot fill one group of 64'):
    dd.DialogBatcher(encoded, batch_size=64)


def test_shorter_dialogues_repeat_their_last_turn():
  dialogues = [
      dd.Dialogue.alternating(['a', 'b']),
      dd.Dialogue.alternating(['c', 'd', 'e', 'f', 'g']),
  ]
  vocab = dd.DialogVocab.from_dialogues(dialogues)
  encoded = dd.EncodedDialogues.encode(dialogues, vocab, 40)
  batcher = dd.DialogBatcher(encoded, batch_size=2, seed=0)
  # L = 6, L_min = 3: (s, e) = (0, 2) .. (0, 5); the 3-turn dialogue answers
  # with its last turn 'b' for every e >= 3.
  assert batcher.num_batches == 4
  responses = sorted(
      tuple(vocab.decode(batcher.train_batch(step)['response'][:, 1]))
      for step in range(4)
  )
  assert responses == [('a', 'c'), ('b', 'd'), ('b', 'e'), ('b', 'f')]


def test_training_batches_depend_only_on_seed_and_step():
  dialogues = _toy_dialogues(num=40)
  vocab = dd.DialogVocab.from_dialogues(dialogues)
  encoded = dd.EncodedDialogues.encode(dialogues, vocab, 40)
  a = dd.DialogBatcher(encoded, batch_size=8, seed=7)
  n = a.num_batches
  steps = [0, 1, n - 1, n, 3 * n + 2, 5, 2 * n + 1]
  first = [a.train_batch(s) for s in steps]
  # A fresh batcher ("resumed") visiting the steps in another order.
  b = dd.DialogBatcher(encoded, batch_size=8, seed=7)
  for s, batch in reversed(list(zip(steps, first))):
    other = b.train_batch(s)
    for k in BATCH_KEYS:
      np.testing.assert_array_equal(other[k], batch[k])
  assert a.epoch_of(3 * n + 2) == 3

  def epoch_order(batcher, epoch):
    return [
        (
            batcher.train_batch(epoch * n + i)['index'].tobytes(),
            batcher.train_batch(epoch * n + i)['num_turns'].tobytes(),
        )
        for i in range(n)
    ]

  # Epochs are reshuffled, and the seed changes the order, but every epoch
  # holds the same batches.
  e0, e1 = epoch_order(a, 0), epoch_order(a, 1)
  other_seed = epoch_order(dd.DialogBatcher(encoded, 8, seed=8), 0)
  assert e0 != e1 and e0 != other_seed
  assert sorted(e0) == sorted(e1) == sorted(other_seed)
  with pytest.raises(ValueError, match='step must be >= 0'):
    a.train_batch(-1)


def test_epoch_visits_groups_one_after_another_shuffled_within():
  dialogues = _toy_dialogues(num=40)
  vocab = dd.DialogVocab.from_dialogues(dialogues)
  encoded = dd.EncodedDialogues.encode(dialogues, vocab, 40)
  batcher = dd.DialogBatcher(encoded, batch_size=8, seed=1)
  batches = [batcher.train_batch(s) for s in range(batcher.num_batches)]
  groups = [tuple(b['index'].tolist()) for b in batches]
  # Each group's batches are consecutive.
  runs = [g for i, g in enumerate(groups) if i == 0 or g != groups[i - 1]]
  assert len(runs) == len(set(runs)) == batcher.num_groups
  # In grid order the longest row's context only grows; the shuffle breaks
  # that in some group.
  longest = collections.defaultdict(list)
  for g, b in zip(groups, batches):
    longest[g].append(int(b['num_turns'][-1]))
  assert any(n != sorted(n) for n in longest.values())


def test_batch_size_one_training_equals_eval_examples():
  dialogues = _toy_dialogues(num=12)
  vocab = dd.DialogVocab.from_dialogues(dialogues)
  encoded = dd.EncodedDialogues.encode(dialogues, vocab, 40)
  batcher = dd.DialogBatcher(encoded, batch_size=1, seed=0)
  examples = dd.eval_examples(dialogues, vocab)
  assert batcher.num_batches == len(examples)

  def row(batch):
    return tuple(batch[k].tobytes() for k in BATCH_KEYS if k != 'index')

  train = sorted(row(batcher.train_batch(s)) for s in range(len(examples)))
  evals = sorted(row(b) for b in dd.eval_batches(examples, vocab, 1))
  assert train == evals


def test_rows_reject_bad_windows():
  dialogues = [dd.Dialogue.alternating(['a', 'b', 'c'])]
  vocab = dd.DialogVocab.from_dialogues(dialogues)
  encoded = dd.EncodedDialogues.encode(dialogues, vocab, 40)
  with pytest.raises(ValueError, match='s < length - 1'):
    encoded.rows(np.array([0]), np.array([3]), np.array([5]), 10)
  with pytest.raises(ValueError, match='longer than window - 1 = 1'):
    encoded.rows(np.array([0]), np.array([0]), np.array([3]), 2)
  with pytest.raises(ValueError, match='window must be >= 2'):
    dd.context_pairs(5, 5, 1)


def _write_tiny_corpus(folder, corpus, seed=0):
  """Small train / valid / test files of `corpus` in its own format."""
  rng = np.random.default_rng(seed)
  words = 'hi how are you fine thanks what about tea yes no ok , ?'.split()
  folder.mkdir()
  for split, n in (('train', 20), ('valid', 6), ('test', 5)):
    dialogues = [[' '.join(rng.choice(words, rng.integers(1, 9)))
                  for _ in range(rng.integers(2, 9))] for _ in range(n)]
    if corpus == 'dailydialog':
      lines = [' __eou__ '.join(turns) + ' __eou__' for turns in dialogues]
      (folder / f'{split}.utts.txt').write_text('\n'.join(lines) + '\n')
    else:
      lines = [json.dumps({
          'A': {}, 'B': {}, 'topic': 't', 'prompt': 'p',
          'utts': [[str(rng.choice(['A', 'B'])), turn, ['act', [0.0]]]
                   for turn in turns]}) for turns in dialogues]
      (folder / f'{split}.jsonl').write_text('\n'.join(lines) + '\n')


@pytest.mark.parametrize('corpus', ['dailydialog', 'switchboard'])
def test_tfds_source_gives_the_batches_of_the_files(tmp_path, corpus):
  module = {'dailydialog': dailydialog, 'switchboard': switchboard}[corpus]
  config = module.get_config('tiny')
  config.data.update(dir=str(tmp_path / 'files'), vocab_size=30, window=4,
                     max_utt_len=6)
  _write_tiny_corpus(tmp_path / 'files', corpus)
  from_files = {s: dd.read_split(config, s) for s in ('train', 'valid', 'test')}
  config.data.update(source='tfds', tfds_dir=str(tmp_path / 'tfds'))
  from_tfds = {s: dd.read_split(config, s) for s in ('train', 'valid', 'test')}
  # Read through the prepared dataset, not the files.
  assert (tmp_path / 'tfds' / dd.TFDS_NAMES[corpus] / '1.0.0').is_dir()
  assert from_tfds['train'][0].source.startswith(dd.TFDS_NAMES[corpus])
  for split, dialogues in from_files.items():
    got = from_tfds[split]
    assert [(d.utterances, d.floors) for d in got] == [
        (d.utterances, d.floors) for d in dialogues]
  vocabs = [dd.DialogVocab.from_dialogues(r['train'], 30)
            for r in (from_files, from_tfds)]
  assert vocabs[0].tokens == vocabs[1].tokens
  vocab = vocabs[0]
  batchers = [dd.DialogBatcher(dd.EncodedDialogues.encode(r['train'], vocab, 6),
                               4, 4, seed=3) for r in (from_files, from_tfds)]
  for step in range(batchers[0].num_batches + 1):
    a, b = (x.train_batch(step) for x in batchers)
    for key in BATCH_KEYS:
      np.testing.assert_array_equal(a[key], b[key])
  evals = [list(dd.eval_batches(dd.eval_examples(r['test'], vocab, 4, 6),
                                vocab, 8, window=4, max_utt_len=6))
           for r in (from_files, from_tfds)]
  assert len(evals[0]) == len(evals[1]) > 0
  for a, b in zip(*evals):
    for key in BATCH_KEYS:
      np.testing.assert_array_equal(a[key], b[key])
