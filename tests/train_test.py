"""Tests of the train step, device layouts, resume and the launcher."""

import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from configs import default
from configs import synthetic as synthetic_config
from twr_jax import train
from twr_jax.core import checkpoint
from twr_jax.core import optim
from twr_jax.core import parallel
from twr_jax.core import schedules
from twr_jax.core import text
from twr_jax.lm import data as datasets
from twr_jax.lm import input_pipeline
from twr_jax.lm import model as models
from twr_jax.lm import task as lm_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Overrides that pad every tiny synthetic sentence (<= 21 tokens) to one
# length: one shape for the train and eval steps, so fewer programs to compile
# for tests that do not need several buckets.
ONE_BUCKET = {'data.bucket_size': 24}


def tiny_config(variant='twr', **overrides):
  c = synthetic_config.get_config(variant)
  c.data.synthetic.update(num_train=96, num_valid=32, num_test=32)
  c.model.update(emb_dim=8, hidden=16, latent=4)
  c.train.update(batch_size=16, num_steps=8, log_every_steps=2,
                 eval_every_steps=4)
  c.eval.update(batch_size=16, mi_group_size=8)
  return default.set_fields(c, overrides)


@pytest.fixture(scope='module')
def setup():
  config = tiny_config()
  data = datasets.load(config)
  batcher = input_pipeline.Batcher(data.splits['train'], 16, 8, 0)
  model = models.model_from_config(config, len(data.vocab))
  return config, data, batcher, model


def new_state(config, model):
  return lm_task.create_train_state(model, optim.optimizer_from_config(config),
                                  jax.random.key(3))


def compiled_step(config, model, layout, wrap=lambda f: f):
  kl = schedules.make_kl_schedule('constant')
  return layout.compile(wrap(lm_task.make_train_step(model, config, kl)), 3,
                        broadcast_argnums=(2,))


def test_one_step_changes_every_parameter(setup):
  config, _, batcher, model = setup
  layout = parallel.make_layout('jit')
  state = new_state(config, model)
  before = jax.device_get(state.params)
  after, metrics = compiled_step(config, model, layout)(
      state, batcher.train_batch(0), jax.random.key(0))
  chex.assert_tree_all_finite(metrics)
  changed = jax.tree_util.tree_map(
      lambda a, b: bool(np.any(a != b)), before, jax.device_get(after.params))
  assert all(jax.tree_util.tree_leaves(changed)), changed
  assert int(after.step) == 1
  # The pad embedding rows stay exactly zero (PyTorch's padding_idx).
  for table in ('enc_embed', 'dec_embed'):
    assert np.all(after.params[table]['embedding'][text.PAD] == 0)


@pytest.mark.parametrize('dropout', [0.0, 0.5])
def test_pmap_on_4_devices_equals_single_device(setup, dropout):
  config, _, batcher, _ = setup
  assert jax.local_device_count() == 4  # conftest.py
  config = tiny_config(**{'model.dropout': dropout})
  model = models.model_from_config(config, 200)
  results = []
  for mode in ('jit', 'pmap'):
    layout = parallel.make_layout(mode)
    step = compiled_step(config, model, layout)
    state = layout.replicate(new_state(config, model))
    for s in range(2):
      state, metrics = step(state, layout.shard(batcher.train_batch(s)),
                            jax.random.key(0))
    results.append((layout.unreplicate(state.params), layout.first(metrics)))
  (p1, m1), (p4, m4) = results
  chex.assert_trees_all_close(p1, p4, atol=1e-5, rtol=1e-5)
  chex.assert_trees_all_close(m1, m4, atol=1e-4, rtol=1e-5)


def test_step_compiles_once_per_bucket_shape(setup):
  config, _, batcher, model = setup
  assert len(batcher.shapes) > 1
  chex.clear_trace_counter()
  layout = parallel.make_layout('jit')
  wrap = chex.assert_max_traces(n=len(batcher.shapes))
  step = compiled_step(config, model, layout, wrap)
  state = new_state(config, model)
  for s in range(2 * batcher.num_batches):  # Two epochs.
    state, _ = step(state, batcher.train_batch(s), jax.random.key(0))


def run_steps(config, num_steps, mode='auto'):
  """Trains `num_steps` steps of `config` by hand; returns host params."""
  data = datasets.load(config)
  batcher = input_pipeline.Batcher(data.splits['train'],
                                   config.train.batch_size,
                                   config.data.bucket_size, config.seed)
  model = models.model_from_config(config, len(data.vocab))
  layout = parallel.make_layout(mode)
  step = compiled_step(config, model, layout)
  state = layout.replicate(new_state(config, model))
  for s in range(num_steps):
    batch = parallel.process_rows(batcher.train_batch(s))
    state, _ = step(state, layout.shard(batch), jax.random.key(0))
  return layout.unreplicate(state.params)


def final_params(config, workdir):
  data = datasets.load(config, workdir, splits=('train',))
  state = new_state(config, models.model_from_config(config, len(data.vocab)))
  ckpt = checkpoint.Checkpointer(workdir)
  restored, step = ckpt.restore(checkpoint.saveable(state))
  ckpt.close()
  return restored, step


def read_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_kill_and_resume_equals_uninterrupted_run(tmp_path):
  config = tiny_config('vae')  # Annealed KL: beta must resume too.
  full, resumed = str(tmp_path / 'full'), str(tmp_path / 'resumed')
  want = train.train_and_evaluate(config, full)
  assert train.train_and_evaluate(config, resumed, stop_at_step=3) == {}
  _, step = final_params(config, resumed)
  assert step == 3
  got = train.train_and_evaluate(config, resumed)
  (p_full, s_full), (p_res, s_res) = (final_params(config, w)
                                      for w in (full, resumed))
  assert s_full == s_res == 8
  chex.assert_trees_all_equal(p_full, p_res)
  assert got == want
  # The resumed log has each record once, like the uninterrupted one.
  strip = lambda recs: [(r['step'], r['split']) for r in recs]
  assert strip(read_metrics(resumed)) == strip(read_metrics(full))
  # Re-running a finished run evaluates again without duplicating lines.
  assert train.train_and_evaluate(config, resumed) == want
  assert strip(read_metrics(resumed)) == strip(read_metrics(full))


def test_launch_train_writes_metrics_events_and_checkpoints(tmp_path):
  workdir = str(tmp_path / 'run')
  cmd = [sys.executable, '-m', 'launch.train',
         '--config=configs/synthetic.py:twr', f'--workdir={workdir}',
         '--config.data.synthetic.num_train=64',
         '--config.data.synthetic.num_valid=16',
         '--config.data.synthetic.num_test=16', '--config.model.hidden=16',
         '--config.model.emb_dim=8', '--config.model.latent=4',
         '--config.train.batch_size=16', '--config.eval.batch_size=16',
         '--config.train.num_steps=4', '--config.train.log_every_steps=2']
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'nll_elbo' in proc.stdout  # The final table.
  records = read_metrics(workdir)
  splits = {r['split'] for r in records}
  assert splits == {'train', 'valid', 'test'}
  for r in records:
    assert {'step', 'split', 'loss', 'rec', 'kl'} <= set(r)
    if r['split'] != 'train':
      assert {'mi', 'au', 'ppl'} <= set(r)
  files = os.listdir(os.path.join(workdir, 'tensorboard'))
  assert any(f.startswith('events.out.tfevents.') for f in files)
  assert os.listdir(os.path.join(workdir, 'checkpoints', 'last')) == ['4']
  assert os.listdir(os.path.join(workdir, 'checkpoints', 'best')) == ['4']
  for name in ('config.json', 'vocab.txt'):
    assert os.path.exists(os.path.join(workdir, name))


def test_unknown_variant_lists_the_allowed_ones():
  with pytest.raises(ValueError,
                     match="(?s)unknown variant 'twr_lstm'.*twr_mean"):
    synthetic_config.get_config('twr_lstm')


@pytest.mark.parametrize('field, value, allowed', [
    ('model.cell', 'transformer', "'lstm', 'gru', 'rnn'"),
    ('model.z_mode', 'max', "'last', 'mean', 'sum'"),
    ('model.kl_window', 'last10', "'all', 'last25'"),
    ('train.kl_schedule.kind', 'cosine', "'constant', 'linear'"),
])
def test_invalid_values_fail_listing_allowed(tmp_path, field, value, allowed):
  config = tiny_config(**{field: value})
  with pytest.raises(ValueError, match=f'config.{field}.*{allowed}'):
    train.train_and_evaluate(config, str(tmp_path))


def test_missing_split_names_the_file(tmp_path):
  (tmp_path / 'train.txt').write_text('a b\n')
  (tmp_path / 'test.txt').write_text('a b\n')
  config = default.apply_variant(default.get_config(), 'twr')
  config.data.dir = str(tmp_path)
  with pytest.raises(text.DataError, match='valid.txt'):
    train.train_and_evaluate(config, str(tmp_path / 'w'))
