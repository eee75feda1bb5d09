"""Checks of run-config fields, with messages that list the allowed values.

Each task's `validate` (`lm/task.py`, `dialogue/task.py`; `tasks.validate`
picks one) is built from these helpers.

Run before anything is built, so that a typo fails in a second with a clear
message instead of deep inside a traced function. Every problem raises
`errors.ConfigError`, which the launchers print as one block (twr_jax/core/cli.py).
"""

import math

import jax
import ml_collections

from twr_jax import errors
from twr_jax.core import layers
from twr_jax.core import losses
from twr_jax.core import parallel
from twr_jax.core import schedules

ConfigError = errors.ConfigError

# Fields both tasks have, with their allowed values.
SHARED_CHOICES = {
    'train.loss_reduction': losses.REDUCTIONS,
    'train.kl_schedule.kind': schedules.KINDS,
    'train.parallel': parallel.MODES,
    'train.compute_dtype': layers.COMPUTE_DTYPES,
}
OPTIONAL_POSITIVE_INTS = (
    'train.num_steps', 'train.eval_every_steps', 'train.checkpoint_every_steps'
)


def get(config, dotted):
  node = config
  for part in dotted.split('.'):
    if part not in node:
      raise ConfigError(f'config has no field {dotted!r}')
    node = node[part]
  return node


def check_fields(config, choices, positive_ints) -> None:
  for field, allowed in choices.items():
    value = get(config, field)
    if value not in allowed:
      raise ConfigError(
          f'config.{field} = {value!r} is not allowed; choose one of'
          f' {", ".join(map(repr, allowed))}'
      )
  for field in positive_ints + OPTIONAL_POSITIVE_INTS:
    value = get(config, field)
    if value is None and field in OPTIONAL_POSITIVE_INTS:
      continue
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ConfigError(f'config.{field} = {value!r}: must be a positive int')


def is_number(value) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def check_optimiser(config) -> None:
  if config.train.learning_rate <= 0 or config.train.weight_decay < 0:
    raise ConfigError('config.train.learning_rate must be > 0 and'
                      ' config.train.weight_decay >= 0')


def check_batch_sizes(config: ml_collections.ConfigDict,
                      layout: parallel.Layout,
                      fields: tuple[str, ...] = ('train.batch_size',
                                                 'eval.batch_size')) -> None:
  """Checks that every batch the devices share splits evenly over them.

  Under pmap (`parallel.Layout.shard`) each device gets an equal share of a
  batch, so a batch size must be a multiple of the device count. Checking
  all of them before any work means that fixing one field does not lead to
  the next failure after a whole training run (issue 13: train.batch_size
  63 on 3 devices trained, then evaluation failed on eval.batch_size 64).
  Batches that run on one device (dialogue sampling, IW-NLL, the paper
  protocol) and host-side groups (MI) are not checked: any size works.

  Args:
    config: the run config.
    layout: the device layout; under pmap its devices on every process share
      each batch, under jit one device takes it whole.
    fields: the batch-size fields used with the layout.

  Raises:
    ConfigError: naming every field that `num_devices` does not divide, with
      the nearest multiples.
  """
  num_devices = 1
  if layout.mode == 'pmap':
    num_devices = layout.num_devices * jax.process_count()
  problems = []
  for field in fields:
    size = get(config, field)
    if size % num_devices:
      below = size // num_devices * num_devices
      options = ' or '.join(str(n) for n in (below, below + num_devices) if n)
      problems.append(f'config.{field} = {size} does not split over'
                      f' {num_devices} devices: use a multiple of'
                      f' {num_devices}, e.g. --config.{field}={options}')
  if problems:
    raise ConfigError('\n'.join(problems) + '\n(or run on one device with'
                      ' --config.train.parallel=jit)')
