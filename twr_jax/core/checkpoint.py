"""Orbax checkpoints of a run: the last N, and the best by validation loss.

Two managers under `workdir/checkpoints/`: `last/` keeps the newest N steps (what
a resumed run restarts from) and `best/` keeps the single step with the lowest
validation loss (what evaluation restores by default). Orbax writes each step
into a temporary directory and renames it when complete, so a crash mid-save
leaves the previous checkpoints intact (a leftover `<step>.orbax-checkpoint-tmp-*`
folder is not a step). Saves are synchronous: the states are small, and a run
that returns has everything on disk.

Restoring checks each array's shape and dtype against the model before reading
(a changed config names the first mismatching parameter), and a damaged newest
checkpoint (missing or truncated array files) is skipped with a warning in
favour of the newest intact one.

States are saved as host NumPy pytrees (one copy, not the per-device replicas)
so that a checkpoint does not depend on the device count it was written with.
"""

import logging
import os
from typing import Any

from absl import logging as absl_logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from twr_jax import errors


class Checkpointer:
  """Saves and restores train states of one workdir.

  Attributes:
    last: manager of the newest `keep` checkpoints.
    best: manager keeping the best checkpoint by its 'loss' metric.
  """

  def __init__(self, workdir: str | os.PathLike, keep: int = 3):
    # Orbax refuses relative paths ("Checkpoint path should be absolute").
    self.workdir = os.path.abspath(os.path.expanduser(os.fspath(workdir)))
    root = os.path.join(self.workdir, 'checkpoints')
    common = dict(create=True, enable_async_checkpointing=False)
    self.damaged: list[int] = []  # Set by `restore`.
    # The handler is named so that a fresh manager can read a step's array
    # metadata (shapes, dtypes) before restoring.
    self.last = ocp.CheckpointManager(
        os.path.join(root, 'last'),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, **common),
        item_handlers=ocp.StandardCheckpointHandler(),
    )
    self.best = ocp.CheckpointManager(
        os.path.join(root, 'best'),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, best_fn=lambda m: m['loss'], best_mode='min',
            **common,
        ),
        item_handlers=ocp.StandardCheckpointHandler(),
    )

  def save(self, step: int, state: Any) -> None:
    """Saves a host pytree as step `step` of the last-N set (idempotent)."""
    if step not in self.last.all_steps():
      # Orbax returns False instead of saving when its policy declines (a
      # step not after its latest one): a run must not lose work silently.
      if not self.last.save(step, args=ocp.args.StandardSave(_to_numpy(state))):
        raise RuntimeError(f'{self.last.directory}: Orbax declined to save'
                           f' step {step} (latest {self.latest_step()}).')

  def save_best(self, step: int, state: Any, loss: float) -> bool:
    """Offers a state with its validation loss; returns True if it is best."""
    if not np.isfinite(loss):
      return False
    best = self.best_loss()
    if best is not None and loss >= best:
      return False
    if step not in self.best.all_steps():
      self.best.save(step, args=ocp.args.StandardSave(_to_numpy(state)),
                     metrics={'loss': float(loss)})
    return True

  def best_loss(self) -> float | None:
    """The validation loss of the best checkpoint so far, if any."""
    step = self.best.best_step()
    if step is None:
      return None
    return float(self.best.metrics(step)['loss'])

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def restore(self, target: Any, step: int | str | None = None):
    """Restores a state shaped like `target`.

    Args:
      target: a host pytree with the structure, shapes and dtypes to restore.
      step: an int step of the last-N set, 'best', or None for the latest.
        With None, a damaged latest checkpoint (unreadable array files) is
        skipped with a warning for the newest intact one; its step is added
        to `self.damaged` (the caller that writes may `delete_damaged()`).

    Returns:
      (state, step), or (None, None) when there is no checkpoint.

    Raises:
      errors.RunError: `step` is not a kept step (the message lists those
        that are), a checkpoint's arrays do not match `target`'s shapes or
        dtypes (it names the first mismatching path), or the asked-for
        checkpoint is damaged.
    """
    target = _to_numpy(target)
    if step is None:
      candidates = sorted(self.last.all_steps(), reverse=True)
      manager = self.last
    else:
      manager = self.best if step == 'best' else self.last
      if step == 'best':
        step = self.best.best_step()
        if step is None:
          return None, None
      elif step not in self.last.all_steps():
        raise errors.RunError(
            f'{self.workdir}: no checkpoint for step {step}; the kept steps'
            f' are {self.last.all_steps() or "none"} (checkpoints/last) and'
            f' {self.best.all_steps() or "none"} (checkpoints/best, --step=best).')
      candidates = [step]
    self.damaged = []
    for s in candidates:
      try:
        self._check_shapes(manager, s, target)
        restored = manager.restore(s, args=ocp.args.StandardRestore(target))
      except errors.RunError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        # Orbax and TensorStore raise many types (ValueError, OSError, ...)
        # for missing or truncated files.
        where = os.path.join(manager.directory, str(s))
        if step is not None:
          raise errors.RunError(
              f'{where}: checkpoint is damaged ({_first_line(e)}); restore'
              f' another step (kept: {manager.all_steps()}).') from e
        absl_logging.warning('%s: damaged checkpoint skipped (%s)', where,
                             _first_line(e))
        self.damaged.append(s)
        continue
      if self.damaged:
        absl_logging.warning('Restored step %d, the newest intact checkpoint.',
                             s)
      return restored, s
    if self.damaged:
      raise errors.RunError(
          f'{self.workdir}/checkpoints/last: every checkpoint is damaged'
          f' (steps {self.damaged}); start again in a new workdir.')
    return None, None

  def delete_damaged(self) -> None:
    """Deletes the steps `restore` found damaged, so that the resumed run can
    save those step numbers again (saving skips existing steps)."""
    for s in self.damaged:
      self.last.delete(s)
    self.damaged = []

  def _check_shapes(self, manager, step: int, target: Any) -> None:
    """Raises RunError naming the first path whose shape or dtype differs."""
    saved = manager.item_metadata(step)
    saved = getattr(saved, 'tree', saved)
    # Parameters are nested dicts in both trees, so their paths compare
    # directly (Orbax's metadata of the optimiser's namedtuples need not);
    # the optimiser state's shapes follow from the parameters'.
    flat_saved = dict(jax.tree_util.tree_flatten_with_path(
        {'params': saved['params']})[0])
    flat_target = jax.tree_util.tree_flatten_with_path(
        {'params': target['params']})[0]
    for path, want in flat_target:
      name = jax.tree_util.keystr(path)
      got = flat_saved.get(path)
      if got is None:
        problem = 'is missing from the checkpoint'
      elif tuple(got.shape) != want.shape or np.dtype(got.dtype) != want.dtype:
        problem = (f'is {np.dtype(got.dtype).name}{list(got.shape)} in the'
                   f' checkpoint, {want.dtype.name}{list(want.shape)} in the'
                   ' model')
      else:
        continue
      raise errors.RunError(
          f'{manager.directory}/{step}: parameter {name} {problem}; the'
          ' checkpoint was written with another model config (compare'
          f' {self.workdir}/config.json with this run\'s config).')
    extra = set(flat_saved) - {p for p, _ in flat_target}
    if extra:
      name = jax.tree_util.keystr(sorted(extra, key=str)[0])
      raise errors.RunError(
          f'{manager.directory}/{step}: the checkpoint has {name}, which the'
          ' model does not; it was written with another model config.')

  def close(self) -> None:
    self.last.close()
    self.best.close()


def _first_line(e: Exception) -> str:
  lines = str(e).strip().splitlines()
  return f'{type(e).__name__}: {lines[0] if lines else ""}'[:300]


def _to_numpy(tree: Any) -> Any:
  # Orbax takes arrays, not NumPy scalars; device arrays are fetched once.
  return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


class DropOrbaxInfo(logging.Filter):
  """Drops Orbax's INFO records (about 30 per save), keeps its warnings."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or (
        f'{os.sep}orbax{os.sep}' not in record.pathname)


def quiet_orbax_logging() -> None:
  """Hides Orbax's INFO lines (about 30 per save), keeping its warnings."""
  absl_logging.get_absl_handler().addFilter(DropOrbaxInfo())


def saveable(state) -> dict[str, Any]:
  """The checkpointed part of a flax `TrainState`: params, opt_state, step."""
  return dict(params=state.params, opt_state=state.opt_state, step=state.step)
