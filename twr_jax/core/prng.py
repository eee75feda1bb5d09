"""The run's PRNG keys: one derivation, named salts.

Every random draw of a run comes from `jax.random.key(config.seed)` folded
with one of the salts below, then (`example_keys`) with the optimiser step
and each example's index in its split. A sentence's or context's noise
therefore depends only on (seed, purpose, step, index): not on the batch it
lands in, its row, or the device count (BUILD_NOTES "Noise per sentence"),
and a resumed run replays exactly.
"""

import jax

Array = jax.Array
PRNGKey = jax.Array

# fold_in(key(seed), salt): the run's key for each purpose. The values are
# those the code has always used, so old runs replay bit for bit.
TRAIN = 0  # Training noise (dropout, epsilon); folded with the step.
EVAL = 1  # Evaluation noise: the loop's evaluations and the LM report.
INIT = 2  # Parameter initialisation.
SAMPLE = 3  # The dialogue evaluator's response samples.
# Folded into the TRAIN key (then the step, then the inner step): He et al.'s
# encoder-only steps (lm/lagging.py).
LAGGING = 0x1A66


def run_key(seed: int, salt: int) -> PRNGKey:
  """The run's typed key for one purpose: fold_in(key(seed), salt)."""
  return jax.random.fold_in(jax.random.key(seed), salt)


def example_keys(key: PRNGKey, index: Array,
                 step: Array | int | None = None) -> PRNGKey:
  """One typed key per example: fold_in(fold_in(key, step), index[b]).

  Args:
    key: a typed key (`run_key`).
    index: <i32>[B] each example's index in its split.
    step: the optimiser step for training noise; None (evaluation, sampling)
      folds in the index only.

  Returns:
    Typed keys [B]; they do not depend on how the batch is split over devices.
  """
  if step is not None:
    key = jax.random.fold_in(key, step)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, index)
