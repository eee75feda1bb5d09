"""The dialogue task for the shared training loop (`train.train_and_evaluate`).

`DialogueTask` has the interface of `train.LMTask`: data, model, the pure
train step (the same `parallel.Layout` compiles it with pmap or jit) and a
loss evaluation used for logging and best-checkpoint selection. Generation
metrics (BLEU, BOW, distinct) are `dialogue_eval`'s, run by `launch.evaluate`.

Files of a dialogue workdir, besides the loop's: `vocab.txt` (the training
vocabulary, so that evaluation encodes text exactly as training did).
"""

import os
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from twr_jax import dialogue_data
from twr_jax import dialogue_metrics
from twr_jax import dialogue_model
from twr_jax import errors
from twr_jax import losses
from twr_jax import models
from twr_jax import parallel
from twr_jax import train

Array = jax.Array
PRNGKey = jax.Array

READERS = {
    'switchboard': dialogue_data.read_switchboard,
    'dailydialog': dialogue_data.read_dailydialog,
}
FORMATS = tuple(READERS)
VOCAB_FILE = 'vocab.txt'


def split_path(config: ml_collections.ConfigDict, split: str) -> str:
  """The file split `split` reads (`data.splits` maps it to a file name)."""
  name = config.data.splits[split]
  return os.path.join(config.data.dir,
                      config.data.file_pattern.format(split=name))


def read_split(config: ml_collections.ConfigDict,
               split: str) -> list[dialogue_data.Dialogue]:
  """The dialogues of one split, read with `data.format`'s reader."""
  path = split_path(config, split)
  if not os.path.exists(path):
    raise errors.DataError(
        f'{path}: no such file for split {split!r} (config.data.dir ='
        f' {config.data.dir!r}, data.splits.{split} ='
        f' {config.data.splits[split]!r})')
  dialogues = READERS[config.data.format](path)
  logging.info('%s: %d dialogues from %s', split, len(dialogues), path)
  return dialogues


def load_vocab(config: ml_collections.ConfigDict, workdir: str | None,
               train_dialogues=None) -> dialogue_data.DialogVocab:
  """The workdir's vocabulary, or one built from the training split.

  A built vocabulary is saved to `workdir/vocab.txt` (process 0), so that a
  resumed run and the evaluator use the same ids.
  """
  path = os.path.join(workdir, VOCAB_FILE) if workdir else None
  if path and os.path.exists(path):
    return dialogue_data.DialogVocab.load(path)
  if train_dialogues is None:
    train_dialogues = read_split(config, 'train')
  vocab = dialogue_data.DialogVocab.from_dialogues(
      train_dialogues, config.data.vocab_size)
  logging.info('Built vocabulary: %d entries', len(vocab))
  if path and jax.process_index() == 0:
    vocab.save(path)
  return vocab


def model_from_config(config: ml_collections.ConfigDict,
                      vocab_size: int) -> dialogue_model.DialogTWRVAE:
  m = config.model
  return dialogue_model.DialogTWRVAE(
      vocab_size=vocab_size, emb_dim=m.emb_dim, utt_hidden=m.utt_hidden,
      ctx_hidden=m.ctx_hidden, latent=m.latent, emb_dropout=m.emb_dropout,
      ctx_dropout=m.ctx_dropout, kl_mask=m.kl_mask,
      dtype=models.compute_dtype(config),
  )


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
  keys = train.example_keys(key, 0, jnp.zeros((1,), jnp.int32))
  params = jax.jit(lambda k: model.init(
      {'params': k}, b['context'], b['context_lens'], b['floors'],
      b['num_turns'], b['response'], b['response_len'], keys, train=False,
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


def _max_turns(batch: dict[str, Array], axis_name: str | None) -> Array:
  """N_b of the 'padded' KL: the longest real context of the whole batch."""
  n = jnp.max(jnp.where(batch['weights'] > 0, batch['num_turns'], 1))
  return n if axis_name is None else jax.lax.pmax(n, axis_name)


def make_train_step(model: dialogue_model.DialogTWRVAE,
                    config: ml_collections.ConfigDict,
                    kl_weight: Callable[[Array], Array]) -> Callable:
  """The pure train step `(state, batch, key, *, axis_name)` (SPEC B.4-B.5).

  Same contract as `train.make_train_step`: gradients and metric sums are
  psum-med over `axis_name`; metric sums are over examples: 'loss', 'rec',
  'kl_twr' (the timestep-wise KL of the objective), 'kl' (KL(q || p) at the
  final context state, the CVAE ELBO's KL), 'sentences' (examples),
  'tokens'; plus 'beta' and 'grad_norm'.
  """
  reduction = config.train.loss_reduction

  def train_step(state, batch, key, *, axis_name=None):
    w = batch['weights']
    keys = train.example_keys(key, state.step, batch['index'])
    beta = kl_weight(state.step)
    count = jnp.sum(w)
    if axis_name is not None:
      count = jax.lax.psum(count, axis_name)

    def loss_fn(params):
      return dialogue_model.dialogue_loss(
          model, params, batch, keys, beta, True, reduction,
          max_turns=_max_turns(batch, axis_name), count=count)

    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    sums = _sums(aux, w, beta)
    if axis_name is not None:
      grads, sums = jax.lax.psum((grads, sums), axis_name)
    state = state.apply_gradients(grads=grads)
    return state, dict(sums, beta=beta,
                       grad_norm=optax.tree_utils.tree_norm(grads))

  return train_step


def _sums(aux: dict[str, Array], w: Array, beta) -> dict[str, Array]:
  return dict(
      loss=jnp.sum(w * (aux['rec'] + beta * aux['kl'])),
      rec=jnp.sum(w * aux['rec']), kl_twr=jnp.sum(w * aux['kl']),
      kl=jnp.sum(w * aux['kl_z']), sentences=jnp.sum(w),
      tokens=jnp.sum(w * aux['tokens']),
  )


def make_eval_step(model: dialogue_model.DialogTWRVAE):
  """`eval_step(params, batch, key, *, axis_name)` -> metric sums (eval
  mode, z sampled from q with each example's fixed key, beta = 1)."""

  def eval_step(params, batch, key, *, axis_name=None):
    keys = dialogue_model.example_keys(key, batch['index'])
    _, aux = dialogue_model.dialogue_loss(
        model, params, batch, keys, 1.0, False,
        max_turns=_max_turns(batch, axis_name))
    sums = _sums(aux, batch['weights'], 1.0)
    return sums if axis_name is None else jax.lax.psum(sums, axis_name)

  return eval_step


def summarise(sums: dict[str, float]) -> dict[str, float]:
  """Per-example means. 'nll_elbo' = rec + KL(q(z|x,c) || p(z|c)) at c is a
  bound on -log p(x | c) (the objective's timestep-wise KL is not, SPEC B.4);
  'ppl' = exp(sum nll_elbo / scored tokens), `</s>` counted, `<s>` not."""
  n = max(sums['sentences'], 1.0)
  nll = sums['rec'] + sums['kl']
  return dict(
      loss=sums['loss'] / n, rec=sums['rec'] / n, kl=sums['kl'] / n,
      kl_twr=sums['kl_twr'] / n, nll_elbo=nll / n,
      ppl=float(np.exp(nll / max(sums['tokens'], 1.0))),
      sentences=sums['sentences'], tokens=sums['tokens'],
  )


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
    train_dialogues = read_split(config, 'train')
    self.vocab = load_vocab(config, workdir, train_dialogues)
    encoded = dialogue_data.EncodedDialogues.encode(
        train_dialogues, self.vocab, d.max_utt_len)
    self.train_batcher = dialogue_data.DialogBatcher(
        encoded, config.train.batch_size, d.window, config.seed)
    if config.train.get('pack_batches', True):  # Real tokens only.
      self.train_batcher = dialogue_data.PackedBatcher(
          self.train_batcher, layout.num_devices * jax.process_count())
    self.kl_steps_per_epoch = float(self.train_batcher.num_batches)
    self.examples = {
        s: dialogue_data.eval_examples(read_split(config, s), self.vocab,
                                       d.window, d.max_utt_len)
        for s in ('valid', 'test')
    }
    self.model = model_from_config(config, len(self.vocab))
    self._eval = layout.compile(make_eval_step(self.model), 3,
                                broadcast_argnums=(2,))

  def init_params(self, key: PRNGKey):
    return init_params(self.model, key, self.config, self.vocab)

  def make_train_step(self, kl_weight: Callable[[Array], Array]) -> Callable:
    return make_train_step(self.model, self.config, kl_weight)

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
    return summarise(total)
