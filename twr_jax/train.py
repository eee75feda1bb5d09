"""The training loop, the same for every task.

`train_and_evaluate(config, workdir)` is what the launcher, notebooks and tests
call. It drives the task the config names (`tasks.make_task`) through the
small interface of `core/task.py`: model, optimiser, pure train step,
evaluation and an optional hook. Everything a step depends on is derived from
the step number: the batch (`train_batcher.train_batch(step)`), the
per-example noise (`core.prng`: seed, step and the example's index) and the KL
weight. A run restarted from a checkpoint at step s therefore continues
exactly as if it had never stopped.
"""

import copy
import logging as logging_lib
import os
import signal
import time
from typing import Any

from absl import logging
from flax.training import train_state
import jax
import ml_collections
import numpy as np

from twr_jax import errors
from twr_jax import tasks
from twr_jax.core import checkpoint
from twr_jax.core import config_checks
from twr_jax.core import files
from twr_jax.core import metric_log
from twr_jax.core import parallel
from twr_jax.core import prng
from twr_jax.core import run_config
from twr_jax.core import schedules

LOG_FILE = 'train.log'


def _kl_schedule(config, steps_per_epoch: float, total_steps: int):
  s = config.train.kl_schedule
  return schedules.make_kl_schedule(
      s.kind, beta=s.beta, start=s.start, warmup_epochs=s.warmup_epochs,
      train_size=steps_per_epoch, batch_size=1,
      logistic_k=s.logistic_k, logistic_x0=s.logistic_x0,
      total_steps=total_steps, cycles=s.cycles, ratio=s.ratio,
  )


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

  The loop is the same for every task (`tasks.make_task`): the language
  model and the dialogue model share checkpointing, resumption, logging and the
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
  tasks.validate(config)
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

  train_key, eval_key, init_key = (
      prng.run_key(config.seed, salt)
      for salt in (prng.TRAIN, prng.EVAL, prng.INIT))
  task = tasks.make_task(config, workdir, layout, eval_key)
  train_batcher = task.train_batcher
  steps_per_epoch = train_batcher.num_batches
  total_steps = config.train.num_steps or (
      config.train.num_epochs * steps_per_epoch)
  eval_every = config.train.eval_every_steps or steps_per_epoch
  ckpt_every = config.train.checkpoint_every_steps or eval_every
  logging.info('%d steps (%d per epoch)', total_steps, steps_per_epoch)

  state = train_state.TrainState.create(apply_fn=task.model.apply,
                                        params=task.init_params(init_key),
                                        tx=task.optimizer())
  logging.info('%d parameters', sum(
      x.size for x in jax.tree_util.tree_leaves(state.params)))

  ckpt = checkpoint.Checkpointer(workdir, config.train.keep_checkpoints)
  log = None
  try:
    # Raises (before config.json is replaced) if the arrays do not fit.
    restored, start = ckpt.restore(checkpoint.saveable(state))
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
      files.write_json(os.path.join(workdir, run_config.CONFIG_FILE),
                       config.to_dict(), sort_keys=True)
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
  # E.g. He et al.'s aggressive encoder training (lm/lagging.py).
  hook = task.train_hook(kl_weight, train_key)

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
    ckpt.save(step, checkpoint.saveable(layout.unreplicate(state)))

  def offer_best(step, valid):
    host_state = checkpoint.saveable(layout.unreplicate(state))
    if ckpt.save_best(step, host_state, valid['loss']):
      logging.info('New best valid loss %.4f at step %d', valid['loss'], step)

  if 0 < start < total_steps and start % eval_every == 0:
    # An evaluation step's checkpoint is saved before its evaluation, which a
    # signal skips: redo it (every process takes part; logged if missing).
    # Its MI also steers the hook (aggressive training).
    logged = log is not None and any(
        r['step'] == start and r['split'] == 'valid'
        for r in metric_log.read_metrics(workdir))
    valid = run_eval('valid', start, write=not logged)
    offer_best(start, valid)
    if hook is not None:
      state = hook.after_eval(state, valid['mi'])

  history, t_log, t_paused = [], time.time(), 0.0
  eta = _Eta()
  previous = None
  with _Preemption() as preempt:
    for step in range(start, total_steps):
      batch = parallel.process_rows(train_batcher.train_batch(step))
      if hook is not None:
        state = hook.before_step(state, step)
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
        if hook is not None:
          state = hook.after_eval(state, valid['mi'])
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
  # One line per split, like the periodic evaluations; the launcher prints
  # the table (`format_table`) on stdout.
  for split, result in results.items():
    logging.info('step %d final %s: %s', total_steps, split, _fmt(result))
  return results


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
