"""Tests of the dialogue task: configs, train step, loop, evaluation."""

import json
import os
import subprocess
import sys

from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from configs import dailydialog
from configs import switchboard
from twr_jax import errors
from twr_jax import tasks
from twr_jax import train
from twr_jax.core import optim
from twr_jax.core import parallel
from twr_jax.core import schedules
from twr_jax.dialogue import data as dialogue_data
from twr_jax.dialogue import decoding as dialogue_decoding
from twr_jax.dialogue import metrics as dialogue_metrics
from twr_jax.dialogue import model as dialogue_model
from twr_jax.dialogue import report as dialogue_eval
from twr_jax.dialogue import task as dialogue_train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
WORDS = ('hello how are you fine thanks what about the weather it is nice'
         ' today i like tea do want some yes please no ok').split()


def write_dailydialog(folder, seed=0, sizes=(48, 12, 12)):
  """A small corpus in DailyDialog's format: 3-7 turns of 2-9 words."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  for split, n in zip(('train', 'valid', 'test'), sizes):
    with open(os.path.join(folder, f'{split}.utts.txt'), 'w') as f:
      for _ in range(n):
        turns = [' '.join(rng.choice(WORDS, rng.integers(2, 10)))
                 for _ in range(rng.integers(3, 8))]
        f.write(' __eou__ '.join(turns) + ' __eou__\n')
  return folder


def tiny_config(data_dir, variant='tiny', **overrides):
  c = dailydialog.get_config(variant)
  c.data.dir = str(data_dir)
  c.data.update(vocab_size=40, max_utt_len=12, window=5)
  c.model.update(emb_dim=8, utt_hidden=8, ctx_hidden=8, latent=4)
  c.train.update(batch_size=8, num_steps=6, log_every_steps=2,
                 eval_every_steps=3)
  c.eval.update(batch_size=8, sample_batch_size=8, num_samples=3, max_len=6)
  return default.set_fields(c, overrides)


def _read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return write_dailydialog(str(tmp_path_factory.mktemp('dd')))


@pytest.fixture(scope='module')
def task(data_dir):
  config = tiny_config(data_dir)
  layout = parallel.make_layout('jit')
  return dialogue_train.DialogueTask(config, None, layout, jax.random.key(1))


@pytest.mark.parametrize('module', [dailydialog, switchboard])
@pytest.mark.parametrize('variant', ['twr', 'compat', 'tiny'])
def test_configs_validate(module, variant):
  c = module.get_config(variant)
  tasks.validate(c)
  assert c.task == 'dialogue' and c.variant == variant


def test_paper_sizes():
  c = dailydialog.get_config()
  assert (c.model.emb_dim, c.model.utt_hidden, c.model.ctx_hidden,
          c.model.latent) == (200, 300, 300, 200)
  assert (c.train.batch_size, c.seed, c.data.window, c.data.max_utt_len,
          c.data.vocab_size) == (96, 1111, 10, 40, 10000)
  assert c.train.kl_schedule.kind == 'linear'
  assert switchboard.get_config().train.kl_schedule.kind == 'constant'


@pytest.mark.parametrize('field, value, message', [
    ('data.format', 'reddit', "'switchboard', 'dailydialog'"),
    ('model.kl_mask', 'all', "'valid', 'padded'"),
    ('data.window', 1, 'data.window'),
    ('eval.num_samples', 0, 'eval.num_samples'),
    ('data.file_pattern', 'train.txt', '{split}'),
])
def test_invalid_values_name_the_field(data_dir, field, value, message):
  c = tiny_config(data_dir, **{field: value})
  with pytest.raises(ValueError, match=message.replace('{', r'\{')):
    tasks.validate(c)


def test_missing_file_names_split_and_path(tmp_path, data_dir):
  c = tiny_config(data_dir)
  c.data.splits.train = 'nope'
  with pytest.raises(errors.DataError, match=r'nope\.utts\.txt.*train'):
    dialogue_data.read_split(c, 'train')


def test_dailydialog_kl_schedule_from_config_matches_the_original_loop(task):
  """The config's linear schedule over batches-per-epoch is SPEC B.4's: the
  original sets beta = 0.1, then beta <- min(1, beta + 1 / (10 N)) before
  every step (`--warmup 10`), reaching 1 after 9 epochs."""
  n = task.train_batcher.num_batches
  schedule = jax.jit(
      train._kl_schedule(task.config, task.kl_steps_per_epoch, 100))
  beta = 0.1
  for step in range(11 * n):
    beta = min(1.0, beta + 1.0 / (10 * n))  # Before the step.
    np.testing.assert_allclose(schedule(step), beta, rtol=1e-6)
  assert schedule(9 * n - 2) < 1.0
  assert schedule(9 * n - 1) == 1.0


def _step(task, layout):
  kl = schedules.make_kl_schedule('constant')
  return layout.compile(task.make_train_step(kl), 3, broadcast_argnums=(2,))


def _state(task, config):
  return train_state.TrainState.create(
      apply_fn=task.model.apply, params=task.init_params(jax.random.key(0)),
      tx=optim.optimizer_from_config(config))


def test_one_training_step(task):
  state = _state(task, task.config)
  batch = task.train_batcher.train_batch(0)
  new, metrics = jax.jit(task.make_train_step(
      schedules.make_kl_schedule('constant')))(state, batch,
                                                jax.random.key(2))
  assert int(new.step) == 1
  assert metrics['sentences'] == batch['weights'].sum()
  for k in ('loss', 'rec', 'kl', 'kl_twr', 'grad_norm'):
    assert np.isfinite(metrics[k]), k
  np.testing.assert_allclose(metrics['loss'],
                             metrics['rec'] + metrics['kl_twr'], rtol=1e-5)
  changed = jax.tree_util.tree_map(
      lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
      state.params, new.params)
  assert all(jax.tree_util.tree_leaves(changed))


@pytest.mark.parametrize('kl_mask', ['valid', 'padded'])
def test_pmap_on_4_devices_equals_single_device(data_dir, kl_mask):
  """psum of gradients and pmax of the padded N_b make pmap = one device."""
  config = tiny_config(data_dir, **{'model.kl_mask': kl_mask})
  jit_layout = parallel.make_layout('jit')
  task = dialogue_train.DialogueTask(config, None, jit_layout,
                                     jax.random.key(1))
  batch = task.train_batcher.train_batch(3)
  key = jax.random.key(5)
  state = _state(task, config)
  one, m1 = _step(task, jit_layout)(state, batch, key)
  layout = parallel.make_layout('pmap')
  assert layout.num_devices == 4
  # Packed batches are packed per device (each block of rows on its own).
  rows = task.train_batcher.batcher.train_batch(3)
  four, m4 = _step(task, layout)(
      layout.replicate(state),
      layout.shard(dialogue_data.pack_batch(rows, layout.num_devices)), key)
  four, m4 = layout.unreplicate(four), layout.first(m4)
  for k in ('loss', 'rec', 'kl_twr', 'kl'):
    np.testing.assert_allclose(m4[k], m1[k], rtol=2e-5)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6),
      four.params, one.params)


def test_applied_twice_is_two_sequential_updates():
  """SPEC B.5: the embedding listed twice gets two Adam updates per step."""
  tx = optim.make_optimizer(learning_rate=0.1, weight_decay=0.01)
  params = {'embed': jnp.array([1.0, -2.0]), 'out': jnp.array([0.5])}
  grads = {'embed': jnp.array([0.3, 0.1]), 'out': jnp.array([-1.0])}
  double = optim.double_update(tx, 'embed')
  state = double.init(params)
  updates, state = double.update(grads, state, params)
  got = optax.apply_updates(params, updates)
  # By hand: torch visits the embedding twice with the same gradient.
  s = tx.init(params['embed'])
  u1, s = tx.update(grads['embed'], s, params['embed'])
  p1 = params['embed'] + u1
  u2, s = tx.update(grads['embed'], s, p1)
  np.testing.assert_allclose(got['embed'], p1 + u2, rtol=1e-6)
  u, _ = tx.update(grads['out'], tx.init(params['out']), params['out'])
  np.testing.assert_allclose(got['out'], params['out'] + u, rtol=1e-6)
  assert not np.allclose(p1 + u2, p1)


def test_word_vectors_initialise_the_embedding(tmp_path, data_dir):
  config = tiny_config(data_dir)
  vocab = dialogue_data.load_vocab(config, None)
  path = tmp_path / 'vectors.txt'
  rng = np.random.default_rng(0)
  vectors = {w: rng.normal(size=8).round(4) for w in WORDS[:5]}
  path.write_text(''.join(
      w + ' ' + ' '.join(map(str, v)) + '\n' for w, v in vectors.items()))
  config.model.word_vectors = str(path)
  model = dialogue_model.model_from_config(config, len(vocab))
  params = dialogue_train.init_params(model, jax.random.key(0), config, vocab)
  table = np.asarray(params['embed']['embedding'])
  for w, v in vectors.items():
    np.testing.assert_allclose(table[vocab.tokens.index(w)], v, rtol=1e-6)
  assert not table[dialogue_data.PAD].any()
  config.model.emb_dim = 6
  with pytest.raises(ValueError, match='8 dimensions'):
    dialogue_train.init_params(
        dialogue_model.model_from_config(config, len(vocab)),
        jax.random.key(0), config, vocab)


def test_train_resume_and_evaluate_end_to_end(tmp_path, data_dir):
  """Loop (stop + resume) -> launch.evaluate -> both modes + samples file."""
  workdir = str(tmp_path / 'run')
  config = tiny_config(data_dir)
  assert train.train_and_evaluate(config, workdir, stop_at_step=3) == {}
  results = train.train_and_evaluate(config, workdir)
  assert set(results) == {'valid', 'test'}
  assert results['test']['sentences'] == len(dialogue_data.eval_examples(
      dialogue_data.read_split(config, 'test'),
      dialogue_data.load_vocab(config, workdir), 5, 12))
  for r in results.values():
    assert np.isfinite(r['ppl']) and r['nll_elbo'] >= r['rec']
  records = _read_jsonl(f'{workdir}/metrics.jsonl')
  steps = [r['step'] for r in records if r['split'] == 'train']
  assert steps == [2, 4, 6]

  vectors = tmp_path / 'vectors.txt'
  vectors.write_text(''.join(
      f'{w} ' + ' '.join(str(x) for x in np.random.default_rng(i).normal(
          size=3).round(3)) + '\n' for i, w in enumerate(WORDS)))
  env = dict(os.environ, PYTHONPATH=ROOT)
  out = subprocess.run(
      [sys.executable, '-m', 'launch.evaluate', f'--workdir={workdir}',
       '--split=test', f'--word_vectors={vectors}'],
      cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
  assert 'paper (SPEC B.7' in out and 'standard (SPEC B.8' in out
  with open(f'{workdir}/eval_test.json') as f:
    result = json.load(f)
  assert result['num_contexts'] == results['test']['sentences']
  for key in ('bleu_recall', 'bleu_precision', 'bleu_f1', 'bow_average',
              'bow_extrema', 'bow_greedy', 'intra_dist1', 'intra_dist2',
              'inter_dist1', 'inter_dist2', 'avg_len'):
    assert np.isfinite(result['paper'][key]), key
  for key in ('bleu_recall', 'bow_greedy', 'distinct1', 'distinct2'):
    assert np.isfinite(result['standard'][key]), key
  rows = _read_jsonl(f'{workdir}/samples_test.jsonl')
  assert len(rows) == result['num_contexts']
  assert all(len(r['responses']) == 3 and r['context'] for r in rows)

  # Without word vectors the BOW metrics are skipped, and the result says so;
  # the responses then stop at </s> (no tail: only the paper BOW reads it),
  # and every other number is the full decodes' (SPEC B.7).
  again = dialogue_eval.evaluate_run(workdir, 'test', word_vectors='')
  assert again['paper']['bow'] == dialogue_metrics.BOW_SKIPPED
  assert result['paper_tail'] and not again['paper_tail']
  for mode in ('paper', 'standard'):
    kept = {k: v for k, v in result[mode].items() if not k.startswith('bow')}
    assert kept and {k: again[mode][k] for k in kept} == kept, mode


def test_references_are_checked_against_the_split_then_cut(tmp_path,
                                                           data_dir):
  """Issue 13 case 3: --references with --max_contexts=5."""
  workdir = str(tmp_path / 'run')
  config = tiny_config(data_dir, **{'train.num_steps': 1})
  train.train_and_evaluate(config, workdir)
  vocab = dialogue_data.load_vocab(config, workdir)
  examples = dialogue_data.eval_examples(
      dialogue_data.read_split(config, 'test'), vocab, 5, 12)
  assert len(examples) > 5
  # Line c holds context c's own response, so the multi-reference BLEU
  # equals the single-reference BLEU only if lines and contexts line up.
  lines = [json.dumps([' '.join(vocab.decode(ex.response))]) + '\n'
           for ex in examples]
  refs = tmp_path / 'refs.jsonl'
  refs.write_text(''.join(lines))
  result = dialogue_eval.evaluate_run(workdir, 'test', word_vectors='',
                                      references=str(refs), max_contexts=5)
  assert result['num_contexts'] == 5
  for mode in ('paper', 'standard'):
    for m in ('recall', 'precision', 'f1'):
      assert (result[mode][f'bleu_multi_{m}']
              == pytest.approx(result[mode][f'bleu_{m}'], abs=1e-12))
  # Shifted by one line, they do not: the check above can fail.
  refs.write_text(''.join(lines[1:] + lines[:1]))
  shifted = dialogue_eval.evaluate_run(workdir, 'test', word_vectors='',
                                       references=str(refs), max_contexts=5)
  assert (shifted['standard']['bleu_multi_f1']
          != pytest.approx(result['standard']['bleu_f1'], abs=1e-12))
  # A file of the first 5 lines does not match the split.
  refs.write_text(''.join(lines[:5]))
  with pytest.raises(errors.DataError, match=(
      f'5 reference lines for {len(examples)} evaluation contexts')):
    dialogue_eval.evaluate_run(workdir, 'test', word_vectors='',
                               references=str(refs), max_contexts=5)


def test_batched_sampling_equals_one_context_at_a_time(task):
  """Batching (and padding rows) does not change a context's samples."""
  params = task.init_params(jax.random.key(0))
  examples = task.examples['test'][:5]
  key = jax.random.key(9)
  batched, lens = dialogue_decoding.sample_examples(
      task.model, params, examples, task.vocab, key, num_samples=3, max_len=6,
      batch_size=8, window=5, max_utt_len=12)
  assert batched.shape == (5, 3, 6) and lens.shape == (5, 3)
  for i, example in enumerate(examples):
    batch = dialogue_data.make_batch([example], task.vocab, 1, window=5,
                                     max_utt_len=12, index=[i])
    one, one_len = dialogue_decoding.sample_responses(
        task.model, params, batch, key, 3, 6, bos_id=task.vocab.bos_id,
        eos_id=task.vocab.eos_id)
    np.testing.assert_array_equal(one[0], batched[i])
    np.testing.assert_array_equal(one_len[0], lens[i])


def test_packed_utterances_equal_the_padded_encoder(task):
  """pack_utterances (length order, trimmed calls) == encode_utterances on
  the padded batch at real turns, zeros at the others; samples agree."""
  params = task.init_params(jax.random.key(0))
  examples = task.examples['test'][:20]
  batches = list(dialogue_data.eval_batches(examples, task.vocab, 8, window=5,
                                            max_utt_len=12))
  # chunk 5 / bucket 2: several calls, several trimmed widths, a padded chunk.
  packed = dialogue_decoding.pack_utterances(task.model, params, batches,
                                         chunk=5, bucket=2)
  for batch, u in zip(batches, packed):
    full = task.model.apply(
        {'params': params}, batch['context'], batch['context_lens'],
        method=dialogue_model.DialogTWRVAE.encode_utterances)
    real = ((np.arange(batch['context'].shape[1])[None]
             < batch['num_turns'][:, None]) & (batch['weights'] > 0)[:, None])
    assert real.sum() and not real.all()
    np.testing.assert_allclose(u[real], np.asarray(full)[real], atol=1e-5)
    assert not u[~real].any()
  key = jax.random.key(9)
  kwargs = dict(num_samples=3, max_len=6, batch_size=8, window=5,
                max_utt_len=12)
  with_pack = dialogue_decoding.sample_examples(task.model, params, examples,
                                            task.vocab, key, **kwargs)
  without = dialogue_decoding.sample_examples(task.model, params, examples,
                                          task.vocab, key, pack=False, **kwargs)
  np.testing.assert_array_equal(with_pack[0], without[0])
  np.testing.assert_array_equal(with_pack[1], without[1])
