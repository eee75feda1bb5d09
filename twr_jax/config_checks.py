"""Validation of a run config, with messages that list the allowed values.

Run before anything is built, so that a typo fails in a second with a clear
message instead of deep inside a traced function. Every problem raises
`errors.ConfigError`, which the launchers print as one block (twr_jax/cli.py).
"""

import math

import jax
import ml_collections

from twr_jax import errors
from twr_jax import input_pipeline
from twr_jax import losses
from twr_jax import models
from twr_jax import parallel
from twr_jax import schedules

ConfigError = errors.ConfigError

CHOICES = {
    'data.source': ('text', 'synthetic', 'tfds'),
    'model.cell': models.CELLS,
    'model.z_mode': models.Z_MODES,
    'model.kl_window': losses.KL_WINDOWS,
    'model.kl_length': losses.LENGTH_MODES,
    'model.z_length': losses.LENGTH_MODES,
    'data.train_order': input_pipeline.TRAIN_ORDERS,
    'eval.reconstruction': ('final', 'every', 'off'),
    'train.loss_reduction': losses.REDUCTIONS,
    'train.kl_schedule.kind': schedules.KINDS,
    'train.parallel': parallel.MODES,
    'train.compute_dtype': models.COMPUTE_DTYPES,
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
      raise ConfigError(f'config has no field {dotted!r}')
    node = node[part]
  return node


DIALOGUE_CHOICES = {
    'data.format': ('switchboard', 'dailydialog'),
    'model.kl_mask': ('valid', 'padded'),
    'train.loss_reduction': losses.REDUCTIONS,
    'train.kl_schedule.kind': schedules.KINDS,
    'train.parallel': parallel.MODES,
    'train.compute_dtype': models.COMPUTE_DTYPES,
}
DIALOGUE_POSITIVE_INTS = (
    'data.vocab_size', 'data.max_utt_len', 'model.emb_dim', 'model.utt_hidden',
    'model.ctx_hidden', 'model.latent', 'train.batch_size', 'train.num_epochs',
    'train.log_every_steps', 'train.keep_checkpoints', 'eval.batch_size',
    'eval.num_samples', 'eval.max_len', 'eval.sample_batch_size',
)


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the field and the allowed values."""
  task = config.get('task', 'lm')
  if task == 'dialogue':
    _validate_dialogue(config)
    return
  if task != 'lm':
    raise ConfigError(f"config.task = {task!r}: choose 'lm' or 'dialogue'")
  _check_fields(config, CHOICES, POSITIVE_INTS)
  if not 0.0 <= config.model.dropout < 1.0:
    raise ConfigError(
        f'config.model.dropout = {config.model.dropout!r}: must be in [0, 1)'
    )
  _check_optimiser(config)
  _check_baselines(config)
  growth = config.data.bucket_growth
  if not (_is_number(growth) and growth >= 1):
    raise ValueError(f'config.data.bucket_growth = {growth!r}: must be a'
                     ' number >= 1 (1: padded lengths every bucket_size)')
  if config.data.source == 'tfds' and not config.data.tfds_name:
    raise ConfigError("config.data.tfds_name is empty: with data.source 'tfds'"
                      " set it to 'ptb', 'yahoo' or 'yelp'")
  if config.data.source == 'text' and not config.data.dir:
    raise ConfigError('config.data.dir is empty: set it to the folder holding'
                      f' {config.data.file_pattern!r} files for train, valid'
                      ' and test, or use configs/synthetic.py')


def _check_fields(config, choices, positive_ints) -> None:
  for field, allowed in choices.items():
    value = _get(config, field)
    if value not in allowed:
      raise ConfigError(
          f'config.{field} = {value!r} is not allowed; choose one of'
          f' {", ".join(map(repr, allowed))}'
      )
  for field in positive_ints + OPTIONAL_POSITIVE_INTS:
    value = _get(config, field)
    if value is None and field in OPTIONAL_POSITIVE_INTS:
      continue
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ConfigError(f'config.{field} = {value!r}: must be a positive int')


def _is_number(value) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def _check_baselines(config) -> None:
  """The baselines' fields (configs/default.py, BUILD_NOTES "Baselines")."""
  free_bits = config.model.free_bits
  if not _is_number(free_bits) or free_bits < 0:
    raise ConfigError(f'config.model.free_bits = {free_bits!r}: must be a'
                      ' number >= 0 (nats per latent dimension; 0 = off)')
  gamma = config.model.bn_gamma
  if gamma is not None and (not _is_number(gamma) or gamma <= 0):
    raise ConfigError(f'config.model.bn_gamma = {gamma!r}: must be None (off)'
                      ' or a number > 0 (BN-VAE paper: 0.6-0.7)')
  s = config.train.kl_schedule
  if s.kind == 'cyclical' and not (
      isinstance(s.cycles, int) and s.cycles >= 1 and _is_number(s.ratio)
      and 0 < s.ratio <= 1):
    raise ConfigError(
        f'config.train.kl_schedule: cycles = {s.cycles!r}, ratio ='
        f' {s.ratio!r}: the cyclical schedule needs an int cycles >= 1 and'
        ' 0 < ratio <= 1')
  lag = config.train.lagging
  if not isinstance(lag.enabled, bool):
    raise ConfigError(f'config.train.lagging.enabled = {lag.enabled!r}: must be'
                      ' True or False')
  for field in ('max_inner', 'window'):
    value = lag[field]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ConfigError(f'config.train.lagging.{field} = {value!r}: must be a'
                        ' positive int')


def _check_optimiser(config) -> None:
  if config.train.learning_rate <= 0 or config.train.weight_decay < 0:
    raise ConfigError('config.train.learning_rate must be > 0 and'
                      ' config.train.weight_decay >= 0')


def _validate_dialogue(config: ml_collections.ConfigDict) -> None:
  _check_fields(config, DIALOGUE_CHOICES, DIALOGUE_POSITIVE_INTS)
  if config.data.window < 2:
    raise ConfigError(f'config.data.window = {config.data.window!r}: must be'
                      ' >= 2 (one context turn and the response)')
  if config.data.max_utt_len < 2:
    raise ConfigError(f'config.data.max_utt_len = {config.data.max_utt_len!r}:'
                      ' must be >= 2 (<s> and </s>)')
  for field in ('model.emb_dropout', 'model.ctx_dropout'):
    if not 0.0 <= _get(config, field) < 1.0:
      raise ConfigError(f'config.{field} = {_get(config, field)!r}: must be in'
                        ' [0, 1)')
  _check_optimiser(config)
  if not config.data.dir:
    raise ConfigError('config.data.dir is empty: set it to the folder holding'
                      f' the {config.data.format} files')
  if '{split}' not in config.data.file_pattern:
    raise ConfigError(f'config.data.file_pattern = {config.data.file_pattern!r}'
                      ' must contain {split}')
  for split in ('train', 'valid', 'test'):
    if not _get(config, f'data.splits.{split}'):
      raise ConfigError(f'config.data.splits.{split} is empty')


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
    size = _get(config, field)
    if size % num_devices:
      below = size // num_devices * num_devices
      options = ' or '.join(str(n) for n in (below, below + num_devices) if n)
      problems.append(f'config.{field} = {size} does not split over'
                      f' {num_devices} devices: use a multiple of'
                      f' {num_devices}, e.g. --config.{field}={options}')
  if problems:
    raise ConfigError('\n'.join(problems) + '\n(or run on one device with'
                      ' --config.train.parallel=jit)')
