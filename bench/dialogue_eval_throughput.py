"""Dialogue evaluation speed: batched JAX vs the original's batch-of-one loop.

  python bench/dialogue_eval_throughput.py \
      --data_dir=../shared/data/dailydialog [--contexts=2000] [--reference_contexts=100]

Paper-size model (random init; timing does not depend on the weights) with the
DailyDialog training vocabulary, on the first `--contexts` DD test contexts.
Measures contexts/s of the full evaluation, 10 greedy prior samples x 40
steps + every metric of both modes (`dialogue_metrics.score_responses`):

  jax_batched   `dialogue_eval.sample_examples` (`--batch_size` contexts per
                jitted call), then the metrics;
  torch_one     bench/reference/torch_dialogue_sample.py: one context at a
                time, a Python loop over 40 GRU steps, like the original's
                evaluate() (torch 2.13 CPU, 2 threads), then the same metrics;
  jax_one       our decoder at batch size 1 (what batching alone buys).

The batch-of-one loops are timed on the first `--reference_contexts`
contexts (they are slow) and their contexts/s compared with the batched run's.
Prints one JSON line with each contexts/s and the ratios.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'bench', 'reference'))
from configs import dailydialog  # pylint: disable=g-import-not-at-top
from twr_jax import dialogue_data
from twr_jax import dialogue_eval
from twr_jax import dialogue_metrics
from twr_jax import dialogue_train

flags.DEFINE_string('data_dir', os.path.join(ROOT, '..', 'shared', 'data',
                                             'dailydialog'), 'DailyDialog.')
flags.DEFINE_integer('contexts', 2000, 'Test contexts of the batched run.')
flags.DEFINE_integer('reference_contexts', 100,
                     'Contexts of the batch-of-one loops.')
flags.DEFINE_integer('batch_size', 256, 'Contexts per batched call.')
flags.DEFINE_integer('threads', 2, 'torch threads.')
FLAGS = flags.FLAGS

K, MAX_LEN = 10, 40


def score(vocab, examples, tokens) -> float:
  """Seconds to compute every metric of both modes for these samples."""
  t = time.perf_counter()
  hyps = [[vocab.decode(s) for s in samples] for samples in tokens]
  refs = [vocab.decode(ex.response) for ex in examples]
  dialogue_metrics.score_responses(hyps, refs)
  return time.perf_counter() - t


def run_jax(model, params, vocab, examples, key, batch_size, config):
  kwargs = dict(num_samples=K, max_len=MAX_LEN, batch_size=batch_size,
                window=config.data.window, max_utt_len=config.data.max_utt_len)
  # Compile outside the timing.
  dialogue_eval.sample_examples(model, params, examples[:1], vocab, key,
                                **kwargs)
  t = time.perf_counter()
  tokens, _ = dialogue_eval.sample_examples(model, params, examples, vocab,
                                            key, **kwargs)
  sample_s = time.perf_counter() - t
  return tokens, sample_s


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
  config = dailydialog.get_config()
  config.data.dir = FLAGS.data_dir
  vocab = dialogue_train.load_vocab(config, None)
  examples = dialogue_data.eval_examples(
      dialogue_train.read_split(config, 'test'), vocab, config.data.window,
      config.data.max_utt_len)[:FLAGS.contexts]
  model = dialogue_train.model_from_config(config, len(vocab))
  params = dialogue_train.init_params(model, jax.random.key(0), config, vocab)
  key = jax.random.key(1)
  few = examples[:FLAGS.reference_contexts]
  out = {'bench': 'dialogue_eval_throughput', 'jax': jax.__version__,
         'load_avg_start': round(os.getloadavg()[0], 2),
         'samples': K, 'max_len': MAX_LEN, 'vocab': len(vocab),
         'batch_size': FLAGS.batch_size}

  tokens, sample_s = run_jax(model, params, vocab, examples, key,
                             FLAGS.batch_size, config)
  metric_s = score(vocab, examples, tokens)
  out['jax_batched'] = dict(
      contexts=len(examples), sample_s=round(sample_s, 2),
      metric_s=round(metric_s, 2),
      contexts_per_s=round(len(examples) / (sample_s + metric_s), 2))

  tokens, sample_s = run_jax(model, params, vocab, few, key, 1, config)
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
    out['batched_over_torch_one'] = round(
        out['jax_batched']['contexts_per_s'] /
        out['torch_one']['contexts_per_s'], 2)
    out['torch_one'].update(threads=FLAGS.threads,
                            omp_wait_policy=os.environ['OMP_WAIT_POLICY'])
  out['batched_over_jax_one'] = round(
      out['jax_batched']['contexts_per_s'] / out['jax_one']['contexts_per_s'],
      2)
  print(json.dumps(out))


if __name__ == '__main__':
  app.run(main)
