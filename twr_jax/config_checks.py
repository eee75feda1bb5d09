"""Validation of a run config, with messages that list the allowed values.

Run before anything is built, so that a typo fails in a second with a clear
message instead of deep inside a traced function.
"""

import ml_collections

from twr_jax import losses
from twr_jax import models
from twr_jax import parallel
from twr_jax import schedules

CHOICES = {
    'data.source': ('text', 'synthetic', 'tfds'),
    'model.cell': models.CELLS,
    'model.z_mode': models.Z_MODES,
    'model.kl_window': losses.KL_WINDOWS,
    'train.loss_reduction': losses.REDUCTIONS,
    'train.kl_schedule.kind': schedules.KINDS,
    'train.parallel': parallel.MODES,
}
POSITIVE_INTS = (
    'model.emb_dim', 'model.hidden', 'model.latent', 'train.batch_size',
    'train.num_epochs', 'train.log_every_steps', 'train.keep_checkpoints',
    'data.bucket_size', 'data.min_count', 'eval.batch_size',
    'eval.mi_group_size',
)
OPTIONAL_POSITIVE_INTS = (
    'train.num_steps', 'train.eval_every_steps', 'train.checkpoint_every_steps'
)


def _get(config, dotted):
  node = config
  for part in dotted.split('.'):
    if part not in node:
      raise ValueError(f'config has no field {dotted!r}')
    node = node[part]
  return node


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the allowed values."""
  for field, allowed in CHOICES.items():
    value = _get(config, field)
    if value not in allowed:
      raise ValueError(
          f'config.{field} = {value!r} is not allowed; choose one of'
          f' {", ".join(map(repr, allowed))}'
      )
  for field in POSITIVE_INTS + OPTIONAL_POSITIVE_INTS:
    value = _get(config, field)
    if value is None and field in OPTIONAL_POSITIVE_INTS:
      continue
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f'config.{field} = {value!r}: must be a positive int')
  if not 0.0 <= config.model.dropout < 1.0:
    raise ValueError(
        f'config.model.dropout = {config.model.dropout!r}: must be in [0, 1)'
    )
  if config.train.learning_rate <= 0 or config.train.weight_decay < 0:
    raise ValueError('config.train.learning_rate must be > 0 and'
                     ' config.train.weight_decay >= 0')
  if config.data.source == 'tfds' and not config.data.tfds_name:
    raise ValueError("config.data.tfds_name is empty: with data.source 'tfds'"
                     " set it to 'ptb', 'yahoo' or 'yelp'")
  if config.data.source == 'text' and not config.data.dir:
    raise ValueError('config.data.dir is empty: set it to the folder holding'
                     f' {config.data.file_pattern!r} files for train, valid'
                     ' and test, or use configs/synthetic.py')
