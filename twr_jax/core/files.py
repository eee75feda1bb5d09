"""Atomic file writes: a reader (or a crash) sees the old file or the new one,
whole, never half of one."""

from collections.abc import Iterable
import json
import os
from typing import Any


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
  """Writes UTF-8 `text` to `path` via `path.tmp`, fsync and rename."""
  tmp = os.fspath(path) + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_json(path: str | os.PathLike[str], obj: Any, **dump_args) -> None:
  """`json.dumps(obj, indent=2, **dump_args)` written atomically."""
  write_atomic(path, json.dumps(obj, indent=2, **dump_args))


def write_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> None:
  """Writes each of `lines` followed by a newline, atomically."""
  write_atomic(path, ''.join(line + '\n' for line in lines))


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> None:
  """JSON lines: `json.dumps(row)` per row, atomically."""
  write_lines(path, (json.dumps(row) for row in rows))
