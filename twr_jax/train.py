"""Train state, the pure train step, and the training loop.

`train_and_evaluate(config, workdir)` is what the launcher, notebooks and tests
call. Everything a step depends on is derived from the step number: the batch
(`Batcher.train_batch(step)`), the per-sentence noise (from seed, step and the
sentence's index) and the KL weight. A run restarted from a checkpoint at step
s therefore continues exactly as if it had never stopped.
"""

import copy
import functools
import json
import logging as logging_lib
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
from twr_jax import errors
from twr_jax import evaluate
from twr_jax import input_pipeline
from twr_jax import lagging
from twr_jax import losses
from twr_jax import metric_log
from twr_jax import models
from twr_jax import optim
from twr_jax import parallel
from twr_jax import reconstruction
from twr_jax import run_config
from twr_jax import schedules
from twr_jax import text

Array = jax.Array
PRNGKey = jax.Array
TrainState = train_state.TrainState
LOG_FILE = 'train.log'


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


def init_params(model: models.TWRVAE, key: PRNGKey):
  """Initial parameters (PyTorch-style init, see models.py)."""
  tokens = jnp.array([[text.BOS, text.EOS, text.PAD]], jnp.int32)
  lengths = jnp.array([2], jnp.int32)
  keys = example_keys(key, 0, jnp.zeros((1,), jnp.int32))
  return jax.jit(functools.partial(model.init, train=False))(
      {'params': key}, tokens, lengths, keys
  )['params']


def create_train_state(model: models.TWRVAE, tx: optax.GradientTransformation,
                       key: PRNGKey) -> TrainState:
  """Initialises parameters and the optimiser state."""
  return TrainState.create(apply_fn=model.apply, params=init_params(model, key),
                           tx=tx)


def lm_loss(model: models.TWRVAE, config: ml_collections.ConfigDict, params,
            batch: dict[str, Array], keys: PRNGKey, beta: Array, count: Array,
            axis_name: str | None = None):
  """The language model's training objective on one batch (or device share).

  sum_b w_b (rec_b + beta K_b), or that divided by `count` ('mean'), where K_b
  is the timestep-wise KL (SPEC A.4) or, with `model.free_bits` lambda > 0,
  Kingma et al.'s free-bits term (`losses.free_bits_kl` on the per-dimension
  timestep-wise KL, batch-averaged over all devices). With `model.bn_gamma`
  (BN-VAE), mu is batch-normalised with statistics over the KL window's
  positions of the real sentences of the whole batch (`models.MuBatchNorm`).

  Args:
    model, config: the model and run config.
    params: the parameters to differentiate.
    batch: 'tokens' <i32>[B, T], 'lengths' <i32>[B], 'weights' <f32>[B].
    keys: typed PRNG keys [B], one per sentence.
    beta: the KL weight.
    count: the global number of real sentences ('mean' reduction).
    axis_name: the collective axis under pmap.

  Returns:
    (loss, aux): aux holds <f32>[B] 'rec', 'kl' (timestep-wise KL), 'kl_obj'
    (the objective's KL term), 'kl_z' (KL of the Gaussian z is drawn from),
    and with BN-VAE 'bn_stats' (the running averages after this batch).
  """
  tokens, lengths, w = batch['tokens'], batch['lengths'], batch['weights']
  window = config.model.kl_window
  # The original's arithmetic uses the batch's padded length T_b instead of
  # each sentence's own (SPEC A.4; off by default).
  padded = lambda field: config.model.get(field, 'sentence') == 'padded'
  kl_lengths = batch['enc_lengths'] if padded('kl_length') else lengths
  z_lengths = batch['enc_lengths'] if padded('z_length') else lengths
  bn = {}
  if config.model.get('bn_gamma') is not None:
    window_mask = jax.vmap(losses.kl_window_mask, in_axes=(0, None, None))(
        kl_lengths, tokens.shape[1], window)
    bn = dict(bn_mask=window_mask & (w > 0)[:, None], axis_name=axis_name)
  out = model.apply({'params': params}, tokens, lengths, keys, train=True,
                    z_lengths=z_lengths, **bn)
  rec = losses.token_nll(out['logits'], tokens[:, 1:], lengths)
  kl = losses.masked_kl(out['mu'], out['logvar'], kl_lengths, window)
  kl_obj = kl
  free_bits = config.model.get('free_bits', 0.0)
  if free_bits > 0:
    kl_dims = losses.masked_kl_dims(out['mu'], out['logvar'], kl_lengths,
                                    window)
    kl_obj = losses.free_bits_kl(kl_dims, w, free_bits, axis_name)
  loss = losses.objective(rec, kl_obj, w, beta, config.train.loss_reduction,
                          count)
  aux = dict(rec=rec, kl=kl, kl_obj=kl_obj,
             kl_z=losses.gaussian_kl(out['z_mu'], out['z_logvar']))
  if 'bn_stats' in out:
    aux['bn_stats'] = out['bn_stats']
  return loss, aux


def make_train_step(model: models.TWRVAE, config: ml_collections.ConfigDict,
                    kl_weight: Callable[[Array], Array]) -> Callable:
  """Returns the pure train step `(state, batch, key, *, axis_name)`.

  The step computes the paper's objective, sum over sentences of
  rec + beta * timestep-wise KL (SPEC A.4), or its per-sentence mean, or a
  baseline's variant of it (`lm_loss`). Under
  pmap each device holds part of the batch: gradients and metric sums are
  `psum`-med over `axis_name`, which makes the update equal to the one for the
  whole batch on one device (for 'mean' the divisor is the global count).

  Metrics are sums over sentences (divide on the host): 'loss' (the objective
  optimised, at this beta), 'rec', 'kl_twr' (the timestep-wise KL, without
  free bits), 'kl' (KL of the posterior z is drawn from), 'sentences',
  'tokens' (scored targets, EOS included); plus 'beta' and 'grad_norm'.
  """

  def train_step(state: TrainState, batch: dict[str, Array], key: PRNGKey, *,
                 axis_name: str | None = None):
    lengths, w = batch['lengths'], batch['weights']
    keys = example_keys(key, state.step, batch['index'])
    beta = kl_weight(state.step)
    count = jnp.sum(w)
    if axis_name is not None:
      count = jax.lax.psum(count, axis_name)

    loss_fn = functools.partial(lm_loss, model, config, batch=batch, keys=keys,
                                beta=beta, count=count, axis_name=axis_name)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, aux), grads = grad_fn(state.params)
    rec, kl = aux['rec'], aux['kl']
    sums = dict(
        loss=jnp.sum(w * (rec + beta * aux['kl_obj'])), rec=jnp.sum(w * rec),
        kl_twr=jnp.sum(w * kl), kl=jnp.sum(w * aux['kl_z']),
        sentences=jnp.sum(w), tokens=jnp.sum(w * (lengths - 1)),
    )
    if axis_name is not None:
      grads, sums = jax.lax.psum((grads, sums), axis_name)
    state = state.apply_gradients(grads=grads)
    # BN-VAE: the running averages are set, not learnt (models.MuBatchNorm).
    state = state.replace(
        params=models.with_bn_stats(state.params, aux.get('bn_stats')))
    return state, dict(sums, beta=beta, grad_norm=optax.tree_utils.tree_norm(grads))

  return train_step


def _kl_schedule(config, steps_per_epoch: float, total_steps: int):
  s = config.train.kl_schedule
  return schedules.make_kl_schedule(
      s.kind, beta=s.beta, start=s.start, warmup_epochs=s.warmup_epochs,
      train_size=steps_per_epoch, batch_size=1,
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
  that it can checkpoint before stopping. A second Ctrl-C stops at once.

  The signal is not swallowed: once the checkpoint is saved and the run
  closed, `train_and_evaluate` delivers it again under the caller's handler
  (`_StopSignal`), so a terminated process terminates and an interrupted
  notebook cell is interrupted. (It used to return {} like a `stop_at_step`
  stop: a test process that a CI timeout sent SIGTERM mid-run carried on and
  found the run's latest checkpoint at the step in flight, `assert 8 == 6`.)
  """

  _SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum = None
    self._old = {}

  @property
  def requested(self) -> bool:
    return self.signum is not None

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
    self.signum = signum
    signal.signal(signum, self._old.get(signum, signal.SIG_DFL))

  def __exit__(self, *exc):
    for s, handler in self._old.items():
      signal.signal(s, handler)


class _StopSignal(BaseException):
  """Raised by the loop after saving on a signal; carries the signal."""

  def __init__(self, signum: int):
    super().__init__(signum)
    self.signum = signum


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


class LMTask:
  """The language-model task: its data, model, train step and evaluation.

  `train_and_evaluate` drives any task with this interface (see also
  `dialogue_train.DialogueTask`):

    model, train_batcher (train_batch(step), num_batches), kl_steps_per_epoch,
    init_params(key), make_train_step(kl_weight), evaluate(params, split).
  """

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
    self._evaluator = evaluate.Evaluator(self.model, config, layout, eval_key)
    self._layout = layout

  def init_params(self, key: PRNGKey):
    return init_params(self.model, key)

  def make_train_step(self, kl_weight: Callable[[Array], Array]) -> Callable:
    return make_train_step(self.model, self.config, kl_weight)

  def evaluate(self, params, split: str, final: bool = False
               ) -> dict[str, Any]:
    """The standard metrics (evaluate.py) and greedy reconstruction from
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


def make_task(config: ml_collections.ConfigDict, workdir: str,
              layout: parallel.Layout, eval_key: PRNGKey):
  """The task `config.task` names: 'lm' (default) or 'dialogue'."""
  if config.get('task', 'lm') == 'dialogue':
    from twr_jax import dialogue_train  # pylint: disable=g-import-not-at-top
    return dialogue_train.DialogueTask(config, workdir, layout, eval_key)
  return LMTask(config, workdir, layout, eval_key)


# Terms of a train step's metrics checked for finiteness, with their names
# in the error message (issue 15: say which term diverged).
_FINITE_TERMS = {'rec': 'reconstruction (rec)', 'kl_twr': 'KL (kl_twr)',
                 'kl': 'KL of z (kl)', 'loss': 'loss',
                 'grad_norm': 'gradient norm'}


def _first_non_finite(pending, layout) -> tuple[int, dict[str, float]] | None:
  """The first (step, {term: value}) with a non-finite metric, or None.

  `pending` holds (step, device metrics) of steps not yet checked. Called
  before every save and at log steps, where the metrics are fetched anyway.
  """
  for done, metrics in pending:
    host = layout.first(metrics)
    bad = {name: float(host[k]) for k, name in _FINITE_TERMS.items()
           if k in host and not np.isfinite(host[k])}
    if bad:
      return done, bad
  return None


class _Eta:
  """Remaining training time from steady-state steps.

  The clock starts when the first step after a (re)start has finished, so
  that its compilation is not counted, and stops during pauses (evaluation,
  checkpoints). Issue 13 item 7: the first progress line used to show 15
  minutes for a one-minute run.
  """

  def __init__(self):
    self.t0, self.first, self.paused = None, None, 0.0

  def start(self, done: int, now: float) -> None:
    """The first step after (re)start finished; `done` steps are done."""
    self.t0, self.first, self.paused = now, done, 0.0

  def pause(self, seconds: float) -> None:
    if self.t0 is not None:
      self.paused += seconds

  def remaining(self, done: int, total: int, now: float) -> float | None:
    """Seconds left after `done` of `total` steps; None before two steps."""
    if self.t0 is None or done <= self.first:
      return None
    per_step = (now - self.t0 - self.paused) / (done - self.first)
    return per_step * (total - done)


def _add_log_file(workdir: str) -> logging_lib.Handler:
  """Copies the absl log lines to workdir/train.log (appended on resume)."""
  handler = logging_lib.FileHandler(os.path.join(workdir, LOG_FILE), mode='a')
  handler.setFormatter(logging.PythonFormatter())
  handler.addFilter(checkpoint.DropOrbaxInfo())
  logging.get_absl_logger().addHandler(handler)
  return handler


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       stop_at_step: int | None = None) -> dict[str, Any]:
  """Trains (or resumes) a run in `workdir`, then evaluates valid and test.

  The loop is the same for every task (`make_task`): the language model and
  the dialogue model share checkpointing, resumption, logging and the
  pmap/jit step.

  Safety (issue 15): a relative `workdir` or data path is made absolute once,
  here; an existing run's saved config.json is compared with `config` before
  anything is written (`run_config.check_resume`); a checkpoint is saved
  before every evaluation, the final one included; a non-finite loss or
  gradient stops the run before it can be saved; SIGTERM / Ctrl-C save the
  step in flight and stop. The log lines also go to workdir/train.log.

  Args:
    config: the run config (see configs/default.py, configs/dialogue.py). Not
      modified: the run uses a copy with absolute paths.
    workdir: output folder: metrics.jsonl, tensorboard/, config.json,
      vocab.txt, checkpoints/, train.log.
    stop_at_step: stop (with a checkpoint) once this many steps are done, as
      if pre-empted; re-running then resumes. For notebooks with time limits
      and for tests.

  Returns:
    {'valid': metrics, 'test': metrics} from the final evaluation, or {} when
    stopped early by `stop_at_step`. On SIGTERM or Ctrl-C it saves the step
    in flight, then re-delivers the signal to the caller's handler (the
    default SIGTERM ends the process; SIGINT raises KeyboardInterrupt).

  Raises:
    errors.RunError: `workdir` is a file; its saved config differs in a field
      that is not about duration or cadence (see `run_config`); a checkpoint
      does not fit the model; or the loss / gradient became non-finite (the
      message gives the step, the term and the step to resume from).
    errors.ConfigError, errors.DataError: a bad config field or data file.
  """
  config_checks.validate(config)
  workdir = run_config.resolve_workdir(workdir)
  config = copy.deepcopy(config)
  run_config.resolve_paths(config)
  # Before anything is written: refuses an incompatible config.
  changed = run_config.check_resume(config, workdir)
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  log_file = _add_log_file(workdir) if is_chief else None
  try:
    return _train_and_evaluate(config, workdir, stop_at_step, changed,
                               is_chief)
  except _StopSignal as stop:
    signum = stop.signum
  finally:
    if log_file is not None:
      logging.get_absl_logger().removeHandler(log_file)
      log_file.close()
  # Saved and closed: now the signal does what its sender meant (the
  # default SIGTERM ends the process; SIGINT raises KeyboardInterrupt). A
  # handler that returns (or SIG_IGN) makes this an early stop.
  signal.raise_signal(signum)
  return {}


def _train_and_evaluate(config, workdir, stop_at_step, changed, is_chief):
  layout = parallel.make_layout(config.train.parallel)
  config_checks.check_batch_sizes(config, layout)
  logging.info('JAX process %d/%d, %d local devices, layout %s',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), layout)

  root_key = jax.random.key(config.seed)
  train_key, eval_key, init_key = (jax.random.fold_in(root_key, i)
                                   for i in range(3))
  task = make_task(config, workdir, layout, eval_key)
  train_batcher = task.train_batcher
  steps_per_epoch = train_batcher.num_batches
  total_steps = config.train.num_steps or (
      config.train.num_epochs * steps_per_epoch)
  eval_every = config.train.eval_every_steps or steps_per_epoch
  ckpt_every = config.train.checkpoint_every_steps or eval_every
  logging.info('%d steps (%d per epoch)', total_steps, steps_per_epoch)

  state = TrainState.create(apply_fn=task.model.apply,
                            params=task.init_params(init_key),
                            tx=optim.optimizer_from_config(config))
  logging.info('%d parameters', sum(
      x.size for x in jax.tree_util.tree_leaves(state.params)))

  ckpt = checkpoint.Checkpointer(workdir, config.train.keep_checkpoints)
  log = None
  try:
    # Raises (before config.json is replaced) if the arrays do not fit.
    restored, start = ckpt.restore(saveable(state))
    ckpt.delete_damaged()
    if restored is not None:
      state = state.replace(**restored)
      logging.info('Resumed from step %d', start)
    start = start or 0
    if start > total_steps:  # A smaller budget than the run has done.
      logging.warning('The run is at step %d, past the budget of %d steps:'
                      ' evaluating it at step %d.', start, total_steps, start)
      total_steps = start
    if is_chief:
      if changed:
        logging.warning('Config changed at step %d (recorded in %s): %s',
                        start, run_config.CHANGES_FILE, changed)
        run_config.record_changes(workdir, changed, start)
      _write_json(os.path.join(workdir, run_config.CONFIG_FILE),
                  config.to_dict())
      log = metric_log.MetricLog(workdir)
      log.truncate_after(start)
    return _loop(config, workdir, task, layout, state, ckpt, log, start,
                 total_steps, eval_every, ckpt_every, stop_at_step, train_key)
  finally:
    ckpt.close()
    if log is not None:
      log.close()


def _loop(config, workdir, task, layout, state, ckpt, log, start, total_steps,
          eval_every, ckpt_every, stop_at_step, train_key):
  """The training loop of `train_and_evaluate`, from step `start`."""
  train_batcher = task.train_batcher
  steps_per_epoch = train_batcher.num_batches
  kl_weight = _kl_schedule(config, task.kl_steps_per_epoch, total_steps)
  p_train = layout.compile(
      task.make_train_step(kl_weight), 3, broadcast_argnums=(2,),
      donate_argnums=(0,),
  )
  state = layout.replicate(state)
  # He et al.'s aggressive encoder training (language model; lagging.py).
  lag = None
  if lagging.enabled(config):
    lag = lagging.AggressiveTraining(
        config, functools.partial(lm_loss, task.model, config), kl_weight,
        models.with_bn_stats, train_batcher, layout, train_key)

  # A finished run re-run evaluates again; it logs the final evaluation only
  # if the log does not have it (an earlier final evaluation may have failed).
  final_logged = log is not None and any(
      r['step'] == total_steps and r['split'] == 'test'
      for r in metric_log.read_metrics(workdir))

  def run_eval(split, step, write=True):
    result = task.evaluate(state.params, split, final=step >= total_steps)
    if log is not None and write:
      log.write(dict(result, step=step, split=split))
    return result

  pending = []  # (step, metrics) not yet checked for finiteness.

  def check_finite():
    bad = _first_non_finite(pending, layout)
    pending.clear()
    if bad is not None:
      step, terms = bad
      latest = ckpt.latest_step()
      saved = (f'checkpoints/last/{latest} (step {latest}) is the newest'
               ' good state and a re-run resumes from it' if latest is not None
               else 'no checkpoint was saved, so a re-run starts afresh')
      raise errors.RunError(
          f'{workdir}: training diverged at step {step}: non-finite '
          + ', '.join(f'{k} = {v}' for k, v in terms.items())
          + f'. Nothing from this step on was saved; {saved}. Lower'
          ' train.learning_rate or set train.grad_clip_norm and re-run with'
          ' --config.train.allow_config_change=True, or start in a new'
          ' workdir.')

  def save(step):
    # Every process calls the managers: Orbax synchronises them and writes
    # from process 0 only. Never a non-finite state: check first.
    check_finite()
    ckpt.save(step, saveable(layout.unreplicate(state)))

  def offer_best(step, valid):
    host_state = saveable(layout.unreplicate(state))
    if ckpt.save_best(step, host_state, valid['loss']):
      logging.info('New best valid loss %.4f at step %d', valid['loss'], step)

  if 0 < start < total_steps and start % eval_every == 0:
    # An evaluation step's checkpoint is saved before its evaluation, which a
    # signal skips: redo it (every process takes part; logged if missing).
    # Its MI also steers aggressive training.
    logged = log is not None and any(
        r['step'] == start and r['split'] == 'valid'
        for r in metric_log.read_metrics(workdir))
    valid = run_eval('valid', start, write=not logged)
    offer_best(start, valid)
    if lag is not None:
      state = lag.after_eval(state, valid['mi'])

  history, t_log, t_paused = [], time.time(), 0.0
  eta = _Eta()
  previous = None
  with _Preemption() as preempt:
    for step in range(start, total_steps):
      batch = parallel.process_rows(train_batcher.train_batch(step))
      if lag is not None:
        state = lag.before_step(state, step)
      state, metrics = p_train(state, layout.shard(batch), train_key)
      done = step + 1
      history.append(metrics)
      pending.append((done, metrics))
      # Dispatch at most one step ahead: a stop request (SIGTERM) then saves
      # the step in flight, not the step the host had queued up to.
      if previous is not None:
        jax.block_until_ready(previous)
        if done - 1 == start + 1:
          eta.start(done - 1, time.time())
      previous = metrics
      if done % config.train.log_every_steps == 0 or done == total_steps:
        check_finite()
        summary = _summarise_train([layout.first(m) for m in history])
        now = time.time()
        elapsed = now - t_log - t_paused  # Train time only.
        summary['sentences_per_s'] = summary['sentences'] / elapsed
        summary['epoch'] = done / steps_per_epoch
        left = eta.remaining(done, total_steps, now)
        logging.info(
            'step %d/%d epoch %.2f | loss %.3f rec %.3f kl %.3f kl_twr %.3f'
            ' beta %.3f | %.0f sent/s | ETA %s', done, total_steps,
            summary['epoch'], summary['loss'], summary['rec'], summary['kl'],
            summary['kl_twr'], summary['beta'], summary['sentences_per_s'],
            '-' if left is None else _hms(left))
        if log is not None:
          log.write(dict(summary, step=done, split='train'))
        history, t_log, t_paused = [], time.time(), 0.0
      t_pause = time.time()
      stop = preempt.requested or done == stop_at_step
      evaluate_now = done % eval_every == 0 and done != total_steps
      # Save before evaluating: a failing evaluation loses no training.
      if evaluate_now or done % ckpt_every == 0 or stop:
        save(done)
      if evaluate_now and not preempt.requested:  # A signal can't wait.
        valid = run_eval('valid', done)
        logging.info('step %d valid: %s', done, _fmt(valid))
        offer_best(done, valid)
        if lag is not None:
          state = lag.after_eval(state, valid['mi'])
      paused = time.time() - t_pause
      t_paused += paused
      eta.pause(paused)
      if stop:
        logging.warning('Stopped at step %d (checkpoint saved); re-run the'
                        ' same command to resume.', done)
        if preempt.requested:
          raise _StopSignal(preempt.signum)
        return {}

  save(total_steps)
  try:
    # Logged once both succeed, so that a re-run logs them once.
    results = {s: run_eval(s, total_steps, write=False)
               for s in ('valid', 'test')}
  except Exception as e:
    note = (f'{workdir}: training finished and step {total_steps} is saved'
            ' in checkpoints/last, but the final evaluation failed. Fix the'
            ' cause and re-run the same command: it only evaluates.')
    logging.error('%s', note)
    e.add_note(note)
    raise
  if log is not None and not final_logged:
    for split, result in results.items():
      log.write(dict(result, step=total_steps, split=split))
  offer_best(total_steps, results['valid'])
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


TABLE_COLUMNS = ('loss', 'rec', 'kl', 'kl_twr', 'nll_elbo', 'ppl', 'mi', 'au',
                 'recon_bleu', 'recon_acc')


def format_table(results: dict[str, dict[str, float]]) -> str:
  """A small fixed-width table of evaluation results, one row per split.

  Shows the `TABLE_COLUMNS` the results have (the dialogue task has no MI/AU).
  """
  first = next(iter(results.values()), {})
  columns = [c for c in TABLE_COLUMNS if c in first]
  head = f'{"split":<6}' + ''.join(f'{c:>11}' for c in columns)
  rows = [head]
  for split, r in results.items():
    rows.append(f'{split:<6}' + ''.join(f'{r[c]:>11.3f}' for c in columns))
  return '\n'.join(rows)
