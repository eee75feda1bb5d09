"""Tests for twr_jax.lm.input_pipeline: encoding and static-shape batches."""

import pathlib

import numpy as np
import pytest

from twr_jax.core import text
from twr_jax.lm import input_pipeline

PTB_DIR = pathlib.Path(__file__).resolve().parents[2].parent / 'shared/data/ptb'


def _sequences(num=61, max_tokens=30, seed=0):
  """Random BOS ... EOS sequences with 0..max_tokens words each."""
  rng = np.random.default_rng(seed)
  return [
      np.concatenate([[text.BOS], rng.integers(4, 50, n), [text.EOS]])
      for n in rng.integers(0, max_tokens + 1, num)
  ]


def _check_batch(batch, sequences, batcher):
  """Checks one batch's shapes, contents and padding rows."""
  tokens, lengths = batch['tokens'], batch['lengths']
  weights, index = batch['weights'], batch['index']
  b, t = tokens.shape
  assert b == batcher.batch_size and t % batcher.bucket_size == 0
  assert t in batcher.shapes and t >= lengths.max()
  assert tokens.dtype == lengths.dtype == index.dtype == np.int32
  assert weights.dtype == np.float32
  for row in range(b):
    if weights[row] == 1.0:
      seq = sequences[index[row]]
      assert lengths[row] == len(seq)
      # Every row sits in the bucket of its own length.
      assert input_pipeline.bucket_length(len(seq), batcher.bucket_size) == t
      np.testing.assert_array_equal(tokens[row, : len(seq)], seq)
      assert not tokens[row, len(seq) :].any()
    else:
      assert weights[row] == 0.0 and index[row] == 0 and lengths[row] == 2
      np.testing.assert_array_equal(tokens[row, :2], [text.BOS, text.EOS])
      assert not tokens[row, 2:].any()


def _real_indices(batches):
  return np.concatenate([b['index'][b['weights'] == 1.0] for b in batches])


def test_encode_lines():
  vocab = text.Vocab.build([['the', 'cat'], ['the', 'dog', '.']])
  encoded = input_pipeline.encode_lines(['The cat.', 'a dog'], vocab)
  assert all(e.dtype == np.int32 for e in encoded)
  # Ids: the 4, . 5, cat 6, dog 7.
  np.testing.assert_array_equal(encoded[0], [text.BOS, 4, 6, 5, text.EOS])
  np.testing.assert_array_equal(encoded[1], [text.BOS, text.UNK, 7, text.EOS])
  compat = input_pipeline.encode_lines(['. cat'], vocab, keep_empty=True)
  np.testing.assert_array_equal(compat[0], [text.BOS, text.UNK, 5, 6, text.EOS])


@pytest.mark.parametrize(
    'n, bucket_size, expected', [(1, 8, 8), (8, 8, 8), (9, 8, 16), (5, 1, 5)]
)
def test_bucket_length(n, bucket_size, expected):
  assert input_pipeline.bucket_length(n, bucket_size) == expected


@pytest.mark.parametrize('n, bucket_size', [(0, 8), (3, 0)])
def test_bucket_length_errors(n, bucket_size):
  with pytest.raises(ValueError, match='need n >= 1 and bucket_size >= 1'):
    input_pipeline.bucket_length(n, bucket_size)


@pytest.mark.parametrize('batch_size, bucket_size', [(4, 8), (7, 5), (1, 1)])
def test_shapes_and_num_batches(batch_size, bucket_size):
  sequences = _sequences()
  batcher = input_pipeline.Batcher(sequences, batch_size, bucket_size, seed=0)
  buckets = [
      input_pipeline.bucket_length(len(s), bucket_size) for s in sequences
  ]
  assert batcher.shapes == sorted(set(buckets))
  _, counts = np.unique(buckets, return_counts=True)
  assert batcher.num_batches == sum(-(-counts // batch_size))


def test_train_epochs_cover_every_sequence_once():
  sequences = _sequences()
  batcher = input_pipeline.Batcher(sequences, 4, 8, seed=3)
  n = batcher.num_batches
  epochs = []
  for epoch in range(3):
    batches = [batcher.train_batch(epoch * n + i) for i in range(n)]
    for batch in batches:
      _check_batch(batch, sequences, batcher)
    indices = _real_indices(batches)
    np.testing.assert_array_equal(np.sort(indices), np.arange(len(sequences)))
    epochs.append(indices)
    assert batcher.epoch_of(epoch * n + n - 1) == epoch
  # Padding rows exist: some buckets do not divide by the batch size.
  assert sum(b['weights'].sum() for b in batches) < n * 4
  # Batches of all buckets are shuffled together, not run bucket by bucket.
  shapes = [b['tokens'].shape[1] for b in batches]
  assert shapes != sorted(shapes)
  assert not np.array_equal(epochs[0], epochs[1])
  assert not np.array_equal(epochs[1], epochs[2])


def test_train_batch_depends_only_on_seed_and_step():
  sequences = _sequences()
  batcher = input_pipeline.Batcher(sequences, 4, 8, seed=5)
  steps = [0, 1, 2 * batcher.num_batches + 3, 7, 5 * batcher.num_batches]
  # A fresh Batcher per step, as after a restart, and one shared Batcher
  # visited out of order must agree.
  for step in steps:
    fresh = input_pipeline.Batcher(sequences, 4, 8, seed=5).train_batch(step)
    shared = batcher.train_batch(step)
    assert fresh.keys() == shared.keys()
    for key in fresh:
      np.testing.assert_array_equal(fresh[key], shared[key])
  # Another seed gives another order.
  other = input_pipeline.Batcher(sequences, 4, 8, seed=6)
  steps = range(batcher.num_batches)
  assert not np.array_equal(
      np.concatenate([batcher.train_batch(i)['index'] for i in steps]),
      np.concatenate([other.train_batch(i)['index'] for i in steps]),
  )


def test_epoch_plan_is_computed_once_per_epoch(monkeypatch):
  batcher = input_pipeline.Batcher(_sequences(), 4, 8, seed=0)
  epochs = []
  make_plan = batcher._epoch_plan

  def counting_plan(epoch):
    epochs.append(epoch)
    return make_plan(epoch)

  monkeypatch.setattr(batcher, '_epoch_plan', counting_plan)
  n = batcher.num_batches
  for step in [*range(2 * n), 0]:
    batcher.train_batch(step)
  assert epochs == [0, 1, 0]


def test_eval_batches_in_length_order_once():
  sequences = _sequences()
  batcher = input_pipeline.Batcher(sequences, 4, 8, seed=0)
  batches = list(batcher.eval_batches())
  assert len(batches) == batcher.num_batches
  for batch in batches:
    _check_batch(batch, sequences, batcher)
  lengths = [len(s) for s in sequences]
  np.testing.assert_array_equal(
      _real_indices(batches), np.argsort(lengths, kind='stable')
  )
  # Shapes never decrease, and a second pass is identical (no shuffling).
  shapes = [b['tokens'].shape[1] for b in batches]
  assert shapes == sorted(shapes)
  again = list(batcher.eval_batches())
  for a, b in zip(batches, again):
    np.testing.assert_array_equal(a['tokens'], b['tokens'])


@pytest.mark.parametrize(
    'sequences, kwargs, message',
    [
        (_sequences(), {'batch_size': 0}, 'batch_size must be >= 1'),
        (_sequences(), {'bucket_size': 0}, 'bucket_size must be >= 1'),
        (_sequences(), {'seed': -1}, 'seed must be >= 0'),
        ([], {}, 'no sequences'),
        (
            [np.array([2, 5, 3]), np.array([2])],
            {},
            'sequence 1 has 1 tokens',
        ),
    ],
)
def test_batcher_errors(sequences, kwargs, message):
  args = {'batch_size': 4, 'bucket_size': 8, 'seed': 0} | kwargs
  with pytest.raises(ValueError, match=message):
    input_pipeline.Batcher(sequences, **args)


def test_train_batch_rejects_negative_step():
  batcher = input_pipeline.Batcher(_sequences(), 4, 8, seed=0)
  with pytest.raises(ValueError, match='step must be >= 0'):
    batcher.train_batch(-1)


def test_ptb_test_split_shapes():
  lines = text.read_lines(PTB_DIR / 'test.txt')
  # Token ids do not affect shapes, so the split's own vocabulary will do.
  vocab = text.Vocab.build(text.split(l) for l in lines)
  sequences = input_pipeline.encode_lines(lines, vocab)
  batcher = input_pipeline.Batcher(sequences, 64, 8, seed=0)
  # Lengths with BOS and EOS run from 3 to 86, and only the longest sentence
  # is above 72, so there is no bucket 80.
  assert batcher.shapes == [8, 16, 24, 32, 40, 48, 56, 64, 72, 88]
  batches = list(batcher.eval_batches())
  assert len(batches) == batcher.num_batches == 64
  np.testing.assert_array_equal(
      np.sort(_real_indices(batches)), np.arange(3_761)
  )
  assert sum(b['lengths'][b['weights'] == 1].sum() for b in batches) == (
      80_185 + 2 * 3_761
  )
