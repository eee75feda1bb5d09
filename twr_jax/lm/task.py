"""The language-model task: what the training loop needs from it (SPEC A).

`LMTask` is the `core.task.Task` the loop (`twr_jax.train`) drives;
`make_train_step` is the pure step it compiles. `validate` checks an LM
config and `load_model` builds what a saved run restores into; the registry
(`twr_jax.tasks`) calls both.
"""

import functools
import os
from typing import Any, Callable

from absl import logging
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import optax

from twr_jax import errors
from twr_jax.core import config_checks
from twr_jax.core import layers
from twr_jax.core import losses
from twr_jax.core import optim
from twr_jax.core import parallel
from twr_jax.core import task as core_task
from twr_jax.core import text
from twr_jax.lm import data as datasets
from twr_jax.lm import evaluation as lm_evaluation
from twr_jax.lm import input_pipeline
from twr_jax.lm import lagging
from twr_jax.lm import losses as lm_losses
from twr_jax.lm import model as models
from twr_jax.lm import reconstruction

Array = jax.Array
PRNGKey = jax.Array
ConfigError = errors.ConfigError

CHOICES = {
    **config_checks.SHARED_CHOICES,
    'data.source': ('text', 'synthetic', 'tfds'),
    'model.cell': layers.CELLS,
    'model.z_mode': models.Z_MODES,
    'model.kl_window': losses.KL_WINDOWS,
    'model.kl_length': losses.LENGTH_MODES,
    'model.z_length': losses.LENGTH_MODES,
    'data.train_order': input_pipeline.TRAIN_ORDERS,
    'eval.reconstruction': ('final', 'every', 'off'),
}
POSITIVE_INTS = (
    'model.emb_dim', 'model.hidden', 'model.latent', 'train.batch_size',
    'train.num_epochs', 'train.log_every_steps', 'train.keep_checkpoints',
    'data.bucket_size', 'data.min_count', 'eval.batch_size',
    'eval.mi_group_size',
)


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the field and the allowed values."""
  config_checks.check_fields(config, CHOICES, POSITIVE_INTS)
  if not 0.0 <= config.model.dropout < 1.0:
    raise ConfigError(
        f'config.model.dropout = {config.model.dropout!r}: must be in [0, 1)'
    )
  config_checks.check_optimiser(config)
  _check_baselines(config)
  growth = config.data.bucket_growth
  if not (config_checks.is_number(growth) and growth >= 1):
    raise ValueError(f'config.data.bucket_growth = {growth!r}: must be a'
                     ' number >= 1 (1: padded lengths every bucket_size)')
  if config.data.source == 'tfds' and not config.data.tfds_name:
    raise ConfigError("config.data.tfds_name is empty: with data.source 'tfds'"
                      " set it to 'ptb', 'yahoo' or 'yelp'")
  if config.data.source == 'text' and not config.data.dir:
    raise ConfigError('config.data.dir is empty: set it to the folder holding'
                      f' {config.data.file_pattern!r} files for train, valid'
                      ' and test, or use configs/synthetic.py')


def _check_baselines(config) -> None:
  """The baselines' fields (configs/default.py, BUILD_NOTES "Baselines")."""
  free_bits = config.model.free_bits
  if not config_checks.is_number(free_bits) or free_bits < 0:
    raise ConfigError(f'config.model.free_bits = {free_bits!r}: must be a'
                      ' number >= 0 (nats per latent dimension; 0 = off)')
  gamma = config.model.bn_gamma
  if gamma is not None and (not config_checks.is_number(gamma) or gamma <= 0):
    raise ConfigError(f'config.model.bn_gamma = {gamma!r}: must be None (off)'
                      ' or a number > 0 (BN-VAE paper: 0.6-0.7)')
  s = config.train.kl_schedule
  if s.kind == 'cyclical' and not (
      isinstance(s.cycles, int) and s.cycles >= 1
      and config_checks.is_number(s.ratio) and 0 < s.ratio <= 1):
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


def init_params(model: models.TWRVAE, key: PRNGKey):
  """Initial parameters (PyTorch-style init, see lm/model.py)."""
  tokens = jnp.array([[text.BOS, text.EOS, text.PAD]], jnp.int32)
  lengths = jnp.array([2], jnp.int32)
  # Parameters depend on the 'params' key only, not on the noise.
  return jax.jit(model.init)({'params': key}, tokens, lengths)['params']


def create_train_state(model: models.TWRVAE, tx: optax.GradientTransformation,
                       key: PRNGKey) -> train_state.TrainState:
  """Initialises parameters and the optimiser state."""
  return train_state.TrainState.create(
      apply_fn=model.apply, params=init_params(model, key), tx=tx)


def make_train_step(model: models.TWRVAE, config: ml_collections.ConfigDict,
                    kl_weight: Callable[[Array], Array]) -> Callable:
  """Returns the pure train step `(state, batch, key, *, axis_name)`.

  The step computes the paper's objective, sum over sentences of
  rec + beta * timestep-wise KL (SPEC A.4), or its per-sentence mean, or a
  baseline's variant of it (`lm_losses.lm_loss`); the step itself is both
  tasks' `core.task.make_train_step` (psum-med gradients and sums under
  pmap). Metrics are `lm_losses.metric_sums` plus 'beta' and 'grad_norm'.
  """

  return core_task.make_train_step(
      functools.partial(lm_losses.lm_loss, model, config),
      lm_losses.metric_sums, kl_weight,
      # BN-VAE: the running averages are set, not learnt (models.MuBatchNorm).
      lambda params, aux: models.with_bn_stats(params, aux.get('bn_stats')))


class LMTask:
  """The language-model task for the training loop (`core.task.Task`): its
  data, model, optimiser, train step, evaluation and the lagging baseline's
  hook."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str,
               layout: parallel.Layout, eval_key: PRNGKey):
    self.config = config
    data = datasets.load(config, workdir)
    self.batchers = {
        s: input_pipeline.Batcher(
            data.splits[s],
            config.train.batch_size if s == 'train' else config.eval.batch_size,
            config.data.bucket_size, config.seed,
            config.data.get('bucket_growth', 1.0),
        )
        for s in datasets.SPLITS
    }
    self.train_batcher = self.batchers['train']
    if config.data.get('train_order', 'shuffled') == 'sorted':
      self.train_batcher = input_pipeline.SortedBatcher(
          data.splits['train'], config.train.batch_size,
          config.data.bucket_size)
    logging.info('Train batch shapes T in %s', self.train_batcher.shapes)
    # He et al.'s warm-up counts epochs as N_train / B, a float division.
    self.kl_steps_per_epoch = len(data.splits['train']) / config.train.batch_size
    self.model = models.model_from_config(config, len(data.vocab))
    self._evaluator = lm_evaluation.Evaluator(self.model, config, layout,
                                              eval_key)
    self._layout = layout

  def init_params(self, key: PRNGKey):
    return init_params(self.model, key)

  def optimizer(self) -> optax.GradientTransformation:
    return optimizer(self.config)

  def make_train_step(self, kl_weight: Callable[[Array], Array]) -> Callable:
    return make_train_step(self.model, self.config, kl_weight)

  def train_hook(self, kl_weight: Callable[[Array], Array],
                 train_key: PRNGKey) -> lagging.AggressiveTraining | None:
    """He et al.'s aggressive encoder training (lm/lagging.py), if enabled."""
    if not lagging.enabled(self.config):
      return None
    return lagging.AggressiveTraining(
        self.config, functools.partial(lm_losses.lm_loss, self.model,
                                       self.config),
        kl_weight, models.with_bn_stats, self.train_batcher, self._layout,
        train_key)

  def evaluate(self, params, split: str, final: bool = False
               ) -> dict[str, Any]:
    """The standard metrics (lm/evaluation.py) and greedy reconstruction from
    the posterior mean: 'recon_bleu' (corpus BLEU-4) and 'recon_acc' (token
    accuracy), the direct evidence that the decoder uses z
    (reconstruction.py), at the `final` evaluation or at every one, as
    `eval.reconstruction` says ('final', 'every' or 'off')."""
    result = self._evaluator.evaluate(params, self.batchers[split])
    when = self.config.eval.get('reconstruction', 'final')
    if when == 'every' or (when == 'final' and final):
      rec = reconstruction.reconstruct(
          self.model, self._layout.unreplicate(params), self.batchers[split])
      scores = reconstruction.scores(rec['references'], rec['hypotheses'])
      result.update(recon_bleu=scores['bleu4'],
                    recon_acc=scores['token_accuracy'])
    return result


def optimizer(config: ml_collections.ConfigDict
              ) -> optax.GradientTransformation:
  """The run's optimiser (`core.optim`); with the lagging baseline, separate
  encoder and decoder states (`lagging.encoder_decoder_optimizer`)."""
  tx = optim.optimizer_from_config(config)
  if lagging.enabled(config):
    tx = lagging.encoder_decoder_optimizer(tx)
  return tx


def load_model(config: ml_collections.ConfigDict, workdir: str):
  """(vocab, model, parameter template, optimiser) of a saved LM run: what
  `core.workdir.load_run` restores a checkpoint into."""
  vocab = text.Vocab.load(os.path.join(workdir, datasets.VOCAB_FILE))
  model = models.model_from_config(config, len(vocab))
  return vocab, model, init_params(model, jax.random.key(0)), optimizer(config)
