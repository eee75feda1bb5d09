"""Orbax checkpoints of a run: the last N, and the best by validation loss.

Two managers under `workdir/checkpoints/`: `last/` keeps the newest N steps (what
a resumed run restarts from) and `best/` keeps the single step with the lowest
validation loss (what evaluation restores by default). Orbax writes each step
into a temporary directory and renames it when complete, so a crash mid-save
leaves the previous checkpoints intact. Saves are synchronous: the states are
small, and a run that returns has everything on disk.

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


class Checkpointer:
  """Saves and restores train states of one workdir.

  Attributes:
    last: manager of the newest `keep` checkpoints.
    best: manager keeping the best checkpoint by its 'loss' metric.
  """

  def __init__(self, workdir: str | os.PathLike, keep: int = 3):
    root = os.path.join(os.fspath(workdir), 'checkpoints')
    common = dict(create=True, enable_async_checkpointing=False)
    self.last = ocp.CheckpointManager(
        os.path.join(root, 'last'),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, **common),
    )
    self.best = ocp.CheckpointManager(
        os.path.join(root, 'best'),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, best_fn=lambda m: m['loss'], best_mode='min',
            **common,
        ),
    )

  def save(self, step: int, state: Any) -> None:
    """Saves a host pytree as step `step` of the last-N set (idempotent)."""
    if step not in self.last.all_steps():
      self.last.save(step, args=ocp.args.StandardSave(_to_numpy(state)))

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

    Returns:
      (state, step), or (None, None) when there is no checkpoint.
    """
    manager = self.best if step == 'best' else self.last
    if step in (None, 'best'):
      step = manager.best_step() if step == 'best' else manager.latest_step()
      if step is None:
        return None, None
    restored = manager.restore(
        step, args=ocp.args.StandardRestore(_to_numpy(target))
    )
    return restored, step

  def close(self) -> None:
    self.last.close()
    self.best.close()


def _to_numpy(tree: Any) -> Any:
  # Orbax takes arrays, not NumPy scalars; device arrays are fetched once.
  return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


class _DropOrbaxInfo(logging.Filter):

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or (
        f'{os.sep}orbax{os.sep}' not in record.pathname)


def quiet_orbax_logging() -> None:
  """Hides Orbax's INFO lines (about 30 per save), keeping its warnings."""
  absl_logging.get_absl_handler().addFilter(_DropOrbaxInfo())
