"""KL-weight (β) schedules for the annealed VAE baselines (SPEC A.5).

A schedule maps the 0-based index of the optimiser step about to be taken to
the β that weights that step's KL term. Like an `optax.Schedule`, it accepts a
Python int or an integer JAX scalar and works inside `jax.jit`; it returns a
float32 scalar.

References:
  He et al. (2019), jxhe/vae-lagging-encoder `text.py` (linear warm-up).
  Bowman et al. (2016) as in timbmg/Sentence-VAE `train.py` (logistic).
  Fu et al. (2019), "Cyclical Annealing Schedule", `frange_cycle_linear`.
"""

from collections.abc import Callable

import jax
from jax.typing import ArrayLike
import jax.numpy as jnp
import numpy as np

Schedule = Callable[[ArrayLike], jax.Array]

KINDS = ('constant', 'linear', 'logistic', 'cyclical')


def make_kl_schedule(
    kind: str,
    *,
    beta: float = 1.0,
    start: float = 0.1,
    warmup_epochs: float = 10.0,
    train_size: int | None = None,
    batch_size: int | None = None,
    logistic_k: float = 0.0025,
    logistic_x0: float = 2500,
    total_steps: int | None = None,
    cycles: int = 4,
    ratio: float = 0.5,
) -> Schedule:
  """Builds a β schedule.

  Args:
    kind: one of `KINDS`.
      - 'constant': β = `beta` (the only kind that reads `beta`).
      - 'linear': He et al.'s warm-up. Their loop sets
        β ← min(1, β + (1 − start) / (warmup_epochs · train_size / batch_size))
        before each batch, from β = start, so the first step already uses one
        increment: β(s) = min(1, start + (s + 1) · rate).
      - 'logistic': Sentence-VAE's 1 / (1 + exp(−k (s − x0))), where s counts
        the optimiser steps taken before this one.
      - 'cyclical': Fu et al.'s `frange_cycle_linear(total_steps, 0, 1,
        cycles, ratio)` indexed by s, and 1 after `total_steps`.
    beta: the constant weight.
    start: the linear schedule's initial β (He et al.'s `kl_start`).
    warmup_epochs: epochs for the linear ramp to reach 1 (`warm_up`), > 0.
    train_size: training sentences (`len(train_data)`); linear only.
    batch_size: sentences per batch; linear only. train_size / batch_size is a
      float division, as in He et al., not the number of batches.
    logistic_k: steepness k of the logistic schedule.
    logistic_x0: step x0 at which the logistic schedule reaches 0.5.
    total_steps: length of the cyclical schedule; cyclical only.
    cycles: number of cycles in the cyclical schedule.
    ratio: fraction of each cycle spent ramping from 0 to 1.

  Returns:
    A function from the step index to a float32 scalar β.

  Raises:
    ValueError: for an unknown kind, or a missing or invalid argument.
  """
  if kind == 'constant':

    def constant(step):
      del step  # Unused: the weight does not change.
      return jnp.full((), beta, jnp.float32)

    return constant
  if kind == 'linear':
    _require(kind, train_size=train_size, batch_size=batch_size)
    if warmup_epochs <= 0 or train_size <= 0 or batch_size <= 0:
      raise ValueError(
          'linear needs warmup_epochs, train_size and batch_size > 0; got '
          f'{warmup_epochs}, {train_size}, {batch_size}.'
      )
    rate = (1.0 - start) / (warmup_epochs * (train_size / batch_size))

    def linear(step):
      s = jnp.asarray(step, jnp.float32)
      return jnp.minimum(1.0, start + (s + 1.0) * rate).astype(jnp.float32)

    return linear
  if kind == 'logistic':

    def logistic(step):
      s = jnp.asarray(step, jnp.float32)
      return jax.nn.sigmoid(logistic_k * (s - logistic_x0)).astype(jnp.float32)

    return logistic
  if kind == 'cyclical':
    _require(kind, total_steps=total_steps)
    if total_steps < 1 or cycles < 1 or ratio <= 0:
      raise ValueError(
          'cyclical needs total_steps >= 1, cycles >= 1 and ratio > 0; got '
          f'{total_steps}, {cycles}, {ratio}.'
      )
    table = jnp.asarray(
        _frange_cycle_linear(total_steps, cycles, ratio), jnp.float32
    )

    def cyclical(step):
      step = jnp.asarray(step)
      inside = table[jnp.clip(step, 0, total_steps - 1)]
      return jnp.where(step < total_steps, inside, jnp.float32(1.0))

    return cyclical
  raise ValueError(f'Unknown KL schedule {kind!r}; expected one of {KINDS}.')


def _require(kind: str, **args):
  missing = [name for name, value in args.items() if value is None]
  if missing:
    raise ValueError(f'KL schedule {kind!r} requires {", ".join(missing)}.')


def _frange_cycle_linear(
    n_iter: int, n_cycle: int, ratio: float, start=0.0, stop=1.0
) -> np.ndarray:
  """Fu et al.'s table, bit for bit, with NumPy in place of the step loop.

  The reference accumulates v by repeated addition and writes it at
  int(i + c · period), both in float64. That rounding decides where each ramp
  stops and, for some sizes, skips an index mid-ramp and leaves `stop` there
  (e.g. 122 steps, 14 cycles: index 64 is 1.0). No float32 closed form can
  follow that, so the same float64 operations build a table once: `cumsum` is
  a sequential sum, and the loop's two stopping conditions become a prefix
  mask.

  Returns:
    `[n_iter]` float64 β values.
  """
  table = np.full(n_iter, stop)
  period = n_iter / n_cycle
  step = (stop - start) / (period * ratio)
  # Enough ramp points for v to pass `stop`; the prefix mask drops the rest.
  ramp = int(period * ratio) + 3
  v = np.cumsum(np.concatenate([[start], np.full(ramp - 1, step)]))
  for c in range(n_cycle):
    index = (np.arange(ramp) + c * period).astype(np.int64)
    written = np.logical_and.accumulate((v <= stop) & (index < n_iter))
    table[index[written]] = v[written]
  return table
