"""Tokeniser, vocabulary and checked reading of one-line-per-example text files.

The tokeniser and the vocabulary order reproduce TWR-VAE's
`lang_model/Corpus.py` (SPEC A.1), so that token ids and counts match the
original on the same files.
"""

import collections
from collections.abc import Iterable, Sequence
import os
import pathlib
import re
import sys

from absl import logging
import numpy as np

from twr_jax import errors
from twr_jax.core import files

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ('<pad>', '<unk0>', '<sos>', '<eos>')

PathLike = str | os.PathLike[str]

_DOTS = re.compile(r'[.]+')
_MARKS = re.compile(r"([.?!,]|'s)")
_SPACE = re.compile(r'\s+')
_LABEL = re.compile(r'[+-]?[0-9]+')

# U+FEFF: as the first character of a file, the byte-order mark that some
# editors write (bytes EF BB BF in UTF-8); anywhere else an invisible
# zero-width no-break space, typically a BOM left over from concatenating
# files. It is never part of a token (issue 13): readers drop it (see
# `read_lines`) and the tokenisers ignore it.
BOM = '\ufeff'
BOM_BYTES = BOM.encode('utf-8')


DataError = errors.DataError  # Re-exported: text.DataError is public API.


def split(line: str, keep_empty: bool = False) -> list[str]:
  """Tokenises one line the way TWR-VAE's `Corpus._split` does (SPEC A.1).

  Args:
    line: one sentence or document.
    keep_empty: keep the empty-string tokens that the original produces for an
      empty line or one that starts with `.`, `?`, `!`, `,` or `'s` (compat
      mode). By default they are dropped.

  Returns:
    The lowercased tokens, with runs of `.` collapsed and `.?!,` and `'s` split
    off the preceding word. U+FEFF (`BOM`) is removed first, so that no token
    holds it.
  """
  line = line.replace(BOM, '').strip().lower()
  line = _DOTS.sub('.', line)
  line = _MARKS.sub(r' \1', line)
  tokens = _SPACE.split(line)
  if keep_empty:
    return tokens
  return [t for t in tokens if t]


def read_lines(
    path: PathLike, *, strip_label: bool = False, allow_blank: bool = False
) -> list[str]:
  """Reads a UTF-8 file that holds one sentence or document per line.

  Lines end at `\\n`, `\\r\\n` or `\\r`, as with Python's text mode (which the
  original used), so the line numbers in errors match what editors show.

  A leading UTF-8 byte-order mark is dropped. U+FEFF anywhere else (files
  concatenated with their BOMs) is removed too, with one warning that names
  the first `file:line` and the count: it is an invisible character, never
  part of a word, and a token must not hold it (the original kept it, which
  gave both `'\\ufeffthe'` and `'the'` in its vocabulary).

  Args:
    path: the file.
    strip_label: drop a leading integer label column (He et al.'s Yelp format,
      `"<label> <text>"`).
    allow_blank: accept blank or whitespace-only lines instead of raising.

  Returns:
    The lines, without line terminators (and without the label column if
    `strip_label`).

  Raises:
    DataError: the file is missing or empty, is not UTF-8, has a blank line
      (unless `allow_blank`) or, with `strip_label`, a line without an integer
      label.
  """
  path = pathlib.Path(path)
  try:
    data = path.read_bytes()
  except FileNotFoundError:
    raise DataError(f'{path}: file not found') from None
  except IsADirectoryError:
    raise DataError(f'{path}: is a directory, expected a file') from None
  data = data.removeprefix(BOM_BYTES)
  # One search of the whole file, so that clean files pay nothing per line.
  stray_boms = BOM_BYTES in data
  first_bom, num_boms = 0, 0
  # bytes.splitlines() splits on exactly \n, \r\n and \r, like text mode.
  raw_lines = data.splitlines()
  if not raw_lines:
    raise DataError(f'{path}: file is empty')
  lines = []
  for number, raw in enumerate(raw_lines, start=1):
    try:
      line = raw.decode('utf-8')
    except UnicodeDecodeError as e:
      raise DataError(
          f'{path}:{number}: invalid UTF-8 at byte column {e.start + 1}'
          f' ({e.reason})'
      ) from None
    if stray_boms and BOM in line:
      first_bom = first_bom or number
      num_boms += line.count(BOM)
      line = line.replace(BOM, '')
    if strip_label and line.strip():
      label, *rest = line.split(None, 1)
      line = rest[0] if rest else ''
      if not _LABEL.fullmatch(label):
        raise DataError(
            f'{path}:{number}: expected an integer label as the first field,'
            f' got {label[:20]!r}'
        )
      if not line.strip() and not allow_blank:
        raise DataError(f'{path}:{number}: line holds a label but no text')
    elif not line.strip() and not allow_blank:
      raise DataError(
          f'{path}:{number}: line is blank (every line must hold one sentence'
          ' or document)'
      )
    lines.append(line)
  if num_boms:
    logging.warning(
        '%s:%d: removed %d U+FEFF (byte-order mark) characters after the'
        ' start of the file, the first on this line (files concatenated with'
        ' their BOMs?)', path, first_bom, num_boms)
  return lines


def read_corpus(
    data_dir: PathLike,
    file_pattern: str = '{split}.txt',
    splits: Sequence[str] = ('train', 'valid', 'test'),
    **read_kwargs,
) -> dict[str, list[str]]:
  """Reads the splits of a corpus with `read_lines`.

  Args:
    data_dir: directory that holds the split files.
    file_pattern: file name of a split, with a `{split}` placeholder.
    splits: the split names to read.
    **read_kwargs: passed to `read_lines` (`strip_label`, `allow_blank`).

  Returns:
    A dict from split name to its lines.

  Raises:
    DataError: the directory or a split file is missing, or a file is
      malformed (see `read_lines`).
  """
  data_dir = pathlib.Path(data_dir)
  if not data_dir.is_dir():
    raise DataError(f'{data_dir}: data directory not found')
  corpus = {}
  for name in splits:
    path = data_dir / file_pattern.format(split=name)
    if not path.is_file():
      raise DataError(f'missing split {name!r}: expected file {path}')
    corpus[name] = read_lines(path, **read_kwargs)
  return corpus


class Vocab:
  """Maps tokens to ids; ids 0-3 are `SPECIALS`, the rest follow count order.

  Subclasses (the dialogue vocabulary) change the class attributes: the
  leading special tokens, further tokens that must be present, and which
  tokens start and end a sentence.

  Attributes:
    tokens: the token of every id, `tokens[i]` is the token of id `i`.
    bos_id, eos_id: ids of the sentence start and end tokens.
  """

  SPECIALS: tuple[str, ...] = SPECIALS
  REQUIRED: tuple[str, ...] = ()
  BOS_TOKEN = SPECIALS[BOS]
  EOS_TOKEN = SPECIALS[EOS]

  def __init__(self, tokens: Sequence[str]):
    """Makes a vocabulary from its token list.

    Args:
      tokens: the token of every id; must start with `SPECIALS`, hold the
        `REQUIRED` tokens, and no duplicates and no empty token or one that
        holds whitespace or U+FEFF (`BOM`).

    Raises:
      ValueError: `tokens` breaks one of these rules.
    """
    tokens = list(tokens)
    if tuple(tokens[: len(self.SPECIALS)]) != self.SPECIALS:
      raise ValueError(f'a vocabulary must start with {self.SPECIALS}')
    index = {}
    for i, token in enumerate(tokens):
      if not token or _SPACE.search(token) or BOM in token:
        raise ValueError(
            f'id {i}: token {token!r} is empty or has whitespace or U+FEFF')
      if token in index:
        raise ValueError(f'id {i}: token {token!r} repeats id {index[token]}')
      index[token] = i
    missing = [t for t in self.REQUIRED if t not in index]
    if missing:
      raise ValueError(f'the vocabulary lacks the tokens {missing}')
    self.tokens = tokens
    self._index = index
    self.bos_id = index[self.BOS_TOKEN]
    self.eos_id = index[self.EOS_TOKEN]

  @classmethod
  def build(
      cls, tokenized_sentences: Iterable[Sequence[str]], min_count: int = 1
  ) -> 'Vocab':
    """Builds the vocabulary of the training split (SPEC A.1).

    Tokens are ordered by count, descending; ties keep code-point order (the
    original sorts alphabetically, then stable-sorts by count). Tokens spelled
    like a special (`<sos>`, ...) are not counted: they map to that special.

    Args:
      tokenized_sentences: the training sentences, as token lists.
      min_count: drop tokens seen fewer times than this (TWR-VAE's main.py uses
        1).

    Returns:
      The vocabulary.

    Raises:
      ValueError: `min_count` < 1, or an empty-string token (tokenise the
        training split with `keep_empty=False`; a vocabulary file cannot hold
        an empty token).
    """
    if min_count < 1:
      raise ValueError(f'min_count must be >= 1, got {min_count}')
    counts = collections.Counter()
    for sentence in tokenized_sentences:
      counts.update(sentence)
    if '' in counts:
      raise ValueError(
          'empty-string token in the training sentences; build the vocabulary'
          ' from split(line, keep_empty=False)'
      )
    for special in SPECIALS:
      counts.pop(special, None)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return cls(SPECIALS + tuple(t for t, c in ranked if c >= min_count))

  def __len__(self) -> int:
    return len(self.tokens)

  def encode(self, tokens: Iterable[str]) -> np.ndarray:
    """Returns the ids `<int32>[len(tokens)]` of `tokens`; OOV maps to UNK."""
    get = self._index.get
    return np.array([get(t, UNK) for t in tokens], dtype=np.int32)

  def encode_sentence(self, tokens: Sequence[str]) -> np.ndarray:
    """Returns `<int32>[len(tokens) + 2]`: BOS, the ids of `tokens`, EOS."""
    get = self._index.get
    return np.array(
        [self.bos_id] + [get(t, UNK) for t in tokens] + [self.eos_id],
        dtype=np.int32,
    )

  def decode(self, ids: Iterable[int]) -> list[str]:
    """Returns the tokens of `ids` up to the first EOS, without PAD and BOS."""
    tokens = []
    for i in ids:
      i = int(i)
      if i == self.eos_id:
        break
      if i not in (PAD, self.bos_id):
        tokens.append(self.tokens[i])
    return tokens

  def save(self, path: PathLike) -> None:
    """Writes one token per line, in id order, atomically (tmp + rename)."""
    files.write_lines(path, self.tokens)

  @classmethod
  def load(cls, path: PathLike) -> 'Vocab':
    """Reads a vocabulary written by `save`.

    Args:
      path: the vocabulary file.

    Returns:
      The vocabulary.

    Raises:
      DataError: the file is missing, empty or not UTF-8, or a line is blank,
        holds whitespace or repeats an earlier token, or the first lines are not
        `SPECIALS`.
    """
    tokens = read_lines(path, allow_blank=True)
    specials = cls.SPECIALS
    seen = {}
    for number, token in enumerate(tokens, start=1):
      if not token or _SPACE.search(token):
        raise DataError(
            f'{path}:{number}: blank line or whitespace in token {token!r}'
            ' (expected one token per line)'
        )
      if number <= len(specials) and token != specials[number - 1]:
        raise DataError(
            f'{path}:{number}: expected special token'
            f' {specials[number - 1]!r}, got {token!r}'
        )
      if token in seen:
        raise DataError(
            f'{path}:{number}: duplicate token {token!r} (first on line'
            f' {seen[token]})'
        )
      seen[token] = number
    if len(tokens) < len(specials):
      raise DataError(
          f'{path}:{len(tokens)}: file ends before the special tokens'
          f' {specials} are complete'
      )
    missing = [t for t in cls.REQUIRED if t not in seen]
    if missing:
      raise DataError(
          f'{path}:{len(tokens)}: file ends without the tokens {missing}'
      )
    return cls(tokens)


STDIN = '-'


def read_input(path: str) -> tuple[str, list[str]]:
  """(name for messages, lines) of a UTF-8 file, or of stdin for '-'."""
  if path == STDIN:
    return '<stdin>', sys.stdin.read().splitlines()
  try:
    with open(path, encoding='utf-8') as f:
      return path, f.read().splitlines()
  except FileNotFoundError:
    raise errors.DataError(f'{path}: file not found') from None
  except IsADirectoryError:
    raise errors.DataError(f'{path}: is a directory, expected a file') from None
  except UnicodeDecodeError as e:
    raise errors.DataError(f'{path}: not UTF-8 ({e.reason} at byte'
                           f' {e.start})') from None
