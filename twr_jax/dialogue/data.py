"""Dialogue corpora: reading, tokenising, vocabulary, context/response batches.

Reproduces the data side of TWR-VAE's dialogue code (DialogWAE's `data.py`,
SPEC B.1 and B.2), so that token ids, context windows and test-context counts
match the original on the same files:

  dialogues = read_dailydialog('../shared/data/dailydialog/train.utts.txt')
  vocab = DialogVocab.from_dialogues(dialogues)            # |V| = 10,002
  batcher = DialogBatcher(EncodedDialogues.encode(dialogues, vocab), 96,
                          seed=1111)
  batch = batcher.train_batch(step)
  test = eval_examples(read_dailydialog('.../test.utts.txt'), vocab)
  for batch in eval_batches(test, vocab, batch_size=1): ...

A batch is a dict of NumPy arrays of static shape (W = `window`, U =
`max_utt_len`):

  context:      <int32>[B, W-1, U-1]  context turns without `<s>` (ending in
                                      `</s>`), left-aligned, PAD-padded.
  context_lens: <int32>[B, W-1]       tokens per context turn; 1 for empty
                                      slots, as in the original.
  floors:       <int32>[B, W-1]       1 if the turn's speaker is the
                                      response's speaker, else 0 (and 0 for
                                      empty slots).
  num_turns:    <int32>[B]            context turns (>= 1).
  response:     <int32>[B, U]         `<s> ... </s>`, PAD-padded.
  response_len: <int32>[B]            tokens of the response, `<s>`/`</s>` in.
  weights:      <float32>[B]          1 for real rows, 0 for padding rows.
  index:        <int32>[B]            evaluation: the example's position in
                                      its list; training: the dialogue's
                                      position in its split (0 for padding).

The original pads the context to the batch's longest context and the response
to the batch's longest response; slicing `[:, :num_turns.max()]` and
`[:, :response_len.max()]` gives back its arrays exactly. Padding rows (only in
the last evaluation batch) have one empty context turn and the response
`<s> </s>`, so no row is empty.
"""

import collections
from collections.abc import Iterable, Iterator, Sequence
import dataclasses
import os
import re

from absl import logging
import jax
import ml_collections
import numpy as np

from twr_jax import errors
from twr_jax.core import text
from twr_jax.dialogue import corpora

PAD_TOKEN, UNK_TOKEN = '<pad>', '<unk>'
SPECIALS = (PAD_TOKEN, UNK_TOKEN)
PAD, UNK = 0, 1
BOS_TOKEN, EOS_TOKEN, BOD_TOKEN = '<s>', '</s>', '<d>'
# The turn that starts every dialogue ("beginning of dialogue"), floor 0.
BOD_TURN = (BOS_TOKEN, BOD_TOKEN, EOS_TOKEN)

# nltk's WordPunctTokenizer is exactly this regular expression (SPEC B.1).
_WORDPUNCT = re.compile(r'\w+|[^\w\s]+')

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Dialogue:
  """One dialogue as read from its file, before tokenisation.

  Attributes:
    utterances: the raw text of every turn, in order (no bod turn).
    floors: the speaker of every turn, 0 or 1 (the bod turn, added by
      `tokenize_dialogue`, always has floor 0).
    source: `file:line` of the dialogue, for messages.
  """

  utterances: tuple[str, ...]
  floors: tuple[int, ...]
  source: str = ''

  def __post_init__(self):
    if len(self.utterances) != len(self.floors):
      raise ValueError(
          f'{self.source}: {len(self.utterances)} utterances but'
          f' {len(self.floors)} floors'
      )
    if not self.utterances:
      raise ValueError(f'{self.source}: a dialogue needs at least one turn')
    if any(f not in (0, 1) for f in self.floors):
      raise ValueError(f'{self.source}: floors must be 0 or 1')

  @classmethod
  def from_callers(
      cls, utterances: Sequence[str], callers: Sequence[str], source: str = ''
  ) -> 'Dialogue':
    """Switchboard: floor = int(caller == 'B'), callers 'A'/'B' (SPEC B.1)."""
    return cls(tuple(utterances), tuple(int(c == 'B') for c in callers), source)

  @classmethod
  def alternating(
      cls, utterances: Sequence[str], source: str = ''
  ) -> 'Dialogue':
    """DailyDialog: floors 1, 0, 1, ... after the bod turn (SPEC B.1)."""
    return cls(
        tuple(utterances),
        tuple((i + 1) % 2 for i in range(len(utterances))),
        source,
    )


def read_switchboard(path: text.PathLike) -> list[Dialogue]:
  """Reads NeuralDialog-CVAE's `json_data/*.jsonl` (one dialogue per line).

  The format and its checks are `corpora.read_switchboard_records`' (the
  TFDS builder's too, so both accept the same files); floor = int(caller ==
  'B').

  Args:
    path: the `.jsonl` file.

  Returns:
    The dialogues in file order.

  Raises:
    text.DataError: see `corpora.read_switchboard_records`.
  """
  return [Dialogue.from_callers(r['utterances'], r['callers'], where)
          for where, r in corpora.read_switchboard_records(path)]


def read_dailydialog(path: text.PathLike) -> list[Dialogue]:
  """Reads DailyDialog's `*.utts.txt` (`corpora.read_dailydialog_records`);
  floors alternate. The `.act`/`.emotion` files are not read (the model
  does not use them), so train line 7852's turn/label mismatch in the IJCNLP
  files (12 turns, 11 labels) does not matter here.

  Args:
    path: the `.utts.txt` file.

  Returns:
    The dialogues in file order.

  Raises:
    text.DataError: see `corpora.read_dailydialog_records`.
  """
  return [Dialogue.alternating(r['utterances'], where)
          for where, r in corpora.read_dailydialog_records(path)]


def wordpunct(utterance: str) -> list[str]:
  """nltk's `WordPunctTokenizer().tokenize`: runs of word or of other chars.

  `\\w` is Unicode-aware, so `"don't"` gives `['don', "'", 't']`, `'...'` stays
  one token and `'café'` one word. The pattern is compiled with Python's `re`,
  as nltk did up to at least 3.9 (the original ran nltk of 2020). nltk 3.10
  compiles it with the `regex` package, whose `\\w` and `\\s` differ on rare
  characters (`'x²'`, `'\\x1c'`); on the Switchboard and DailyDialog files
  here both give the same tokens.
  """
  return _WORDPUNCT.findall(utterance)


def tokenize_utterance(utterance: str) -> list[str]:
  """Returns `['<s>'] + wordpunct(utterance.lower()) + ['</s>']` (SPEC B.1).

  U+FEFF (`text.BOM`) is removed first: `wordpunct` would make it a token of
  its own (it is neither `\\w` nor `\\s`), and no token may hold it. The
  file readers drop raw ones already (`text.read_lines`); this also covers a
  JSON-escaped `"\\ufeff"` and text from elsewhere.
  """
  utterance = utterance.replace(text.BOM, '').lower()
  return [BOS_TOKEN] + wordpunct(utterance) + [EOS_TOKEN]


def tokenize_dialogue(
    dialogue: Dialogue,
) -> tuple[list[list[str]], list[int]]:
  """Tokenises every turn and prepends the bod turn (SPEC B.1).

  Args:
    dialogue: the dialogue.

  Returns:
    `(turns, floors)`: `turns[0]` is `BOD_TURN` with floor 0, then one
    `<s> ... </s>` token list per utterance with its floor.
  """
  turns = [list(BOD_TURN)]
  turns += [tokenize_utterance(u) for u in dialogue.utterances]
  return turns, [0] + list(dialogue.floors)


class DialogVocab(text.Vocab):
  """Maps tokens to ids: `<pad>`=0, `<unk>`=1, then the training count order.

  `<s>`, `</s>` and `<d>` get ids by their frequency, as in the original.

  Attributes:
    tokens: the token of every id.
    bos_id: the id of `<s>`.
    eos_id: the id of `</s>`.
    bod_id: the id of `<d>`.
  """

  SPECIALS = SPECIALS
  REQUIRED = BOD_TURN
  BOS_TOKEN = BOS_TOKEN
  EOS_TOKEN = EOS_TOKEN

  @property
  def bod_id(self) -> int:
    return self._index[BOD_TOKEN]

  @classmethod
  def build(
      cls, turns: Iterable[Sequence[str]], max_size: int = 10000
  ) -> 'DialogVocab':
    """Builds the vocabulary of the training turns (SPEC B.1).

    `Counter(all tokens).most_common()[:max_size]`: by count, descending, ties
    in order of first occurrence (the sort is stable over insertion order).

    Args:
      turns: the training turns, bod turns included, as token lists (e.g. the
        `tokenize_dialogue` turns of every training dialogue, in order).
      max_size: keep this many tokens besides `SPECIALS`. Tokens spelled
        `<pad>`/`<unk>` are not counted (the tokeniser never makes them).

    Returns:
      The vocabulary, `len(SPECIALS) + min(max_size, #distinct)` tokens.

    Raises:
      ValueError: `max_size` < 1, or the kept tokens lack `<s>`, `</s>` or
        `<d>`.
    """
    if max_size < 1:
      raise ValueError(f'max_size must be >= 1, got {max_size}')
    counts = collections.Counter()
    for turn in turns:
      counts.update(turn)
    for special in SPECIALS:
      counts.pop(special, None)
    kept = [t for t, _ in counts.most_common()[:max_size]]
    logging.info(
        'DialogVocab: %d distinct tokens, keeping %d (cut-off count %d).',
        len(counts),
        len(kept),
        counts[kept[-1]] if kept else 0,
    )
    return cls(SPECIALS + tuple(kept))

  @classmethod
  def from_dialogues(
      cls, dialogues: Iterable[Dialogue], max_size: int = 10000
  ) -> 'DialogVocab':
    """`build` over the tokenised turns (bod first) of `dialogues`."""
    return cls.build(
        (t for d in dialogues for t in tokenize_dialogue(d)[0]), max_size
    )


def truncate(ids: Sequence[int], max_utt_len: int) -> list[int]:
  """Keeps the first `max_utt_len - 1` ids and the last one if too long.

  The original's `pad_to`: an utterance of `len >= max_utt_len` becomes
  `ids[:max_utt_len - 1] + [ids[-1]]`, so it still ends in `</s>`.
  """
  ids = list(ids)
  if len(ids) >= max_utt_len:
    return ids[: max_utt_len - 1] + [ids[-1]]
  return ids


def context_pairs(max_len: int, min_len: int, window: int) -> np.ndarray:
  """The (s, e) grid of a batch of dialogues (SPEC B.2).

  Each pair selects `turns[s:e]`: context `turns[s:e-1]`, response
  `turns[e-1]`.

  Args:
    max_len: turns (bod included) of the batch's longest dialogue, L.
    min_len: turns of its shortest dialogue, L_min.
    window: the context window W (`diaglen`), >= 2.

  Returns:
    `<int64>[n, 2]`, the kept (s, e) pairs in the original's order.
  """
  if window < 2:
    raise ValueError(f'window must be >= 2, got {window}')
  if max_len > window:
    starts = [0] * (window - 2) + list(range(max_len - window))
    ends = list(range(2, window)) + list(range(window, max_len))
  else:
    starts = [0] * max(max_len - 2, 0)
    ends = list(range(2, max_len))
  pairs = [(s, e) for s, e in zip(starts, ends) if s < min_len - 1]
  return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@dataclasses.dataclass(frozen=True)
class EncodedDialogues:
  """Every turn of a split, encoded, truncated and padded, in one matrix.

  Attributes:
    turns: `<int32>[T, max_utt_len]`, `<s> ... </s>` truncated with
      `truncate`, PAD-padded; the turns of dialogue d (bod first) are rows
      `offsets[d]:offsets[d + 1]`.
    turn_lens: `<int32>[T]` tokens per turn after truncation.
    floors: `<int32>[T]` the speaker floor of each turn.
    offsets: `<int64>[D + 1]` first row of each dialogue, then T.
  """

  turns: np.ndarray
  turn_lens: np.ndarray
  floors: np.ndarray
  offsets: np.ndarray

  @classmethod
  def encode(
      cls,
      dialogues: Sequence[Dialogue],
      vocab: DialogVocab,
      max_utt_len: int = 40,
  ) -> 'EncodedDialogues':
    """Tokenises, encodes and truncates `dialogues` (SPEC B.1, B.2).

    Args:
      dialogues: one split.
      vocab: the training vocabulary.
      max_utt_len: the longest turn, `<s>` and `</s>` included (`maxlen`),
        >= 2.

    Returns:
      The encoded split.
    """
    if max_utt_len < 2:
      raise ValueError(f'max_utt_len must be >= 2, got {max_utt_len}')
    rows, floors, offsets = [], [], [0]
    for dialogue in dialogues:
      turns, turn_floors = tokenize_dialogue(dialogue)
      rows.extend(truncate(vocab.encode(t), max_utt_len) for t in turns)
      floors.extend(turn_floors)
      offsets.append(len(rows))
    turn_lens = np.array([len(r) for r in rows], dtype=np.int32)
    matrix = np.zeros((len(rows), max_utt_len), np.int32)
    if rows:
      matrix[np.arange(max_utt_len) < turn_lens[:, None]] = np.concatenate(rows)
    return cls(
        turns=matrix,
        turn_lens=turn_lens,
        floors=np.array(floors, dtype=np.int32),
        offsets=np.array(offsets, dtype=np.int64),
    )

  @property
  def max_utt_len(self) -> int:
    return self.turns.shape[1]

  @property
  def lengths(self) -> np.ndarray:
    """`<int64>[D]` turns per dialogue, bod included."""
    return np.diff(self.offsets)

  def rows(
      self,
      dialogue_ids: np.ndarray,
      starts: np.ndarray,
      ends: np.ndarray,
      window: int,
  ) -> Batch:
    """The context/response rows of (dialogue, s, e) triples (SPEC B.2).

    A dialogue shorter than `e` is cut at its end, as in the original's
    `row[s:e]`: its last turn becomes the response.

    Args:
      dialogue_ids: `<int>[n]` dialogues.
      starts: `<int>[n]` s, each below its dialogue's length - 1.
      ends: `<int>[n]` e, each > s + 1 and <= s + window.
      window: the context window W.

    Returns:
      `context`, `context_lens`, `floors`, `num_turns`, `response`,
      `response_len` as in the module docstring, with B = n.
    """
    d = np.asarray(dialogue_ids, np.int64)
    s = np.asarray(starts, np.int64)
    lengths = self.lengths[d]
    end = np.minimum(np.asarray(ends, np.int64), lengths)
    num_turns = end - 1 - s
    if np.any(s >= lengths - 1) or np.any(num_turns < 1):
      raise ValueError('every (s, e) needs s < length - 1 and e > s + 1')
    if np.any(num_turns > window - 1):
      raise ValueError(f'a context is longer than window - 1 = {window - 1}')
    slot = np.arange(window - 1)
    valid = slot < num_turns[:, None]
    turn = np.where(valid, self.offsets[d][:, None] + s[:, None] + slot, 0)
    response_turn = self.offsets[d] + end - 1
    # `<s>` is stripped from context turns, so they are one token shorter.
    context = np.where(valid[..., None], self.turns[turn, 1:], PAD)
    context_lens = np.where(valid, self.turn_lens[turn] - 1, 1)
    same = self.floors[turn] == self.floors[response_turn][:, None]
    return {
        'context': context.astype(np.int32),
        'context_lens': context_lens.astype(np.int32),
        'floors': (valid & same).astype(np.int32),
        'num_turns': num_turns.astype(np.int32),
        'response': self.turns[response_turn],
        'response_len': self.turn_lens[response_turn],
    }


@dataclasses.dataclass(frozen=True)
class Example:
  """One evaluation context and its response (SPEC B.2).

  Attributes:
    context: `<int32>[n, max_utt_len - 1]` the n context turns, `<s>`
      stripped, PAD-padded.
    context_lens: `<int32>[n]` tokens per context turn.
    floors: `<int32>[n]` 1 where the turn's speaker is the response's.
    response: `<int32>[m]` the response `<s> ... </s>`, m <= max_utt_len.
    dialogue: the dialogue's position in its split.
    turn: the response's turn index in the dialogue (bod = 0).
  """

  context: np.ndarray
  context_lens: np.ndarray
  floors: np.ndarray
  response: np.ndarray
  dialogue: int
  turn: int


def eval_examples(
    dialogues: Sequence[Dialogue],
    vocab: DialogVocab,
    window: int = 10,
    max_utt_len: int = 40,
) -> list[Example]:
  """All test-time contexts of a split: batch size 1, L = L_min (SPEC B.2).

  A dialogue of L turns (bod included) gives L - 2 contexts, with responses
  at turns 1..L-2 (its last turn is never a response). Examples come in file
  order, then by response turn. (The original visits dialogues in
  `np.argsort(lengths)` order, whose tie order is not specified; every metric
  is a mean over contexts, so the order does not change results.)

  Args:
    dialogues: one split.
    vocab: the training vocabulary.
    window: the context window W (`diaglen`); contexts have <= W - 1 turns.
    max_utt_len: the longest turn, `<s>`/`</s>` included (`maxlen`).

  Returns:
    The examples.
  """
  encoded = EncodedDialogues.encode(dialogues, vocab, max_utt_len)
  examples = []
  for d, length in enumerate(encoded.lengths):
    pairs = context_pairs(int(length), int(length), window)
    if not len(pairs):
      continue
    rows = encoded.rows(
        np.full(len(pairs), d), pairs[:, 0], pairs[:, 1], window
    )
    for i, e in enumerate(pairs[:, 1]):
      n = rows['num_turns'][i]
      examples.append(
          Example(
              context=rows['context'][i, :n],
              context_lens=rows['context_lens'][i, :n],
              floors=rows['floors'][i, :n],
              response=rows['response'][i, : rows['response_len'][i]],
              dialogue=d,
              turn=int(e) - 1,
          )
      )
  return examples


def make_batch(
    examples: Sequence[Example],
    vocab: DialogVocab,
    batch_size: int,
    *,
    window: int = 10,
    max_utt_len: int = 40,
    index: Sequence[int] | None = None,
) -> Batch:
  """Pads up to `batch_size` examples into one static-shape batch.

  Args:
    examples: 1..batch_size examples from `eval_examples` with the same
      `window` and `max_utt_len`.
    vocab: the vocabulary (for the padding rows' `<s> </s>`).
    batch_size: rows B of the batch.
    window: the context window W.
    max_utt_len: the longest turn U.
    index: the `index` of each example; by default 0, 1, ...

  Returns:
    The batch (see the module docstring); rows past `len(examples)` are
    padding rows with weight 0.
  """
  k, w, u = len(examples), window - 1, max_utt_len
  if not 1 <= k <= batch_size:
    raise ValueError(f'need 1 to {batch_size} examples, got {k}')
  index = list(range(k)) if index is None else list(index)
  if len(index) != k:
    raise ValueError(f'{k} examples but {len(index)} indices')
  context = np.zeros((batch_size, w, u - 1), np.int32)
  context_lens = np.ones((batch_size, w), np.int32)
  floors = np.zeros((batch_size, w), np.int32)
  num_turns = np.ones(batch_size, np.int32)
  response = np.zeros((batch_size, u), np.int32)
  response[k:, :2] = (vocab.bos_id, vocab.eos_id)
  response_len = np.full(batch_size, 2, np.int32)
  for row, ex in enumerate(examples):
    n, m = len(ex.context_lens), len(ex.response)
    if n > w or ex.context.shape[1] != u - 1 or m > u:
      raise ValueError(
          f'example {index[row]} does not fit window={window},'
          f' max_utt_len={max_utt_len}: context {ex.context.shape}, response'
          f' length {m}'
      )
    context[row, :n] = ex.context
    context_lens[row, :n] = ex.context_lens
    floors[row, :n] = ex.floors
    num_turns[row] = n
    response[row, :m] = ex.response
    response_len[row] = m
  weights = np.zeros(batch_size, np.float32)
  weights[:k] = 1.0
  batch_index = np.zeros(batch_size, np.int32)
  batch_index[:k] = index
  return {
      'context': context,
      'context_lens': context_lens,
      'floors': floors,
      'num_turns': num_turns,
      'response': response,
      'response_len': response_len,
      'weights': weights,
      'index': batch_index,
  }


def eval_batches(
    examples: Sequence[Example],
    vocab: DialogVocab,
    batch_size: int,
    *,
    window: int = 10,
    max_utt_len: int = 40,
) -> Iterator[Batch]:
  """Yields `examples` in order, `batch_size` at a time, `index` = position.

  The last batch is filled up with weight-0 padding rows, so every batch has
  the same shape.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  for start in range(0, len(examples), batch_size):
    chunk = examples[start : start + batch_size]
    yield make_batch(
        chunk,
        vocab,
        batch_size,
        window=window,
        max_utt_len=max_utt_len,
        index=range(start, start + len(chunk)),
    )


class DialogBatcher:
  """The original's training batches (SPEC B.2), deterministic per step.

  Dialogues are stable-sorted by turn count and cut into groups of
  `batch_size`; the remainder, i.e. the longest dialogues, is dropped. A
  group of lengths L_min..L yields one batch per (s, e) of
  `context_pairs(L, L_min, window)`, all its dialogues in every batch (in
  length order); a dialogue shorter than e answers with its last turn. An
  epoch visits the groups in a shuffled order and each group's batches in a
  shuffled order, so `num_batches` is the same in every epoch.

  The original sorts with `np.argsort` (not stable) and shuffles with the
  global NumPy RNG; here ties keep file order and epoch e draws from
  `default_rng([seed, e])`, so a run resumed at any step sees the same
  batches as an uninterrupted one.

  Attributes:
    batch_size: rows per batch.
    window: the context window W.
    seed: seed of the training order.
    num_groups: groups of `batch_size` dialogues.
    num_dropped: dialogues left out (the longest ones).
    num_batches: batches per epoch.
  """

  def __init__(
      self,
      encoded: EncodedDialogues,
      batch_size: int = 96,
      window: int = 10,
      seed: int = 0,
  ):
    """Groups the dialogues and lists each group's (s, e) grid.

    Args:
      encoded: the training split.
      batch_size: dialogues per group and rows per batch, >= 1.
      window: the context window W, >= 2.
      seed: seed of the training order, >= 0.

    Raises:
      ValueError: an argument is out of range, or there are fewer dialogues
        than `batch_size`, or no group yields a batch.
    """
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    if window < 2:
      raise ValueError(f'window must be >= 2, got {window}')
    if seed < 0:
      raise ValueError(f'seed must be >= 0, got {seed}')
    lengths = encoded.lengths
    self.num_groups = len(lengths) // batch_size
    if not self.num_groups:
      raise errors.ConfigError(
          f'{len(lengths)} dialogues cannot fill one group of {batch_size}:'
          ' lower the batch size (config.train.batch_size)'
      )
    self.batch_size = batch_size
    self.window = window
    self.seed = seed
    self.num_dropped = len(lengths) - self.num_groups * batch_size
    self._encoded = encoded
    order = np.argsort(lengths, kind='stable')
    self._groups = order[: self.num_groups * batch_size].reshape(
        self.num_groups, batch_size
    )
    self._grids = [
        context_pairs(int(lengths[g[-1]]), int(lengths[g[0]]), window)
        for g in self._groups
    ]
    self.num_batches = sum(len(grid) for grid in self._grids)
    if not self.num_batches:
      raise errors.DataError(
          'no group has a dialogue of more than two turns: the training'
          ' split needs dialogues of at least two turns')
    self._plan_epoch = -1
    self._plan = np.zeros((0, 3), np.int64)
    logging.info(
        'DialogBatcher: %d dialogues, %d groups of %d (%d longest dropped),'
        ' %d batches per epoch.',
        len(lengths),
        self.num_groups,
        batch_size,
        self.num_dropped,
        self.num_batches,
    )

  def epoch_of(self, step: int) -> int:
    """Returns the epoch that training step `step` belongs to."""
    return step // self.num_batches

  def _epoch_plan(self, epoch: int) -> np.ndarray:
    """`<int64>[num_batches, 3]`: (group, s, e) of every batch of `epoch`."""
    rng = np.random.default_rng([self.seed, epoch])
    plan = []
    for group in rng.permutation(self.num_groups):
      grid = self._grids[group]
      for s, e in grid[rng.permutation(len(grid))]:
        plan.append((group, s, e))
    return np.array(plan, dtype=np.int64)

  def train_batch(self, step: int) -> Batch:
    """Returns the training batch of global step `step`.

    Depends only on (seed, step). Every batch has the shapes of the module
    docstring with B = `batch_size`; all rows are real (weight 1) and `index`
    is the dialogue's position in the split.

    Args:
      step: the global training step, >= 0.

    Returns:
      The batch.
    """
    if step < 0:
      raise ValueError(f'step must be >= 0, got {step}')
    epoch, position = divmod(step, self.num_batches)
    if epoch != self._plan_epoch:
      self._plan = self._epoch_plan(epoch)
      self._plan_epoch = epoch
    group, s, e = self._plan[position]
    ids = self._groups[group]
    n = len(ids)
    batch = self._encoded.rows(ids, np.full(n, s), np.full(n, e), self.window)
    batch['weights'] = np.ones(n, np.float32)
    batch['index'] = ids.astype(np.int32)
    return batch


# Packed training batches: every utterance laid end to end in lanes.
#
# A padded training batch [B, W-1, U-1] is mostly padding (DailyDialog train:
# ~16 % of the context tokens are real, and responses are padded to the
# batch's longest). `pack_batch` lays the real context turns, and separately
# the responses, end to end in lanes of U - 1 tokens (best-fit decreasing:
# ~99 % of a lane's positions are real on DailyDialog), so the utterance
# encoder, the decoder and the output layer run over real tokens only
# (`dialogue_model.packed_loss`). A lane's items never interact: the GRUs
# restart at each item's first position. The number of lanes is rounded up
# to a few sizes (`lane_buckets`), so the train step compiles a handful of
# shapes.

PACKED_ROW_FIELDS = ('context_lens', 'floors', 'num_turns', 'response_len',
                     'weights', 'index')


def pack_lanes(lengths: np.ndarray, width: int) -> tuple[np.ndarray,
                                                         np.ndarray, int]:
  """Places items end to end in lanes of `width` positions.

  Best-fit decreasing: longest item first, each into the open lane with the
  least room that still holds it, else a new lane. Deterministic.

  Args:
    lengths: `<int>[n]` item lengths, 1..width.
    width: positions per lane.

  Returns:
    (lane `<int64>[n]`, offset `<int64>[n]`: item i occupies positions
    offset[i] .. offset[i] + lengths[i] - 1 of lane lane[i]; the number of
    lanes).

  Raises:
    ValueError: a length is outside 1..width.
  """
  lengths = np.asarray(lengths, np.int64)
  if len(lengths) and (lengths.min() < 1 or lengths.max() > width):
    raise ValueError(f'item lengths must be in 1..{width}, got'
                     f' {lengths.min()}..{lengths.max()}')
  lane = np.zeros(len(lengths), np.int64)
  offset = np.zeros(len(lengths), np.int64)
  by_room = [[] for _ in range(width + 1)]  # Open lanes by free positions.
  used = []  # Positions taken in each lane.
  for i in np.argsort(-lengths, kind='stable'):
    n = int(lengths[i])
    for room in range(n, width):
      if by_room[room]:
        j = by_room[room].pop()
        break
    else:
      j = len(used)
      used.append(0)
    lane[i], offset[i] = j, used[j]
    used[j] += n
    by_room[width - used[j]].append(j)
  return lane, offset, len(used)


def lane_buckets(growth: float, multiple: int = 8,
                 limit: int = 1 << 20) -> np.ndarray:
  """Lane counts a packed batch is rounded up to: `multiple`, then each
  about `growth` times the previous one, in multiples of `multiple`."""
  if growth <= 1.0 or multiple < 1:
    raise ValueError(f'need growth > 1 and multiple >= 1, got {growth},'
                     f' {multiple}')
  sizes = [multiple]
  while sizes[-1] < limit:
    sizes.append(max(sizes[-1] + multiple,
                     -(-int(sizes[-1] * growth) // multiple) * multiple))
  return np.array(sizes)


def pack_batch(batch: Batch, shards: int = 1, *, ctx_growth: float = 1.5,
               res_growth: float = 1.15) -> Batch:
  """The packed form of a padded training batch (see above).

  Rows are split into `shards` contiguous blocks (one per device, as
  `parallel` splits a batch), each packed on its own; every lane field has
  `shards` blocks of the same number of lanes, so splitting its leading axis
  in `shards` gives each block its own rows' lanes. Positions and rows are
  local to a block.

  Args:
    batch: from `DialogBatcher.train_batch` or `make_batch` (B rows, W-1
      context slots, turns of at most U-1 tokens, responses of at most U).
    shards: blocks of rows, B divisible by it.
    ctx_growth, res_growth: ratios between the lane counts of context turns
      and of responses (`lane_buckets`). Each (context, response) pair of
      counts is one compiled shape of the train step: DailyDialog's 782
      batches of 96 have 26 pairs with the defaults, and 26 % (context) and
      9 % (responses) of lane positions past the real ones.

  Returns:
    The row fields `PACKED_ROW_FIELDS` of `batch`, and, with L_c context
    lanes and L_r response lanes per block (P = U - 1 positions per lane):
      ctx_tokens:  <int32>[shards L_c, P] context turns laid end to end,
                   PAD-padded;
      ctx_item:    <int32>[shards L_c, P] local row * (W-1) + slot of each
                   position's turn, -1 at padding;
      ctx_last:    <int32>[B, W-1] lane * P + offset of each turn's last
                   token (0 for empty slots);
      res_inputs:  <int32>[shards L_r, P] responses without their last token
                   (`<s> w_1 .. w_n`): the decoder's inputs;
      res_targets: <int32>[shards L_r, P] responses without `<s>` (`w_1 ..
                   w_n </s>`): the decoder's targets, and x, the utterance
                   the recognition net encodes;
      res_row:     <int32>[shards L_r, P] local row of each position, -1 at
                   padding;
      res_last:    <int32>[B] lane * P + offset of each response's last
                   target.

  Raises:
    ValueError: B is not divisible by `shards`.
  """
  rows, slots, width = batch['context'].shape
  if shards < 1 or rows % shards:
    raise ValueError(f'batch of {rows} rows cannot be packed in {shards}'
                     ' blocks')
  per = rows // shards
  blocks = []
  for first in range(0, rows, per):
    block = {k: v[first:first + per] for k, v in batch.items()}
    real = np.arange(slots)[None] < block['num_turns'][:, None]
    ctx = pack_lanes(block['context_lens'][real], width)
    res = pack_lanes(block['response_len'] - 1, width)
    blocks.append((block, real, ctx, res))
  num_ctx, num_res = (
      int(sizes[np.searchsorted(sizes, max(b[i][2] for b in blocks))])
      for i, sizes in ((2, lane_buckets(ctx_growth)),
                       (3, lane_buckets(res_growth))))
  out = {k: batch[k] for k in PACKED_ROW_FIELDS}
  fields = {k: [] for k in ('ctx_tokens', 'ctx_item', 'ctx_last',
                            'res_inputs', 'res_targets', 'res_row',
                            'res_last')}
  for block, real, (c_lane, c_off, _), (r_lane, r_off, _) in blocks:
    # Context turns: item (row, slot) at lane c_lane, offsets c_off...
    lens = block['context_lens'][real]
    row, slot = np.nonzero(real)
    pos = _positions(c_lane * width + c_off, lens)
    tokens = np.full((num_ctx * width,), PAD, np.int32)
    tokens[pos] = block['context'][real][np.arange(width)[None]
                                         < lens[:, None]]
    item = np.full((num_ctx * width,), -1, np.int32)
    item[pos] = np.repeat(row * slots + slot, lens)
    last = np.zeros((per, slots), np.int32)
    last[row, slot] = c_lane * width + c_off + lens - 1
    fields['ctx_tokens'].append(tokens.reshape(num_ctx, width))
    fields['ctx_item'].append(item.reshape(num_ctx, width))
    fields['ctx_last'].append(last)
    # Responses: n = response_len - 1 decoder steps each.
    n = block['response_len'] - 1
    pos = _positions(r_lane * width + r_off, n)
    keep = np.arange(width)[None] < n[:, None]
    for name, part in (('res_inputs', block['response'][:, :width]),
                       ('res_targets', block['response'][:, 1:])):
      tokens = np.full((num_res * width,), PAD, np.int32)
      tokens[pos] = part[keep]
      fields[name].append(tokens.reshape(num_res, width))
    res_row = np.full((num_res * width,), -1, np.int32)
    res_row[pos] = np.repeat(np.arange(per), n)
    fields['res_row'].append(res_row.reshape(num_res, width))
    fields['res_last'].append((r_lane * width + r_off + n - 1).astype(
        np.int32))
  out.update({k: np.concatenate(v) for k, v in fields.items()})
  return out


def _positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """Flat positions starts[i] .. starts[i] + lengths[i] - 1, item by item."""
  first = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
  return first + np.arange(int(np.sum(lengths)))


class PackedBatcher:
  """`DialogBatcher`'s batches in packed form (`pack_batch`), for `shards`
  devices; the same batches, epochs and order."""

  def __init__(self, batcher: DialogBatcher, shards: int = 1):
    self.batcher = batcher
    self.shards = shards
    self.num_batches = batcher.num_batches
    self.batch_size = batcher.batch_size

  def epoch_of(self, step: int) -> int:
    return self.batcher.epoch_of(step)

  def train_batch(self, step: int) -> Batch:
    return pack_batch(self.batcher.train_batch(step), self.shards)


READERS = {
    'switchboard': read_switchboard,
    'dailydialog': read_dailydialog,
}
FORMATS = tuple(READERS)
# Where a run's dialogues come from: `data.dir`'s files, or the TFDS dataset
# of `data.format` (`twr_jax.tfds_data`, prepared from `data.dir`'s files).
SOURCES = ('files', 'tfds')
TFDS_NAMES = {'switchboard': 'switchboard', 'dailydialog': 'daily_dialog'}
VOCAB_FILE = 'vocab.txt'


def split_path(config: ml_collections.ConfigDict, split: str) -> str:
  """The file split `split` reads (`data.splits` maps it to a file name)."""
  name = config.data.splits[split]
  return os.path.join(config.data.dir,
                      config.data.file_pattern.format(split=name))


def read_split(config: ml_collections.ConfigDict,
               split: str) -> list[Dialogue]:
  """The dialogues of one split: `data.splits[split]` names the file (or
  TFDS split) to read.

  `data.source` 'files' (the default, also for runs saved before the field
  existed) reads the file with `data.format`'s reader; 'tfds' reads the
  corpus's TFDS dataset (`tfds_data.load_dialogues`, kept in `data.tfds_dir`
  and prepared from the standard files in `data.dir`, or downloaded for
  DailyDialog when `data.dir` is empty). Both give the same dialogues for
  the same files.

  Raises:
    errors.DataError: the file is missing or malformed (naming file:line),
      or the TFDS dataset has no such split.
  """
  if config.data.get('source', 'files') == 'tfds':
    return _read_tfds_split(config, split)
  path = split_path(config, split)
  if not os.path.exists(path):
    raise errors.DataError(
        f'{path}: no such file for split {split!r} (config.data.dir ='
        f' {config.data.dir!r}, data.splits.{split} ='
        f' {config.data.splits[split]!r})')
  dialogues = READERS[config.data.format](path)
  logging.info('%s: %d dialogues from %s', split, len(dialogues), path)
  return dialogues


def _read_tfds_split(config: ml_collections.ConfigDict,
                     split: str) -> list[Dialogue]:
  """`read_split` through TFDS: its records as the file readers' Dialogues."""
  # Imported here: TFDS takes ~0.5 s to import and only this source needs it.
  from twr_jax import tfds_data  # pylint: disable=g-import-not-at-top
  d = config.data
  name, tfds_split = TFDS_NAMES[d.format], d.splits[split]
  records = tfds_data.load_dialogues(name, d.get('tfds_dir') or None,
                                     tfds_split, manual_dir=d.dir or None)
  source = lambda i: f'{name}[{tfds_split}] record {i + 1}'
  if d.format == 'switchboard':
    dialogues = [Dialogue.from_callers(r['utterances'], r['callers'],
                                       source(i))
                 for i, r in enumerate(records)]
  else:
    dialogues = [Dialogue.alternating(r['utterances'], source(i))
                 for i, r in enumerate(records)]
  logging.info('%s: %d dialogues from TFDS %s[%s]', split, len(dialogues),
               name, tfds_split)
  return dialogues


def load_vocab(config: ml_collections.ConfigDict, workdir: str | None,
               train_dialogues=None) -> DialogVocab:
  """The workdir's vocabulary, or one built from the training split.

  A built vocabulary is saved to `workdir/vocab.txt` (process 0), so that a
  resumed run and the evaluator use the same ids.
  """
  path = os.path.join(workdir, VOCAB_FILE) if workdir else None
  if path and os.path.exists(path):
    return DialogVocab.load(path)
  if train_dialogues is None:
    train_dialogues = read_split(config, 'train')
  vocab = DialogVocab.from_dialogues(
      train_dialogues, config.data.vocab_size)
  logging.info('Built vocabulary: %d entries', len(vocab))
  if path and jax.process_index() == 0:
    vocab.save(path)
  return vocab
