"""The dialogue corpora's files as records: parsing and checking (SPEC B.1).

One record per dialogue, in file order, with the `file:line` it came from.
Both ways of reading a corpus start here: the file readers
(`dialogue.data.read_switchboard`, `read_dailydialog`) and the TFDS builders
(`twr_jax.tfds_data`), so both accept the same files, with the same
messages, and give the same dialogues.
"""

import json
from typing import Any

from twr_jax.core import text

EOU = '__eou__'


def switchboard_record(dialogue: Any, where: str) -> dict[str, Any]:
  """Checks one NeuralDialog-CVAE dialogue (SPEC B.1) and makes its record:
  `topic`, `prompt`, and per utterance its `callers` entry ('A' or 'B'),
  `utterances` (the text) and `acts` entry (the dialog act)."""
  if not isinstance(dialogue, dict):
    raise text.DataError(
        f'{where}: expected a JSON object, got {type(dialogue).__name__}'
    )
  for key, kind in (('topic', str), ('prompt', str), ('utts', list)):
    if not isinstance(dialogue.get(key), kind):
      raise text.DataError(
          f'{where}: key {key!r} is missing or not a {kind.__name__}'
      )
  if not dialogue['utts']:
    raise text.DataError(f"{where}: 'utts' is empty (no turns)")
  callers, utterances, acts = [], [], []
  for i, utt in enumerate(dialogue['utts']):
    if not (
        isinstance(utt, list)
        and len(utt) == 3
        and utt[0] in ('A', 'B')
        and isinstance(utt[1], str)
        and isinstance(utt[2], list)
        and utt[2]
        and isinstance(utt[2][0], str)
    ):
      raise text.DataError(
          f'{where}: utts[{i}] = {json.dumps(utt)[:80]}: expected'
          ' ["A" or "B", text, [dialog act, sentiment]]'
      )
    callers.append(utt[0])
    utterances.append(utt[1])
    acts.append(utt[2][0])
  return {
      'topic': dialogue['topic'],
      'prompt': dialogue['prompt'],
      'callers': callers,
      'utterances': utterances,
      'acts': acts,
  }


def read_switchboard_records(
    path: text.PathLike) -> list[tuple[str, dict[str, Any]]]:
  """Parses and checks every line of NeuralDialog-CVAE's `*.jsonl`.

  Every line is a JSON object with `utts`, a non-empty list of `[caller, text,
  [dialog act, sentiment]]` with caller 'A' or 'B' and a string act, and the
  strings `topic` and `prompt`. `A` and `B` (speaker profiles) are not read.

  Returns:
    ('file:line', `switchboard_record`) per dialogue, in file order.

  Raises:
    text.DataError: the file is missing, empty or not UTF-8, a line is blank
      or not valid JSON, or a key is missing or malformed; the message names
      `file:line` and the field.
  """
  records = []
  for number, line in enumerate(text.read_lines(path), start=1):
    where = f'{path}:{number}'
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise text.DataError(
          f'{where}: invalid JSON: {e.msg} at column {e.colno}'
      ) from None
    records.append((where, switchboard_record(record, where)))
  return records


def read_dailydialog_records(
    path: text.PathLike) -> list[tuple[str, dict[str, Any]]]:
  """Parses DailyDialog's `*.utts.txt`: a dialogue per line, `__eou__`-ended.

  As in the original, a line is split on `__eou__` and the last piece (the
  remainder after the last `__eou__`) is dropped; turns keep their spaces,
  which the tokeniser ignores.

  Returns:
    ('file:line', {'utterances': the turns}) per dialogue, in file order.

  Raises:
    text.DataError: the file is missing, empty or not UTF-8, a line has no
      `__eou__`, or non-blank text follows the last `__eou__` (the original
      would drop it silently); the message names `file:line`.
  """
  records = []
  lines = text.read_lines(path, allow_blank=True)
  for number, line in enumerate(lines, start=1):
    where = f'{path}:{number}'
    *turns, rest = line.split(EOU)
    if not turns:
      raise text.DataError(
          f'{where}: no {EOU} turn terminator (every turn must end with'
          f' {EOU}): {line[:40]!r}'
      )
    if rest.strip():
      raise text.DataError(
          f'{where}: text after the last {EOU}: {rest[:40]!r} (every turn'
          f' must end with {EOU})'
      )
    records.append((where, {'utterances': turns}))
  return records
