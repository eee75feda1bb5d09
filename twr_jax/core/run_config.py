"""A run's saved config: resolving its paths, and checking a resumed config.

`train_and_evaluate` calls `resolve_paths` on every config (so that a saved
`config.json` names its data wherever evaluation later runs from), and
`check_resume` before it writes anything into an existing workdir (issue 15,
"resume safety"): a resumed run continues the saved one only if everything
that shapes the model, the data or the trajectory is unchanged.
"""

import datetime
import json
import os
from typing import Any

import ml_collections

from twr_jax import errors

CONFIG_FILE = 'config.json'
CHANGES_FILE = 'config_changes.jsonl'

# Config fields that hold a file or folder path; '' means unset.
PATH_FIELDS = ('data.dir', 'data.tfds_dir', 'model.word_vectors',
               'eval.word_vectors', 'eval.references')

# Fields a resumed run may change freely. Each one only says how long to train
# or how often to log, evaluate or checkpoint, so the parameters after any
# given step are the same either way:
#   num_steps / num_epochs   the budget (the step's batch and noise depend on
#                            the step only; note that the cyclical KL
#                            schedule spreads its cycles over the budget);
#   log_every_steps, eval_every_steps, checkpoint_every_steps, keep_checkpoints
#                            cadence and retention of logs and checkpoints
#                            (which step becomes best/ can differ);
#   allow_config_change      this switch itself.
# Everything else (model, data, optimiser, seed, batch size, KL schedule,
# device layout) changes the run, and is refused without the switch.
RESUMABLE_FIELDS = frozenset({
    'train.num_steps', 'train.num_epochs', 'train.log_every_steps',
    'train.eval_every_steps', 'train.checkpoint_every_steps',
    'train.keep_checkpoints', 'train.allow_config_change',
})

_ABSENT = '<absent>'


def resolve_workdir(workdir: str | os.PathLike[str]) -> str:
  """The absolute path of a workdir (Orbax needs one), resolved once.

  Raises:
    errors.RunError: the path exists and is not a folder.
  """
  path = os.path.abspath(os.path.expanduser(os.fspath(workdir)))
  if os.path.exists(path) and not os.path.isdir(path):
    raise errors.RunError(
        f'{workdir}: is a file, not a folder; --workdir must be the folder'
        ' of a run (a new one is created, an existing one is resumed).')
  return path


def _get(config: ml_collections.ConfigDict, dotted: str):
  node = config
  for part in dotted.split('.'):
    if part not in node:
      return None
    node = node[part]
  return node


def resolve_paths(config: ml_collections.ConfigDict) -> None:
  """Makes the `PATH_FIELDS` of `config` absolute (in place; '' stays '').

  A relative path is taken from the current directory, once, when the run is
  started, so that config.json stays valid from any directory.
  """
  for dotted in PATH_FIELDS:
    value = _get(config, dotted)
    if isinstance(value, str) and value:
      section, field = dotted.split('.')
      config[section][field] = os.path.abspath(os.path.expanduser(value))


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f'{prefix}{key}.'))
    return out
  return {prefix[:-1]: tree}


def differences(saved: dict[str, Any],
                new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
  """(field, saved value, new value) for each field that differs, sorted.

  Both are JSON-ready dicts (`new` goes through JSON, so a tuple equals the
  list it was saved as); a field only one of them has shows `<absent>`.
  """
  old = _flatten(saved)
  cur = _flatten(json.loads(json.dumps(new)))
  return [(k, old.get(k, _ABSENT), cur.get(k, _ABSENT))
          for k in sorted(set(old) | set(cur))
          if old.get(k, _ABSENT) != cur.get(k, _ABSENT)]


def check_resume(config: ml_collections.ConfigDict,
                 workdir: str) -> list[tuple[str, Any, Any]]:
  """Compares `config` with `workdir/config.json`; writes nothing.

  Args:
    config: the new run's config (paths resolved).
    workdir: the run's folder.

  Returns:
    The differing fields other than `RESUMABLE_FIELDS` (empty: compatible, or
    no saved config). Non-empty only when `train.allow_config_change` is set.

  Raises:
    errors.RunError: fields outside `RESUMABLE_FIELDS` differ and
      `train.allow_config_change` is false; the message lists each as
      `field: old -> new` and says how to proceed.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return []
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise errors.RunError(f'{path}: unreadable ({e}); is {workdir!r} a'
                          ' training workdir?') from e
  # A field the saved config lacks was added to the code after the run
  # started; new fields default to the earlier behaviour, so it is not a
  # change. (The other way round, a field the code dropped, is one.)
  changed = [d for d in differences(saved, config.to_dict())
             if d[0] not in RESUMABLE_FIELDS and d[1] != _ABSENT]
  if changed and not config.train.get('allow_config_change', False):
    lines = '\n'.join(f'  {k}: {old!r} -> {new!r}' for k, old, new in changed)
    raise errors.RunError(
        f'{workdir}: this run was started with another config; these'
        f' fields differ from {path}:\n{lines}\n'
        'Nothing was changed. To start a new run, use a new --workdir. To'
        ' continue this run with the new values anyway, add'
        ' --config.train.allow_config_change=True (the change is recorded'
        f' in {CHANGES_FILE}).')
  return changed


def record_changes(workdir: str, changed: list[tuple[str, Any, Any]],
                   step: int | None) -> None:
  """Appends one JSON line describing an allowed config change."""
  record = dict(
      time=datetime.datetime.now(datetime.timezone.utc).isoformat(),
      step=step, changes={k: [old, new] for k, old, new in changed})
  with open(os.path.join(workdir, CHANGES_FILE), 'a') as f:
    f.write(json.dumps(record, default=str) + '\n')
