"""The run's metric sinks: a JSON-lines file and TensorBoard scalars.

`workdir/metrics.jsonl` holds one JSON object per line, e.g.

  {"step": 1000, "split": "valid", "nll": 101.3, "ppl": 125.0, "mi": "nan"}

Values are plain JSON numbers. JSON has no NaN or infinity, so non-finite
values are written as the strings "nan", "inf" and "-inf"; `read_metrics`
turns them back into floats. Every numeric field also goes to TensorBoard as
the scalar `<split>/<key>` under `workdir/tensorboard`, written by tensorboardX
(no TensorFlow needed); each writer has its own event file (a resumed run
adds one). Events reach the disk within `_TENSORBOARD_FLUSH_SECONDS` and at
`close`; metrics.jsonl is flushed at every `write`.

Only one process should own a `MetricLog` for a workdir (in a multi-host run,
process 0).
"""

from collections.abc import Mapping
import json
import math
import os
import time
from typing import Any

from absl import logging
import numpy as np
import tensorboardX

from twr_jax import errors
from twr_jax.core import files

SPLITS = ('train', 'valid', 'test')
_FILENAME = 'metrics.jsonl'
# tensorboardX writes events from a background thread and flushes them to
# disk this often (and at close); metrics.jsonl is written synchronously.
_TENSORBOARD_FLUSH_SECONDS = 10


def _as_number(key: str, value: Any, kinds: str = 'iuf') -> int | float:
  """Converts a scalar (NumPy, JAX or Python) to a plain Python number."""
  array = np.asarray(value)
  if array.shape or array.dtype.kind not in kinds:
    raise TypeError(f'Metric {key!r} must be a numeric scalar, got {value!r}.')
  return array.item()


def _to_json(value: int | float) -> int | float | str:
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # 'nan', 'inf' or '-inf'.
  return value


def _from_json(key: str, value: Any) -> Any:
  # Strings other than the split can only be the non-finite floats.
  if isinstance(value, str) and key != 'split':
    return float(value)
  return value


def _read_lines(path: str) -> list[str]:
  """Returns the complete lines of `path`, without their newlines.

  A crash mid-write leaves a last line with no newline. It is dropped with a
  warning; every line before it was flushed whole.
  """
  with open(path, encoding='utf-8', errors='replace') as f:
    lines = f.read().split('\n')
  partial = lines.pop()  # '' when the file ends with a newline.
  if partial:
    logging.warning(
        'Dropping the partial last line of %s (interrupted write): %.80r',
        path,
        partial,
    )
  return lines


def _parse(path: str, number: int, line: str) -> dict[str, Any]:
  try:
    return json.loads(line)
  except json.JSONDecodeError as e:
    raise errors.RunError(
        f'{path}:{number}: corrupt record {line[:80]!r} (not JSON: {e.msg});'
        ' repair or delete that line, then re-run') from e


def _rewrite(path: str, lines: list[str]) -> None:
  """Replaces `path` by `lines` atomically: readers see old or new, whole."""
  files.write_lines(path, lines)


def read_metrics(workdir: str | os.PathLike[str]) -> list[dict[str, Any]]:
  """Reads `workdir/metrics.jsonl` into a list of records, in file order."""
  path = os.path.join(workdir, _FILENAME)
  records = []
  for number, line in enumerate(_read_lines(path), 1):
    record = _parse(path, number, line)
    records.append({key: _from_json(key, v) for key, v in record.items()})
  return records


class MetricLog:
  """Appends metric records to `metrics.jsonl` and to TensorBoard.

  Attributes:
    path: the JSON-lines file, `workdir/metrics.jsonl`.
  """

  def __init__(self, workdir: str | os.PathLike[str]):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, _FILENAME)
    if os.path.exists(self.path):
      # Drop a partial line left by a crash, or the next record would be
      # appended onto it and corrupt both.
      _rewrite(self.path, _read_lines(self.path))
    self._file = open(self.path, 'a', encoding='utf-8')
    # tensorboardX names event files by the second and the host and opens
    # them with 'wb': a nanosecond suffix keeps a writer started in the same
    # second (a quick resume) from truncating the previous writer's file,
    # and keeps the files' name order their creation order (TensorBoard
    # reads them in name order and drops steps that go backwards).
    self._writer = tensorboardX.SummaryWriter(
        os.path.join(workdir, 'tensorboard'),
        flush_secs=_TENSORBOARD_FLUSH_SECONDS,
        filename_suffix=f'.{time.time_ns():020d}')

  def write(self, record: Mapping[str, Any]) -> None:
    """Writes one record and flushes both sinks.

    Args:
      record: `step` (an integer), `split` (one of `SPLITS`), and any number
        of numeric scalars (Python, NumPy or JAX).

    Raises:
      ValueError: `step` or `split` is missing, or `split` is unknown.
      TypeError: `step` is not an integer or another value is not a number.
    """
    if 'step' not in record or 'split' not in record:
      raise ValueError(f'A record needs step and split, got {list(record)}.')
    step = _as_number('step', record['step'], kinds='iu')
    split = record['split']
    if split not in SPLITS:
      raise ValueError(f'Unknown split {split!r}; expected one of {SPLITS}.')
    # Convert everything before writing anything, so a bad value cannot leave
    # half a record in one sink and none in the other.
    values = {
        key: _as_number(key, value)
        for key, value in record.items()
        if key not in ('step', 'split')
    }
    line = {'step': step, 'split': split}
    line.update((key, _to_json(value)) for key, value in values.items())
    self._file.write(json.dumps(line, allow_nan=False) + '\n')
    self._file.flush()
    for key, value in values.items():
      self._writer.add_scalar(f'{split}/{key}', value, step)
    self._writer.flush()

  def truncate_after(self, step: int) -> None:
    """Drops records with step > `step`, e.g. when resuming from `step`.

    TensorBoard event files are append-only, so they keep the dropped points;
    only `metrics.jsonl` is rewritten.

    Args:
      step: the step of the checkpoint the run resumes from.
    """
    kept = [
        line
        for number, line in enumerate(_read_lines(self.path), 1)
        if _parse(self.path, number, line)['step'] <= step
    ]
    # The append handle would keep writing to the replaced file: reopen it.
    self._file.close()
    _rewrite(self.path, kept)
    self._file = open(self.path, 'a', encoding='utf-8')

  def close(self) -> None:
    self._file.close()
    self._writer.close()

  def __enter__(self) -> 'MetricLog':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
