"""Train-step speed at paper size on real PTB batches: jit vs pmap, 1 device.

  python bench/pmap_vs_jit.py --data_dir=../shared/data/ptb [--steps=40]

Builds the paper-size model (emb 512, hidden 256, latent 32, LSTM, batch 64)
with the PTB vocabulary, compiles the train step for every bucket shape under
both `jax.jit` and `jax.pmap` (one device), then times the same sequence of
real PTB batches (their natural length mix) alternating the two, so that
machine noise hits both alike. Prints one JSON line with sentences/s of each,
the pmap/jit time ratio and the number of compiled shapes. parallel.py uses jit
on a single device when pmap costs more than 5 %.
"""

import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags
import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import ptb  # pylint: disable=g-import-not-at-top
from twr_jax.core import optim
from twr_jax.core import parallel
from twr_jax.core import schedules
from twr_jax.lm import data as datasets
from twr_jax.lm import input_pipeline
from twr_jax.lm import model as models
from twr_jax.lm import task as lm_task

flags.DEFINE_string('data_dir', '../shared/data/ptb', 'PTB folder.')
flags.DEFINE_integer('steps', 40, 'Timed steps per mode.')
FLAGS = flags.FLAGS


def main(_):
  config = ptb.get_config('twr')
  config.data.dir = FLAGS.data_dir
  data = datasets.load(config, splits=('train',))
  batcher = input_pipeline.Batcher(data.splits['train'], 64, 8, config.seed)
  model = models.model_from_config(config, len(data.vocab))
  tx = optim.optimizer_from_config(config)
  step_fn = lm_task.make_train_step(model, config,
                                  schedules.make_kl_schedule('constant'))
  key = jax.random.key(0)
  runs = {}
  for mode in ('jit', 'pmap'):
    layout = parallel.Layout(mode=mode, num_devices=1)
    state = layout.replicate(lm_task.create_train_state(model, tx, key))
    fn = layout.compile(step_fn, 3, broadcast_argnums=(2,), donate_argnums=(0,))
    t0 = time.time()
    seen = set()
    for s in range(batcher.num_batches):  # Compile every shape once.
      b = batcher.train_batch(s)
      if b['tokens'].shape[1] not in seen:
        seen.add(b['tokens'].shape[1])
        state, m = fn(state, layout.shard(b), key)
        jax.block_until_ready(m)
    runs[mode] = dict(layout=layout, fn=fn, state=state, times=[],
                      compile_s=time.time() - t0, shapes=len(seen))
  sentences, flops_tokens = 0, 0
  for s in range(FLAGS.steps):
    b = batcher.train_batch(s)
    sentences += int(b['weights'].sum())
    for r in runs.values():
      t = time.perf_counter()
      r['state'], m = r['fn'](r['state'], r['layout'].shard(b), key)
      jax.block_until_ready(m)
      r['times'].append(time.perf_counter() - t)
  out = {'bench': 'pmap_vs_jit', 'steps': FLAGS.steps, 'batch': 64,
         'devices': 1, 'jax': jax.__version__}
  for mode, r in runs.items():
    total = sum(r['times'])
    out[mode] = dict(sentences_per_s=round(sentences / total, 1),
                     median_step_ms=round(1e3 * statistics.median(r['times']), 1),
                     compile_s=round(r['compile_s'], 1), shapes=r['shapes'])
  out['pmap_over_jit_time'] = round(
      sum(runs['pmap']['times']) / sum(runs['jit']['times']), 3)
  print(json.dumps(out))


if __name__ == '__main__':
  app.run(main)
