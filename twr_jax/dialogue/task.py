"""The dialogue task: what the training loop needs from it (SPEC B).

`DialogueTask` is the `core.task.Task` the loop (`twr_jax.train`) drives:
data, model, the pure train step (the same `parallel.Layout` compiles it with
pmap or jit) and a loss evaluation used for logging and best-checkpoint
selection. Generation metrics (BLEU, BOW, distinct) are `dialogue/report.py`'s,
run by `launch.evaluate`. `validate` checks a dialogue config and
`load_model` builds what a saved run restores into (`twr_jax.tasks`).

Files of a dialogue workdir, besides the loop's: `vocab.txt` (the training
vocabulary, so that evaluation encodes text exactly as training did).
"""

from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from twr_jax import errors
from twr_jax.core import config_checks
from twr_jax.core import optim
from twr_jax.core import parallel
from twr_jax.core import task as core_task
from twr_jax.dialogue import data as dialogue_data
from twr_jax.dialogue import evaluation as dialogue_evaluation
from twr_jax.dialogue import losses as dialogue_losses
from twr_jax.dialogue import metrics as dialogue_metrics
from twr_jax.dialogue import model as dialogue_model

Array = jax.Array
PRNGKey = jax.Array
ConfigError = errors.ConfigError


CHOICES = {
    **config_checks.SHARED_CHOICES,
    'data.format': dialogue_data.FORMATS,
    'data.source': dialogue_data.SOURCES,
    'model.kl_mask': ('valid', 'padded'),
}
POSITIVE_INTS = (
    'data.vocab_size', 'data.max_utt_len', 'model.emb_dim', 'model.utt_hidden',
    'model.ctx_hidden', 'model.latent', 'train.batch_size', 'train.num_epochs',
    'train.log_every_steps', 'train.keep_checkpoints', 'eval.batch_size',
    'eval.num_samples', 'eval.max_len', 'eval.sample_batch_size',
)


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the field and the allowed values."""
  config_checks.check_fields(config, CHOICES, POSITIVE_INTS)
  if config.data.window < 2:
    raise ConfigError(f'config.data.window = {config.data.window!r}: must be'
                      ' >= 2 (one context turn and the response)')
  if config.data.max_utt_len < 2:
    raise ConfigError(f'config.data.max_utt_len = {config.data.max_utt_len!r}:'
                      ' must be >= 2 (<s> and </s>)')
  for field in ('model.emb_dropout', 'model.ctx_dropout'):
    value = config_checks.get(config, field)
    if not 0.0 <= value < 1.0:
      raise ConfigError(f'config.{field} = {value!r}: must be in [0, 1)')
  config_checks.check_optimiser(config)
  if config.data.source == 'files' and not config.data.dir:
    raise ConfigError('config.data.dir is empty: set it to the folder holding'
                      f' the {config.data.format} files')
  if '{split}' not in config.data.file_pattern:
    raise ConfigError(f'config.data.file_pattern = {config.data.file_pattern!r}'
                      ' must contain {split}')
  for split in ('train', 'valid', 'test'):
    if not config_checks.get(config, f'data.splits.{split}'):
      raise ConfigError(f'config.data.splits.{split} is empty')


def dummy_batch(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """A one-row batch of the task's static shapes (for `init`)."""
  w, u = config.data.window, config.data.max_utt_len
  return dict(
      context=np.zeros((1, w - 1, u - 1), np.int32),
      context_lens=np.ones((1, w - 1), np.int32),
      floors=np.zeros((1, w - 1), np.int32),
      num_turns=np.ones((1,), np.int32),
      response=np.zeros((1, u), np.int32),
      response_len=np.full((1,), 2, np.int32),
  )


def init_params(model: dialogue_model.DialogTWRVAE, key: PRNGKey,
                config: ml_collections.ConfigDict,
                vocab: dialogue_data.DialogVocab, *,
                word_vectors: bool = True):
  """Initial parameters; the embedding from `model.word_vectors` if set.

  Words without a vector get the original's N(0, 0.1^2) draws (see
  `dialogue_metrics.load_word_vectors`); the PAD row stays 0.
  `word_vectors=False` skips the file (a restore template needs shapes only).
  """
  b = dummy_batch(config)
  # Parameters depend on the 'params' key only, not on the noise.
  params = jax.jit(lambda k: model.init(
      {'params': k}, b['context'], b['context_lens'], b['floors'],
      b['num_turns'], b['response'], b['response_len'],
  ))(key)['params']
  path = config.model.word_vectors
  if path and word_vectors:
    vectors = dialogue_metrics.load_word_vectors(path, vocab.tokens)
    if vectors.shape[1] != config.model.emb_dim:
      raise errors.ConfigError(
          f'{path}: vectors have {vectors.shape[1]} dimensions but'
          f' config.model.emb_dim is {config.model.emb_dim}: set it to'
          f' {vectors.shape[1]}')
    vectors[dialogue_data.PAD] = 0.0
    params = dict(params)
    params['embed'] = {'embedding': jnp.asarray(vectors, jnp.float32)}
    logging.info('Embedding initialised from %s', path)
  return params


def make_train_step(model: dialogue_model.DialogTWRVAE,
                    config: ml_collections.ConfigDict,
                    kl_weight: Callable[[Array], Array]) -> Callable:
  """The pure train step `(state, batch, key, *, axis_name)` (SPEC B.4-B.5).

  Both tasks' `core.task.make_train_step`: gradients and metric sums are
  psum-med over `axis_name`; metric sums are over examples
  (`dialogue_losses.metric_sums`): 'loss', 'rec', 'kl_twr' (the
  timestep-wise KL of the objective), 'kl' (KL(q || p) at the final context
  state, the CVAE ELBO's KL), 'sentences' (examples), 'tokens'; plus 'beta'
  and 'grad_norm'.
  """
  reduction = config.train.loss_reduction

  def loss_fn(params, batch, keys, beta, count, axis_name):
    return dialogue_losses.dialogue_loss(
        model, params, batch, keys, beta, True, reduction,
        max_turns=dialogue_losses.max_turns(batch, axis_name), count=count)

  return core_task.make_train_step(
      loss_fn,
      lambda aux, batch, beta: dialogue_losses.metric_sums(
          aux, batch['weights'], beta),
      kl_weight)


class DialogueTask:
  """The dialogue model's data, train step and loss evaluation.

  Attributes:
    vocab: the training vocabulary.
    model: the `DialogTWRVAE`.
    train_batcher: the original's training batches (`DialogBatcher`), packed
      (`PackedBatcher`) unless config.train.pack_batches is False.
    kl_steps_per_epoch: batches per epoch (the DD annealing's epoch).
    examples: {'valid', 'test'} evaluation contexts (`eval_examples`).
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str,
               layout: parallel.Layout, eval_key: PRNGKey):
    self.config = config
    self._layout = layout
    self._eval_key = eval_key
    d = config.data
    train_dialogues = dialogue_data.read_split(config, 'train')
    self.vocab = dialogue_data.load_vocab(config, workdir, train_dialogues)
    encoded = dialogue_data.EncodedDialogues.encode(
        train_dialogues, self.vocab, d.max_utt_len)
    self.train_batcher = dialogue_data.DialogBatcher(
        encoded, config.train.batch_size, d.window, config.seed)
    if config.train.get('pack_batches', True):  # Real tokens only.
      self.train_batcher = dialogue_data.PackedBatcher(
          self.train_batcher, layout.num_devices * jax.process_count())
    self.kl_steps_per_epoch = float(self.train_batcher.num_batches)
    self.examples = {
        s: dialogue_data.eval_examples(
            dialogue_data.read_split(config, s), self.vocab, d.window,
            d.max_utt_len)
        for s in ('valid', 'test')
    }
    self.model = dialogue_model.model_from_config(config, len(self.vocab))
    self._eval = layout.compile(
        dialogue_evaluation.make_eval_step(self.model), 3,
        broadcast_argnums=(2,))

  def init_params(self, key: PRNGKey):
    return init_params(self.model, key, self.config, self.vocab)

  def optimizer(self) -> optax.GradientTransformation:
    return optim.optimizer_from_config(self.config)

  def make_train_step(self, kl_weight: Callable[[Array], Array]) -> Callable:
    return make_train_step(self.model, self.config, kl_weight)

  def train_hook(self, kl_weight, train_key) -> None:
    """No hook: the dialogue baselines change the objective only."""
    del kl_weight, train_key

  def evaluate(self, params, split: str, final: bool = False
               ) -> dict[str, Any]:
    """Loss metrics of a split's contexts (see `summarise`); the same at
    the `final` evaluation as at the others."""
    del final
    d = self.config.data
    total: dict[str, float] = {}
    for batch in dialogue_data.eval_batches(
        self.examples[split], self.vocab, self.config.eval.batch_size,
        window=d.window, max_utt_len=d.max_utt_len):
      local = self._layout.shard(parallel.process_rows(batch))
      sums = self._layout.first(self._eval(params, local, self._eval_key))
      for k, v in sums.items():
        total[k] = total.get(k, 0.0) + float(v)
    return dialogue_evaluation.summarise(total)


def load_model(config: ml_collections.ConfigDict, workdir: str):
  """(vocab, model, parameter template, optimiser) of a saved dialogue run:
  what `core.workdir.load_run` restores a checkpoint into. The template
  skips the word vectors (only the shapes matter)."""
  vocab = dialogue_data.load_vocab(config, workdir)
  model = dialogue_model.model_from_config(config, len(vocab))
  params = init_params(model, jax.random.key(0), config, vocab,
                       word_vectors=False)
  return vocab, model, params, optim.optimizer_from_config(config)
