"""What the training loop (`twr_jax.train`) needs from a task.

A task (`lm.task.LMTask`, `dialogue.task.DialogueTask`; `twr_jax.tasks`
builds the one a config names) owns its data, model, optimiser, pure train
step and evaluation; the loop owns everything else: device layout,
checkpoints, exact resume, preemption, logging and the KL schedule's table.
"""

from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import optax

from twr_jax.core import prng

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


def make_train_step(
    loss_fn: Callable, metric_sums: Callable, kl_weight: Callable[[Array], Array],
    update_params: Callable | None = None) -> Callable:
  """The pure train step `(state, batch, key, *, axis_name)` of either task.

  The step draws each example's key (`prng.example_keys(key, index, step)`),
  beta = kl_weight(step) and the global count of real examples, takes the
  objective's gradient, and applies the optimiser. Under pmap each device
  holds part of the batch: gradients and metric sums are `psum`-med over
  `axis_name`, which makes the update equal to the one for the whole batch
  on one device (a 'mean' reduction divides by the global count).

  Args:
    loss_fn: `(params, batch, keys, beta, count, axis_name) -> (loss, aux)`,
      the task's objective (`lm.losses.lm_loss`,
      `dialogue.losses.dialogue_loss`).
    metric_sums: `(aux, batch, beta) -> {name: sum over examples}`.
    kl_weight: the KL schedule, step -> beta.
    update_params: optional `(params, aux) -> params` applied after the
      optimiser update (BN-VAE's running averages, which are set, not learnt).

  Returns:
    The step; its metrics are `metric_sums`' plus 'beta' and 'grad_norm'.
  """

  def train_step(state, batch: dict[str, Array], key: PRNGKey, *,
                 axis_name: str | None = None):
    keys = prng.example_keys(key, batch['index'], state.step)
    beta = kl_weight(state.step)
    count = jnp.sum(batch['weights'])
    if axis_name is not None:
      count = jax.lax.psum(count, axis_name)
    objective = lambda params: loss_fn(params, batch, keys, beta, count,
                                       axis_name)
    (_, aux), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params)
    sums = metric_sums(aux, batch, beta)
    if axis_name is not None:
      grads, sums = jax.lax.psum((grads, sums), axis_name)
    state = state.apply_gradients(grads=grads)
    if update_params is not None:
      state = state.replace(params=update_params(state.params, aux))
    return state, dict(sums, beta=beta,
                       grad_norm=optax.tree_utils.tree_norm(grads))

  return train_step
