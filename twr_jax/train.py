"""Train state, the pure train step, and the training loop.

`train_and_evaluate(config, workdir)` is what the launcher, notebooks and tests
call. Everything a step depends on is derived from the step number: the batch
(`Batcher.train_batch(step)`), the per-sentence noise (from seed, step and the
sentence's index) and the KL weight. A run restarted from a checkpoint at step
s therefore continues exactly as if it had never stopped.
"""

import functools
import json
import os
import signal
import time
from typing import Any, Callable

from absl import logging
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from twr_jax import checkpoint
from twr_jax import config_checks
from twr_jax import datasets
from twr_jax import evaluate
from twr_jax import input_pipeline
from twr_jax import losses
from twr_jax import metric_log
from twr_jax import models
from twr_jax import optim
from twr_jax import parallel
from twr_jax import schedules
from twr_jax import text

Array = jax.Array
PRNGKey = jax.Array
TrainState = train_state.TrainState


def example_keys(key: PRNGKey, step: Array | int, index: Array) -> PRNGKey:
  """One key per sentence from (run key, step, sentence index).

  Args:
    key: the run's typed PRNG key.
    step: the optimiser step (or a fixed salt at evaluation).
    index: <i32>[B] each sentence's index in its split.

  Returns:
    Typed keys [B]; they do not depend on how the batch is split over devices.
  """
  step_key = jax.random.fold_in(key, step)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(step_key, index)


def create_train_state(model: models.TWRVAE, tx: optax.GradientTransformation,
                       key: PRNGKey) -> TrainState:
  """Initialises parameters (PyTorch-style init, see models.py) and Adam."""
  tokens = jnp.array([[text.BOS, text.EOS, text.PAD]], jnp.int32)
  lengths = jnp.array([2], jnp.int32)
  keys = example_keys(key, 0, jnp.zeros((1,), jnp.int32))
  params = jax.jit(functools.partial(model.init, train=False))(
      {'params': key}, tokens, lengths, keys
  )['params']
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def make_train_step(model: models.TWRVAE, config: ml_collections.ConfigDict,
                    kl_weight: Callable[[Array], Array]) -> Callable:
  """Returns the pure train step `(state, batch, key, *, axis_name)`.

  The step computes the paper's objective, sum over sentences of
  rec + beta * timestep-wise KL (SPEC A.4), or its per-sentence mean. Under
  pmap each device holds part of the batch: gradients and metric sums are
  `psum`-med over `axis_name`, which makes the update equal to the one for the
  whole batch on one device (for 'mean' the divisor is the global count).

  Metrics are sums over sentences (divide on the host): 'loss', 'rec',
  'kl_twr' (the objective's KL term), 'kl' (KL of the posterior z is drawn
  from), 'sentences', 'tokens' (scored targets, EOS included); plus 'beta'
  and 'grad_norm'.
  """
  window = config.model.kl_window
  reduction = config.train.loss_reduction

  def train_step(state: TrainState, batch: dict[str, Array], key: PRNGKey, *,
                 axis_name: str | None = None):
    tokens, lengths, w = batch['tokens'], batch['lengths'], batch['weights']
    keys = example_keys(key, state.step, batch['index'])
    beta = kl_weight(state.step)
    count = jnp.sum(w)
    if axis_name is not None:
      count = jax.lax.psum(count, axis_name)

    def loss_fn(params):
      out = model.apply({'params': params}, tokens, lengths, keys, train=True)
      rec = losses.token_nll(out['logits'], tokens[:, 1:], lengths)
      kl = losses.masked_kl(out['mu'], out['logvar'], lengths, window)
      loss = losses.objective(rec, kl, w, beta, reduction, count)
      return loss, (rec, kl, losses.gaussian_kl(out['z_mu'], out['z_logvar']))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (rec, kl, kl_z)), grads = grad_fn(state.params)
    sums = dict(
        loss=jnp.sum(w * (rec + beta * kl)), rec=jnp.sum(w * rec),
        kl_twr=jnp.sum(w * kl), kl=jnp.sum(w * kl_z), sentences=jnp.sum(w),
        tokens=jnp.sum(w * (lengths - 1)),
    )
    if axis_name is not None:
      grads, sums = jax.lax.psum((grads, sums), axis_name)
    state = state.apply_gradients(grads=grads)
    return state, dict(sums, beta=beta, grad_norm=optax.tree_utils.tree_norm(grads))

  return train_step


def _kl_schedule(config, train_size: int, total_steps: int):
  s = config.train.kl_schedule
  return schedules.make_kl_schedule(
      s.kind, beta=s.beta, start=s.start, warmup_epochs=s.warmup_epochs,
      train_size=train_size, batch_size=config.train.batch_size,
      logistic_k=s.logistic_k, logistic_x0=s.logistic_x0,
      total_steps=total_steps, cycles=s.cycles, ratio=s.ratio,
  )


def _write_json(path: str, obj: Any) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


class _Preemption:
  """Turns SIGTERM and Ctrl-C into a flag the loop checks after each step, so
  that it can checkpoint before stopping. A second Ctrl-C stops at once."""

  _SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = False
    self._old = {}

  def __enter__(self):
    try:
      self._old = {s: signal.signal(s, self._handle) for s in self._SIGNALS}
    except ValueError:  # Not the main thread: leave signals alone.
      self._old = {}
    return self

  def _handle(self, signum, frame):
    del frame
    logging.warning('%s: checkpointing after this step, then stopping.',
                    signal.Signals(signum).name)
    self.requested = True
    signal.signal(signum, self._old.get(signum, signal.SIG_DFL))

  def __exit__(self, *exc):
    for s, handler in self._old.items():
      signal.signal(s, handler)


def _summarise_train(history: list[dict[str, Any]]) -> dict[str, float]:
  sums = {k: float(np.sum([h[k] for h in history]))
          for k in ('loss', 'rec', 'kl_twr', 'kl', 'sentences', 'tokens')}
  n = max(sums['sentences'], 1.0)
  return dict(
      loss=sums['loss'] / n, rec=sums['rec'] / n, kl=sums['kl'] / n,
      kl_twr=sums['kl_twr'] / n, sentences=sums['sentences'],
      beta=float(history[-1]['beta']),
      grad_norm=float(np.mean([h['grad_norm'] for h in history])),
  )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       stop_at_step: int | None = None) -> dict[str, Any]:
  """Trains (or resumes) a run in `workdir`, then evaluates valid and test.

  Args:
    config: the run config (see configs/default.py).
    workdir: output folder: metrics.jsonl, tensorboard/, config.json,
      vocab.txt, checkpoints/.
    stop_at_step: stop (with a checkpoint) once this many steps are done, as
      if pre-empted; re-running then resumes. For notebooks with time limits
      and for tests.

  Returns:
    {'valid': metrics, 'test': metrics} from the final evaluation, or {} when
    stopped early.
  """
  config_checks.validate(config)
  os.makedirs(workdir, exist_ok=True)
  layout = parallel.make_layout(config.train.parallel)
  logging.info('JAX process %d/%d, %d local devices, layout %s',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), layout)
  is_chief = jax.process_index() == 0
  if is_chief:
    _write_json(os.path.join(workdir, 'config.json'), config.to_dict())

  data = datasets.load(config, workdir)
  batchers = {
      s: input_pipeline.Batcher(
          data.splits[s],
          config.train.batch_size if s == 'train' else config.eval.batch_size,
          config.data.bucket_size, config.seed,
      )
      for s in datasets.SPLITS
  }
  train_batcher = batchers['train']
  steps_per_epoch = train_batcher.num_batches
  total_steps = config.train.num_steps or (
      config.train.num_epochs * steps_per_epoch)
  eval_every = config.train.eval_every_steps or steps_per_epoch
  ckpt_every = config.train.checkpoint_every_steps or eval_every
  logging.info('%d steps (%d per epoch), train batch shapes T in %s',
               total_steps, steps_per_epoch, train_batcher.shapes)

  model = models.model_from_config(config, len(data.vocab))
  root_key = jax.random.key(config.seed)
  train_key, eval_key, init_key = (jax.random.fold_in(root_key, i)
                                   for i in range(3))
  state = create_train_state(model, optim.optimizer_from_config(config),
                             init_key)
  logging.info('%d parameters', sum(
      x.size for x in jax.tree_util.tree_leaves(state.params)))

  ckpt = checkpoint.Checkpointer(workdir, config.train.keep_checkpoints)
  restored, start = ckpt.restore(saveable(state))
  if restored is not None:
    state = state.replace(**restored)
    logging.info('Resumed from step %d', start)
  start = start or 0
  log = metric_log.MetricLog(workdir) if is_chief else None
  if log is not None:
    log.truncate_after(start)

  kl_weight = _kl_schedule(config, len(data.splits['train']), total_steps)
  p_train = layout.compile(
      make_train_step(model, config, kl_weight), 3, broadcast_argnums=(2,),
      donate_argnums=(0,),
  )
  evaluator = evaluate.Evaluator(model, config, layout, eval_key)
  state = layout.replicate(state)

  # A finished run re-run: its final evaluation is in the log already.
  finished = start >= total_steps

  def run_eval(split, step):
    result = evaluator.evaluate(state.params, batchers[split])
    if log is not None and not finished:
      log.write(dict(result, step=step, split=split))
    return result

  def save(step, valid=None):
    # Every process calls the managers: Orbax synchronises them and writes
    # from process 0 only.
    host_state = saveable(layout.unreplicate(state))
    ckpt.save(step, host_state)
    if valid is not None and ckpt.save_best(step, host_state, valid['loss']):
      logging.info('New best valid loss %.4f at step %d', valid['loss'], step)

  history, t_log, t_paused = [], time.time(), 0.0
  with _Preemption() as preempt:
    for step in range(start, total_steps):
      batch = parallel.process_rows(train_batcher.train_batch(step))
      state, metrics = p_train(state, layout.shard(batch), train_key)
      history.append(metrics)
      done = step + 1
      if done % config.train.log_every_steps == 0 or done == total_steps:
        summary = _summarise_train([layout.first(m) for m in history])
        elapsed = time.time() - t_log - t_paused  # Train time only.
        summary['sentences_per_s'] = summary['sentences'] / elapsed
        summary['epoch'] = done / steps_per_epoch
        eta = elapsed / len(history) * (total_steps - done)
        logging.info(
            'step %d/%d epoch %.2f | loss %.3f rec %.3f kl %.3f kl_twr %.3f'
            ' beta %.3f | %.0f sent/s | ETA %s', done, total_steps,
            summary['epoch'], summary['loss'], summary['rec'], summary['kl'],
            summary['kl_twr'], summary['beta'], summary['sentences_per_s'],
            _hms(eta))
        if log is not None:
          log.write(dict(summary, step=done, split='train'))
        history, t_log, t_paused = [], time.time(), 0.0
      t_pause = time.time()
      valid = None
      if done % eval_every == 0 and done != total_steps:
        valid = run_eval('valid', done)
        logging.info('step %d valid: %s', done, _fmt(valid))
      if valid is not None or done % ckpt_every == 0:
        save(done, valid)
      t_paused += time.time() - t_pause
      if preempt.requested or done == stop_at_step:
        save(done)
        ckpt.close()
        if log is not None:
          log.close()
        return {}

  results = {s: run_eval(s, total_steps) for s in ('valid', 'test')}
  save(total_steps, results['valid'])
  ckpt.close()
  if log is not None:
    log.close()
  logging.info('Final evaluation at step %d:\n%s', total_steps,
               format_table(results))
  return results


def saveable(state: TrainState) -> dict[str, Any]:
  """The checkpointed part of a train state."""
  return dict(params=state.params, opt_state=state.opt_state, step=state.step)


def _hms(seconds: float) -> str:
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def _fmt(result: dict[str, float]) -> str:
  return ' '.join(f'{k} {v:.4g}' for k, v in result.items())


TABLE_COLUMNS = ('loss', 'rec', 'kl', 'kl_twr', 'nll_elbo', 'ppl', 'mi', 'au')


def format_table(results: dict[str, dict[str, float]]) -> str:
  """A small fixed-width table of evaluation results, one row per split."""
  head = f'{"split":<6}' + ''.join(f'{c:>10}' for c in TABLE_COLUMNS)
  rows = [head]
  for split, r in results.items():
    rows.append(f'{split:<6}' + ''.join(f'{r[c]:>10.3f}' for c in TABLE_COLUMNS))
  return '\n'.join(rows)
