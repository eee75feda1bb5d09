"""Issue 15 ("never lose a run") and issue 13 item 7 (ETA, train.log).

One small text run (relative workdir and data paths, one-sentence valid and
test files) is trained once per module and reused: its first attempt's final
evaluation fails on purpose, the re-run only evaluates.
"""

import json
import os
import shutil
import signal

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from twr_jax import errors
from twr_jax import tasks
from twr_jax import train
from twr_jax.core import metric_log
from twr_jax.core import run_config
from twr_jax.lm import input_pipeline
from twr_jax.lm import task as lm_task

from tests import train_test


def text_config(**overrides):
  c = default.apply_variant(default.get_config(), 'twr')
  c.data.dir = 'data'  # Relative to the test's current directory.
  c.model.update(emb_dim=8, hidden=16, latent=4)
  c.train.update(batch_size=4, num_steps=4, log_every_steps=2,
                 eval_every_steps=2, parallel='jit')
  c.eval.update(batch_size=4, mi_group_size=4)
  return default.set_fields(c, overrides)


def snapshot(path):
  """{relative file: bytes} of a folder, to prove nothing changed."""
  out = {}
  for root, _, files in os.walk(path):
    for name in files:
      full = os.path.join(root, name)
      with open(full, 'rb') as f:
        out[os.path.relpath(full, path)] = f.read()
  return out


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """cwd, workdir 'run', and the first attempt's exception and checkpoints."""
  base = tmp_path_factory.mktemp('resume')
  os.makedirs(base / 'data')
  words = 'the cat sat on a mat and the dog ran off'.split()
  rng = np.random.default_rng(0)
  lines = [' '.join(rng.choice(words, 5)) for _ in range(12)]
  (base / 'data' / 'train.txt').write_text('\n'.join(lines) + '\n')
  # One sentence each: the AU variance is undefined, which crashed after
  # training before.
  (base / 'data' / 'valid.txt').write_text('the cat sat\n')
  (base / 'data' / 'test.txt').write_text('a dog ran off\n')
  cwd, verbosity = os.getcwd(), logging.get_verbosity()
  logging.set_verbosity(logging.INFO)  # As under the launchers' app.run.
  os.chdir(base)
  mp = pytest.MonkeyPatch()
  try:
    original = lm_task.LMTask.evaluate

    def failing_final_test(self, params, split, final=False):
      if split == 'test':
        raise RuntimeError('evaluation broke')
      return original(self, params, split, final)

    mp.setattr(lm_task.LMTask, 'evaluate', failing_final_test)
    with pytest.raises(RuntimeError, match='evaluation broke') as first:
      train.train_and_evaluate(text_config(), 'run')
    mp.undo()
    steps_after_failure = sorted(os.listdir('run/checkpoints/last'))
    results = train.train_and_evaluate(text_config(), 'run')
    yield dict(base=base, first=first.value, steps=steps_after_failure,
               results=results)
  finally:
    mp.undo()
    os.chdir(cwd)
    logging.set_verbosity(verbosity)


def test_failed_final_evaluation_keeps_the_trained_state(run):
  assert run['steps'] == ['2', '4']
  assert any('re-run the same command' in n
             for n in getattr(run['first'], '__notes__', []))


def test_one_sentence_splits_report_au_as_nan(run):
  for split in ('valid', 'test'):
    assert np.isnan(run['results'][split]['au'])
    assert np.isfinite(run['results'][split]['mi'])


def test_rerun_after_failed_final_eval_logs_it_once(run):
  records = metric_log.read_metrics(run['base'] / 'run')
  finals = [(r['step'], r['split']) for r in records if r['split'] != 'train']
  assert finals == [(2, 'valid'), (4, 'valid'), (4, 'test')]


def test_relative_workdir_and_data_dir_are_saved_absolute(run):
  with open(run['base'] / 'run' / 'config.json') as f:
    saved = json.load(f)
  assert saved['data']['dir'] == str(run['base'] / 'data')
  # Evaluation tools read the run from a relative workdir too.
  loaded = tasks.load_run(os.path.relpath(run['base'] / 'run'), 'last')
  assert loaded.step == 4


def test_log_lines_go_to_train_log_across_reruns(run):
  text = (run['base'] / 'run' / 'train.log').read_text()
  assert text.count('step 4/4') == 1  # Trained once...
  assert text.count('step 4 final test:') == 1  # ...evaluated twice.
  assert 'final evaluation failed' in text


def test_changed_model_config_is_refused_without_writing(run):
  workdir = run['base'] / 'run'
  before = snapshot(workdir)
  config = text_config(**{'model.hidden': 32, 'train.learning_rate': 0.01,
                          'train.num_steps': 6})  # num_steps may change.
  with pytest.raises(errors.RunError) as e:
    train.train_and_evaluate(config, str(workdir))
  message = str(e.value)
  assert 'model.hidden: 16 -> 32' in message
  assert 'train.learning_rate: 0.0001 -> 0.01' in message
  assert 'num_steps' not in message
  assert '--config.train.allow_config_change=True' in message
  assert snapshot(workdir) == before
  # An explicit override still cannot load arrays of another shape, and the
  # message names the parameter; only train.log records the attempt.
  config.train.allow_config_change = True
  with pytest.raises(errors.RunError, match=r"\['params'\].*in the model"):
    train.train_and_evaluate(config, str(workdir))
  after = snapshot(workdir)
  assert after.pop('train.log').startswith(before.pop('train.log'))
  assert after == before


def test_allowed_change_is_recorded(run, tmp_path):
  workdir = tmp_path / 'copy'
  shutil.copytree(run['base'] / 'run', workdir)
  config = text_config(**{'train.learning_rate': 0.01, 'train.num_steps': 4,
                          'train.allow_config_change': True})
  config.data.dir = str(run['base'] / 'data')
  train.train_and_evaluate(config, str(workdir))  # Finished: evaluates.
  with open(workdir / run_config.CHANGES_FILE) as f:
    (record,) = [json.loads(line) for line in f]
  assert record['step'] == 4
  assert record['changes'] == {'train.learning_rate': [0.0001, 0.01]}


def test_workdir_misuse_is_one_run_error(tmp_path):
  (tmp_path / 'file').write_text('x')
  with pytest.raises(errors.RunError, match='is a file, not a folder'):
    train.train_and_evaluate(text_config(), str(tmp_path / 'file'))
  with pytest.raises(errors.RunError, match='is a file, not a folder'):
    tasks.load_run(str(tmp_path / 'file'))
  os.makedirs(tmp_path / 'empty')
  with pytest.raises(errors.RunError, match='not a training run'):
    tasks.load_run(str(tmp_path / 'empty'))
  assert os.listdir(tmp_path / 'empty') == []


def test_non_finite_loss_stops_before_saving(tmp_path, monkeypatch):
  make_step = lm_task.make_train_step

  def nan_from_step_5(model, config, kl_weight):
    step_fn = make_step(model, config, kl_weight)

    def step(state, batch, key, *, axis_name=None):
      bad = state.step >= 4  # The 5th step (done = 5) and after.
      state, metrics = step_fn(state, batch, key, axis_name=axis_name)
      poison = lambda x: jnp.where(bad, jnp.nan, x)
      state = state.replace(params=jax.tree_util.tree_map(poison, state.params))
      return state, dict(metrics, rec=poison(metrics['rec']))

    return step

  monkeypatch.setattr(lm_task, 'make_train_step', nan_from_step_5)
  config = train_test.tiny_config(**{
      'train.log_every_steps': 8, 'train.eval_every_steps': 8,
      'train.checkpoint_every_steps': 3, 'train.parallel': 'jit'})
  workdir = str(tmp_path / 'run')
  with pytest.raises(errors.RunError,
                     match=r'step 5: non-finite reconstruction \(rec\) = nan'
                           r'.*checkpoints/last/3'):
    train.train_and_evaluate(config, workdir)
  params, step = train_test.final_params(config, workdir)
  assert step == 3
  assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(params))
  assert not os.listdir(os.path.join(workdir, 'checkpoints', 'best'))


def test_eta_counts_steady_steps_only():
  eta = train._Eta()  # pylint: disable=protected-access
  assert eta.remaining(1, 10, 50.0) is None  # Nothing measured yet.
  eta.start(1, 100.0)  # Step 1 (compilation included) ended at 100 s.
  assert eta.remaining(1, 10, 100.0) is None
  eta.pause(6.0)  # An evaluation.
  # Steps 2..5 took 114 - 100 - 6 = 8 s: 2 s a step, 5 steps left.
  assert eta.remaining(5, 10, 114.0) == pytest.approx(10.0)


class _Terminated(Exception):
  pass


def test_sigterm_saves_the_step_in_flight_and_is_not_swallowed(
    tmp_path, monkeypatch):
  def terminated(signum, frame):
    raise _Terminated(signum)

  old = signal.signal(signal.SIGTERM, terminated)
  train_batch = input_pipeline.Batcher.train_batch

  def signal_at_step_5(self, step):
    if step == 5:  # While the host prepares step 6.
      os.kill(os.getpid(), signal.SIGTERM)
    return train_batch(self, step)

  monkeypatch.setattr(input_pipeline.Batcher, 'train_batch', signal_at_step_5)
  config = train_test.tiny_config(**{'train.parallel': 'jit',
                                     'train.log_every_steps': 8})
  workdir = str(tmp_path / 'run')
  try:
    # Before, the signal was swallowed and the call returned {} like a
    # requested early stop, so the caller carried on with a half-done run.
    with pytest.raises(_Terminated):
      train.train_and_evaluate(config, workdir)
  finally:
    signal.signal(signal.SIGTERM, old)
  _, step = train_test.final_params(config, workdir)
  assert step == 6


def test_fields_added_since_the_run_started_are_not_changes(tmp_path):
  config = text_config()
  saved = json.loads(json.dumps(config.to_dict()))
  del saved['train']['allow_config_change']
  del saved['model']['dropout']  # As if added to the code later.
  saved['model']['hidden'] = 8
  saved['data']['dir'] = 'data'
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  with pytest.raises(errors.RunError) as e:
    run_config.check_resume(config, str(tmp_path))
  assert 'model.hidden: 8 -> 16' in str(e.value)
  assert 'dropout' not in str(e.value)
  saved['model']['hidden'] = 16
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  assert run_config.check_resume(config, str(tmp_path)) == []
