"""What the training loop (`twr_jax.train`) needs from a task.

A task (`lm.task.LMTask`, `dialogue.task.DialogueTask`; `twr_jax.tasks`
builds the one a config names) owns its data, model, optimiser, pure train
step and evaluation; the loop owns everything else: device layout,
checkpoints, exact resume, preemption, logging and the KL schedule's table.
"""

from typing import Any, Callable, Protocol

import jax
import optax

Array = jax.Array
PRNGKey = jax.Array


class Hook(Protocol):
  """Optional extra work around the loop's steps (the lagging baseline)."""

  def before_step(self, state, step: int):
    """Runs before optimiser step `step`; returns the (new) train state."""

  def after_eval(self, state, mi: float):
    """Runs after a validation evaluation with its MI; returns the state."""


class Task(Protocol):
  """The interface the loop drives.

  Attributes:
    model: the flax module (its `apply` goes into the train state).
    train_batcher: `train_batch(step)` -> the host batch of step `step` (a
      function of (seed, step)), and `num_batches` (an epoch).
    kl_steps_per_epoch: the epoch length the KL schedule counts in.
  """

  model: Any
  train_batcher: Any
  kl_steps_per_epoch: float

  def init_params(self, key: PRNGKey) -> Any:
    """Initial parameters."""

  def optimizer(self) -> optax.GradientTransformation:
    """The optimiser (core.optim, possibly wrapped by the task)."""

  def make_train_step(self, kl_weight: Callable[[Array], Array]) -> Callable:
    """The pure step `(state, batch, key, *, axis_name)` -> (state, metric
    sums: 'loss', 'rec', 'kl', 'kl_twr', 'sentences', 'tokens', 'beta',
    'grad_norm')."""

  def evaluate(self, params, split: str, final: bool = False
               ) -> dict[str, Any]:
    """Metrics of a split ('loss' picks the best checkpoint)."""

  def train_hook(self, kl_weight: Callable[[Array], Array],
                 train_key: PRNGKey) -> Hook | None:
    """A `Hook`, or None."""
