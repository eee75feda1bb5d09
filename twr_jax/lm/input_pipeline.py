"""Encodes sentences and cuts them into length-bucketed, static-shape batches.

A batch is a dict of NumPy arrays:

  tokens:      <int32>[B, T]  BOS, ids, EOS, then PAD (0).
  lengths:     <int32>[B]     tokens per row, BOS and EOS included.
  weights:     <float32>[B]   1 for real rows, 0 for padding rows.
  index:       <int32>[B]     the row's position in its split (0 for padding).
  enc_lengths: <int32>[B]     T_b, the longest real row of the batch, in every
                              row: the original's padded length (SPEC A.2),
                              which its objective uses (model.kl_length /
                              z_length = 'padded').

T is the longest sentence of the bucket rounded up to the next boundary of
`bucket_boundaries` (a multiple of `bucket_size`; with `bucket_growth` > 1 the
boundaries grow geometrically), and B is always `batch_size`, so a jitted step
compiles once per bucket. Padding rows are `[BOS, EOS, PAD, ...]` with length 2, so no row is
empty; their weight of 0 keeps them out of every loss and metric.
"""

from collections.abc import Iterator, Sequence
import math

from absl import logging
import numpy as np

from twr_jax.core import text

Batch = dict[str, np.ndarray]
# config.data.train_order: `Batcher` ('shuffled') or `SortedBatcher`
# ('sorted', the original's order, SPEC A.2).
TRAIN_ORDERS = ('shuffled', 'sorted')


def encode_lines(
    lines: Sequence[str], vocab: text.Vocab, keep_empty: bool = False
) -> list[np.ndarray]:
  """Tokenises and encodes lines.

  Args:
    lines: one sentence per line.
    vocab: the training vocabulary.
    keep_empty: keep the tokeniser's empty-string tokens (compat mode, see
      `text.split`); they encode as UNK.

  Returns:
    One `<int32>[n_i + 2]` array per line: BOS, the ids, EOS.
  """
  return [vocab.encode_sentence(text.split(l, keep_empty)) for l in lines]


def bucket_length(n: int, bucket_size: int) -> int:
  """Returns `n` rounded up to a multiple of `bucket_size`."""
  if n < 1 or bucket_size < 1:
    raise ValueError(
        f'need n >= 1 and bucket_size >= 1, got n={n},'
        f' bucket_size={bucket_size}'
    )
  return -(-n // bucket_size) * bucket_size


def bucket_boundaries(max_len: int, bucket_size: int,
                      growth: float = 1.0) -> list[int]:
  """The padded lengths T that sentences of up to `max_len` tokens get.

  b_0 = bucket_size and b_{k+1} = the multiple of bucket_size at or above
  max(b_k + bucket_size, growth * b_k), up to the first b_k >= max_len.
  growth 1 gives every multiple of bucket_size (8, 16, 24, ...: the
  default, little padding); e.g. growth 1.5 gives 8, 16, 24, 40, 64, 96, 144,
  216: a corpus of documents up to 200 tokens compiles 8 shapes instead of 26,
  at the cost of more padding in the long buckets (at most a factor growth).

  Raises:
    ValueError: bucket_size < 1, growth < 1 or max_len < 1.
  """
  if bucket_size < 1 or max_len < 1:
    raise ValueError(f'need bucket_size >= 1 and max_len >= 1, got'
                     f' bucket_size={bucket_size}, max_len={max_len}')
  if not growth >= 1.0:
    raise ValueError(f'bucket growth must be >= 1, got {growth!r}')
  out = [bucket_size]
  while out[-1] < max_len:
    out.append(bucket_length(max(out[-1] + bucket_size,
                                 math.ceil(out[-1] * growth)), bucket_size))
  return out


class Batcher:
  """Static-shape batches of one split: shuffled for training, sorted for eval.

  Sentences are grouped by `bucket_length(len, bucket_size)`. Every batch holds
  sentences of one bucket; a bucket's last, partial batch is filled up with
  padding rows, so no sentence is dropped and every epoch has the same
  `num_batches`. `eval_batches` yields the same number of batches.

  Attributes:
    batch_size: rows per batch.
    bucket_size: the padded length T of every batch is a multiple of this.
    bucket_growth: the boundaries' growth factor (`bucket_boundaries`).
    seed: seed of the training order.
    num_batches: training batches per epoch.
    shapes: the sorted distinct T of all batches.
  """

  def __init__(
      self,
      sequences: Sequence[np.ndarray],
      batch_size: int,
      bucket_size: int,
      seed: int,
      bucket_growth: float = 1.0,
  ):
    """Groups the sequences into buckets.

    Args:
      sequences: the encoded split, each `<int>[n_i]` with `n_i >= 2` (BOS ...
        EOS, as from `encode_lines`); the position in this list is the
        example's index.
      batch_size: rows per batch, >= 1.
      bucket_size: T is rounded up to a multiple of this, >= 1.
      seed: seed of the training order, >= 0.
      bucket_growth: T is the next of `bucket_boundaries(..., bucket_size,
        bucket_growth)`; 1 (default): the next multiple of bucket_size.

    Raises:
      ValueError: an argument is out of range or a sequence is too short.
    """
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    if bucket_size < 1:
      raise ValueError(f'bucket_size must be >= 1, got {bucket_size}')
    if seed < 0:
      raise ValueError(f'seed must be >= 0, got {seed}')
    if not sequences:
      raise ValueError('no sequences to batch')
    lengths = np.array([len(s) for s in sequences], dtype=np.int32)
    if lengths.min() < 2:
      i = int(np.argmin(lengths))
      raise ValueError(
          f'sequence {i} has {lengths[i]} tokens; every sequence needs at'
          ' least BOS and EOS'
      )
    self.batch_size = batch_size
    self.bucket_size = bucket_size
    self.seed = seed
    self._lengths = lengths
    bounds = np.array(bucket_boundaries(int(lengths.max()), bucket_size,
                                        bucket_growth))
    padded = bounds[np.searchsorted(bounds, lengths)]
    self.shapes = sorted(set(padded.tolist()))

    # One [n_b, T_b] token matrix per bucket, filled in a single vectorised
    # scatter; a batch is then a row gather. Rows of a bucket are in stable
    # length order, which is what eval_batches yields.
    order = np.argsort(lengths, kind='stable')
    flat = np.concatenate([np.asarray(s, np.int32) for s in sequences])
    starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)[:-1]])
    self._buckets = []  # (T, example indices, tokens) per bucket.
    for t in self.shapes:
      idx = order[padded[order] == t]
      n = lengths[idx]
      mask = np.arange(t) < n[:, None]
      # Positions of every bucket token in `flat`, row-major like `mask`.
      src = (starts[idx][:, None] + np.arange(t))[mask]
      tokens = np.zeros((len(idx), t), np.int32)
      tokens[mask] = flat[src]
      self._buckets.append((t, idx.astype(np.int32), tokens))
    self.num_batches = sum(
        math.ceil(len(idx) / batch_size) for _, idx, _ in self._buckets
    )
    self._plan_epoch = -1
    self._plan = []
    logging.info(
        'Batcher: %d sequences, %d buckets (T = %s), batch size %d,'
        ' %d batches per epoch.',
        len(lengths),
        len(self.shapes),
        self.shapes,
        batch_size,
        self.num_batches,
    )

  def epoch_of(self, step: int) -> int:
    """Returns the epoch that training step `step` belongs to."""
    return step // self.num_batches

  def _make_batch(self, bucket: int, rows: np.ndarray) -> Batch:
    """Gathers `rows` (positions within `bucket`) and pads to batch_size."""
    t, idx, tokens = self._buckets[bucket]
    k, b = len(rows), self.batch_size
    out = np.zeros((b, t), np.int32)
    out[:k] = tokens[rows]
    out[k:, 0] = text.BOS
    out[k:, 1] = text.EOS
    lengths = np.full(b, 2, np.int32)
    lengths[:k] = self._lengths[idx[rows]]
    weights = np.zeros(b, np.float32)
    weights[:k] = 1.0
    index = np.zeros(b, np.int32)
    index[:k] = idx[rows]
    return {
        'tokens': out,
        'lengths': lengths,
        'weights': weights,
        'index': index,
        'enc_lengths': np.full(b, lengths[:k].max(), np.int32),
    }

  def _epoch_plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    """Returns the (bucket, rows) of every batch of `epoch`, in order."""
    rng = np.random.default_rng([self.seed, epoch])
    plan = []
    for bucket, (_, idx, _) in enumerate(self._buckets):
      rows = rng.permutation(len(idx))
      plan.extend(
          (bucket, rows[i : i + self.batch_size])
          for i in range(0, len(rows), self.batch_size)
      )
    return [plan[i] for i in rng.permutation(len(plan))]

  def train_batch(self, step: int) -> Batch:
    """Returns the training batch of global step `step`.

    The batch depends only on (seed, step), so a run resumed at `step` sees
    the same batches as an uninterrupted one. Epoch `e` uses
    `default_rng([seed, e])` to shuffle within every bucket and then the batch
    order.

    Args:
      step: the global training step, >= 0.

    Returns:
      The batch (see the module docstring).
    """
    if step < 0:
      raise ValueError(f'step must be >= 0, got {step}')
    epoch, position = divmod(step, self.num_batches)
    if epoch != self._plan_epoch:
      self._plan = self._epoch_plan(epoch)
      self._plan_epoch = epoch
    return self._make_batch(*self._plan[position])

  def eval_batches(self) -> Iterator[Batch]:
    """Yields every example once, in stable length order, without shuffling.

    Yields:
      `num_batches` batches (see the module docstring); the last batch of
      each bucket is filled up with padding rows.
    """
    for bucket, (_, idx, _) in enumerate(self._buckets):
      for i in range(0, len(idx), self.batch_size):
        yield self._make_batch(
            bucket, np.arange(i, min(i + self.batch_size, len(idx)))
        )


def paper_batches(sequences: Sequence[np.ndarray], batch_size: int = 64,
                  bucket_size: int = 8) -> Iterator[Batch]:
  """The original code's evaluation batches (SPEC A.2), for the paper protocol.

  The split is stable-sorted by length and cut into consecutive chunks of
  `batch_size`, so a chunk can mix lengths. The original pads each chunk to
  its longest sentence T_b and its encoder sees every sentence as T_b long;
  here arrays are padded further, to a multiple of `bucket_size` (to bound
  the compiled shapes), and `enc_lengths` (= T_b for every row) tells the
  model where the original's padded sequence ended. Positions past T_b never
  influence positions before it, so the results equal the original's.

  Yields:
    Batches as in the module docstring plus `enc_lengths` <int32>[B]; the
    last chunk is filled up with weight-0 rows.
  """
  lengths = np.array([len(s) for s in sequences], np.int32)
  order = np.argsort(lengths, kind='stable')
  for start in range(0, len(order), batch_size):
    idx = order[start : start + batch_size]
    t_b = int(lengths[idx].max())
    t = bucket_length(t_b, bucket_size)
    k = len(idx)
    tokens = np.zeros((batch_size, t), np.int32)
    tokens[k:, :2] = (text.BOS, text.EOS)
    for row, i in enumerate(idx):
      tokens[row, : lengths[i]] = sequences[i]
    batch_lengths = np.full(batch_size, 2, np.int32)
    batch_lengths[:k] = lengths[idx]
    weights = np.zeros(batch_size, np.float32)
    weights[:k] = 1.0
    index = np.zeros(batch_size, np.int32)
    index[:k] = idx
    yield {'tokens': tokens, 'lengths': batch_lengths, 'weights': weights,
           'index': index, 'enc_lengths': np.full(batch_size, t_b, np.int32)}


class SortedBatcher:
  """The original code's training order (SPEC A.2), `data.train_order='sorted'`.

  The split is stable-sorted by length and cut into consecutive batches of
  `batch_size` (`paper_batches`; the last is filled up with weight-0 rows),
  visited in the same order every epoch, without shuffling. Batches may mix
  lengths, and carry `enc_lengths` = T_b like every batch. Same interface
  as `Batcher` for training: `train_batch(step)`, `num_batches`, `shapes`.
  """

  def __init__(self, sequences: Sequence[np.ndarray], batch_size: int,
               bucket_size: int):
    if batch_size < 1 or bucket_size < 1:
      raise ValueError('batch_size and bucket_size must be >= 1, got'
                       f' {batch_size} and {bucket_size}')
    if not sequences:
      raise ValueError('no sequences to batch')
    self.batch_size = batch_size
    self._batches = list(paper_batches(sequences, batch_size, bucket_size))
    self.num_batches = len(self._batches)
    self.shapes = sorted({b['tokens'].shape[1] for b in self._batches})
    logging.info('SortedBatcher: %d sequences, %d fixed batches of %d'
                 ' (T = %s).', len(sequences), self.num_batches, batch_size,
                 self.shapes)

  def epoch_of(self, step: int) -> int:
    return step // self.num_batches

  def train_batch(self, step: int) -> Batch:
    """The batch of global step `step`: batch `step % num_batches`."""
    if step < 0:
      raise ValueError(f'step must be >= 0, got {step}')
    return {k: v.copy() for k, v in
            self._batches[step % self.num_batches].items()}
