"""Dialogue evaluation speed: batched JAX vs the original's batch-of-one loop.

  python bench/dialogue_eval_throughput.py \
      --data_dir=../shared/data/dailydialog [--contexts=2000] [--reference_contexts=100]

Paper-size model with the DailyDialog training vocabulary, on the first
`--contexts` DD test contexts: random init by default, or a trained run's
checkpoint and vocabulary with `--workdir`. Measures contexts/s of the full
evaluation, 10 greedy prior samples x at most 40 steps + every metric of both
modes (`dialogue_metrics.score_responses`):

  jax_batched   `dialogue_decoding.sample_examples` (`--batch_size` contexts per
                jitted call, context turns packed by length for the
                utterance encoder), then the metrics;
  jax_batched_all_rows  the same decoding every row at every step (what
                row compaction buys, see `sample_responses`);
  jax_batched_padded  the same with each call encoding its padded
                [B, 9, 39] context batch (what packing buys);
  torch_one     bench/reference/torch_dialogue_sample.py: one context at a
                time, a Python loop over 40 GRU steps, like the original's
                evaluate() (torch 2.13 CPU, 2 threads), then the same metrics;
  jax_one       our decoder at batch size 1, unpacked (what batching alone
                buys).

The batch-of-one loops are timed on the first `--reference_contexts`
contexts (they are slow) and their contexts/s compared with the batched run's.
Prints one JSON line with each contexts/s, the ratios and the mean number of
decoder steps per batched call.

The weights matter for one thing: `dialogue_decoding.sample_responses` stops
once every row of a call has produced `</s>`, and decodes only a prefix of
rows holding the unfinished ones (the original, and the torch loop, always
run 40 steps for every sample). A random-init model almost never emits
`</s>`, so by default every call runs all 40 steps for every row, i.e. the
decoder does the same work as torch's; with a trained `--workdir` the ratio
includes the row-steps saved. The packed context encoding saves work with
any weights (padding turns and tokens are skipped).
"""

import functools
import json
import os
import sys
import time
from unittest import mock

from absl import app
from absl import flags
import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'bench', 'reference'))
from configs import dailydialog  # pylint: disable=g-import-not-at-top
from twr_jax import tasks
from twr_jax.core import host_memory
from twr_jax.dialogue import data as dialogue_data
from twr_jax.dialogue import decoding as dialogue_decoding
from twr_jax.dialogue import metrics as dialogue_metrics
from twr_jax.dialogue import model as dialogue_model
from twr_jax.dialogue import task as dialogue_task

flags.DEFINE_string('data_dir', os.path.join(ROOT, '..', 'shared', 'data',
                                             'dailydialog'), 'DailyDialog.')
flags.DEFINE_integer('contexts', 2000, 'Test contexts of the batched run.')
flags.DEFINE_integer('reference_contexts', 100,
                     'Contexts of the batch-of-one loops.')
flags.DEFINE_integer('batch_size', 256, 'Contexts per batched call.')
flags.DEFINE_integer('threads', 2, 'torch threads.')
flags.DEFINE_string('workdir', None, 'A trained dialogue run (default: a'
                    ' random-init paper-size model).')
flags.DEFINE_enum(
    'malloc', 'keep', ['keep', 'default'],
    "'keep': host_memory.keep_freed_memory() (JAX and torch share this"
    " process), so neither page-faults its buffers in every call; 'default':"
    " glibc's defaults.")
FLAGS = flags.FLAGS

K, MAX_LEN = 10, 40


def score(vocab, examples, tokens) -> float:
  """Seconds to compute every metric of both modes for these samples."""
  t = time.perf_counter()
  hyps = [[vocab.decode(s) for s in samples] for samples in tokens]
  refs = [vocab.decode(ex.response) for ex in examples]
  dialogue_metrics.score_responses(hyps, refs)
  return time.perf_counter() - t


def decoder_steps(tokens: np.ndarray, batch_size: int) -> list[int]:
  """Decoder steps each batched call ran: its longest response + `</s>`.

  Args:
    tokens: <int>[C, K, max_len] from `sample_examples` (PAD after `</s>`).
    batch_size: contexts per call.
  """
  ran = np.sum(tokens != dialogue_data.PAD, axis=-1)  # Per sample.
  return [min(MAX_LEN, int(ran[i:i + batch_size].max()))
          for i in range(0, len(tokens), batch_size)]


def run_jax(model, params, vocab, examples, key, batch_size, config,
            pack=True, compact=True):
  """Times `sample_examples`; returns (tokens, seconds, first-run seconds).

  Compilation stays outside the timing: a first run on the same examples
  (packed: it compiles the utterance encoder for every trimmed width), or on
  one example (padded: one shape).
  """
  kwargs = dict(num_samples=K, max_len=MAX_LEN, batch_size=batch_size,
                window=config.data.window, max_utt_len=config.data.max_utt_len,
                pack=pack)
  if not compact:  # Row compaction off: a switch kept out of the API.
    all_rows = functools.partial(
        dialogue_decoding._sample_responses,  # pylint: disable=protected-access
        compact=False)
    with mock.patch.object(dialogue_decoding, 'sample_responses', all_rows):
      return run_jax(model, params, vocab, examples, key, batch_size, config,
                     pack)
  t = time.perf_counter()
  dialogue_decoding.sample_examples(model, params,
                                examples if pack else examples[:1], vocab,
                                key, **kwargs)
  first_s = time.perf_counter() - t
  t = time.perf_counter()
  tokens, _ = dialogue_decoding.sample_examples(model, params, examples, vocab,
                                            key, **kwargs)
  sample_s = time.perf_counter() - t
  return tokens, sample_s, first_s


def run_torch(vocab, examples, config):
  # OpenMP's default busy-waiting collapses under load on a shared machine
  # (see bench/train_throughput.py); PASSIVE is set before torch starts.
  os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
  import torch  # pylint: disable=g-import-not-at-top
  import torch_dialogue_sample  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(FLAGS.threads)
  torch.manual_seed(0)
  m = config.model
  net = torch_dialogue_sample.DialogSampler(
      len(vocab), m.emb_dim, m.utt_hidden, m.ctx_hidden, m.latent).eval()


  def sample(ex):
    return net.sample(torch.from_numpy(ex.context.astype(np.int64)),
                      torch.from_numpy(ex.context_lens.astype(np.int64)),
                      torch.from_numpy(ex.floors.astype(np.int64)),
                      vocab.bos_id, K, MAX_LEN).numpy()

  sample(examples[0])  # Warm-up, like the JAX runs' compilation.
  t = time.perf_counter()
  tokens = [sample(ex) for ex in examples]
  return np.stack(tokens), time.perf_counter() - t


def main(argv):
  del argv
  if FLAGS.malloc == 'keep':
    host_memory.keep_freed_memory()  # Before any JAX computation.
  if FLAGS.workdir:
    run = tasks.load_run(FLAGS.workdir, 'last')
    config, vocab, model, params = run.config, run.vocab, run.model, run.params
  else:
    config = dailydialog.get_config()
  config.data.dir = FLAGS.data_dir
  if not FLAGS.workdir:
    vocab = dialogue_data.load_vocab(config, None)
    model = dialogue_model.model_from_config(config, len(vocab))
    params = dialogue_task.init_params(model, jax.random.key(0), config,
                                        vocab)
  examples = dialogue_data.eval_examples(
      dialogue_data.read_split(config, 'test'), vocab, config.data.window,
      config.data.max_utt_len)[:FLAGS.contexts]
  key = jax.random.key(1)
  few = examples[:FLAGS.reference_contexts]
  out = {'bench': 'dialogue_eval_throughput', 'jax': jax.__version__,
         'malloc': FLAGS.malloc,
         'load_avg_start': round(os.getloadavg()[0], 2),
         'samples': K, 'max_len': MAX_LEN, 'vocab': len(vocab),
         'batch_size': FLAGS.batch_size,
         'weights': FLAGS.workdir or 'random init'}

  for name, pack, compact in (('jax_batched', True, True),
                              ('jax_batched_all_rows', True, False),
                              ('jax_batched_padded', False, True)):
    tokens, sample_s, first_s = run_jax(model, params, vocab, examples, key,
                                        FLAGS.batch_size, config, pack,
                                        compact)
    metric_s = score(vocab, examples, tokens)
    out[name] = dict(
        contexts=len(examples), sample_s=round(sample_s, 2),
        first_run_s=round(first_s, 2), metric_s=round(metric_s, 2),
        mean_decoder_steps=round(float(np.mean(decoder_steps(
            tokens, FLAGS.batch_size))), 1),
        contexts_per_s=round(len(examples) / (sample_s + metric_s), 2))

  tokens, sample_s, _ = run_jax(model, params, vocab, few, key, 1, config,
                                pack=False)
  metric_s = score(vocab, few, tokens)
  out['jax_one'] = dict(
      contexts=len(few), sample_s=round(sample_s, 2),
      metric_s=round(metric_s, 2),
      contexts_per_s=round(len(few) / (sample_s + metric_s), 2))
  try:
    tokens, sample_s = run_torch(vocab, few, config)
  except ImportError:
    out['torch_one'] = 'skipped: torch is not installed'
  else:
    metric_s = score(vocab, few, tokens)
    out['torch_one'] = dict(
        contexts=len(few), sample_s=round(sample_s, 2),
        metric_s=round(metric_s, 2),
        contexts_per_s=round(len(few) / (sample_s + metric_s), 2))
    for name in ('jax_batched', 'jax_batched_padded'):
      out[name.replace('jax_batched', 'batched') + '_over_torch_one'] = round(
          out[name]['contexts_per_s'] / out['torch_one']['contexts_per_s'], 2)
    out['torch_one'].update(threads=FLAGS.threads,
                            omp_wait_policy=os.environ['OMP_WAIT_POLICY'])
  out['batched_over_jax_one'] = round(
      out['jax_batched']['contexts_per_s'] / out['jax_one']['contexts_per_s'],
      2)
  for name in ('all_rows', 'padded'):
    out[f'jax_batched_over_{name}'] = round(
        out['jax_batched']['contexts_per_s']
        / out[f'jax_batched_{name}']['contexts_per_s'], 2)
  print(json.dumps(out))


if __name__ == '__main__':
  app.run(main)
