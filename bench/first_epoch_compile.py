"""First-epoch wall time on a Yahoo-length corpus: compile cache and buckets.

  python bench/first_epoch_compile.py [--docs=800] [--growth=1.5]

Writes a synthetic corpus whose document lengths follow a Yahoo-like profile
(gamma-distributed, mean ~80 tokens, clipped to 3..200; Zipf words from a
2,000-word vocabulary), then times one training epoch of a small LSTM
TWR-VAE (`--emb`, `--hidden`; batch 32) in a fresh process each, for

  fixed_cold / fixed_warm:    data.bucket_growth = 1 (a shape per 8 tokens),
                              persistent compilation cache empty / filled by
                              the cold run;
  growth_cold / growth_warm:  data.bucket_growth = `--growth`.

Each process runs `train.train_and_evaluate(..., stop_at_step=<one epoch>)`
(no evaluation inside the epoch; the end-of-run checkpoint is included), so
the wall time is what a user waits for the first epoch, compilation and
start-up included. Prints one JSON line with each wall time, the number of
compiled train shapes and the padding fraction.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r'''
import json, sys
sys.path.insert(0, {root!r})
from configs import default
from twr_jax import train
from twr_jax.core import compile_cache
from twr_jax.lm import data as datasets
from twr_jax.lm import input_pipeline
compile_cache.enable({cache!r})
c = default.get_config()
c.data.dir = {data!r}
c.data.bucket_growth = {growth!r}
c.model.update(emb_dim={emb}, hidden={hidden}, latent=16)
c.train.update(batch_size=32, num_steps=10**6, log_every_steps=10**6,
               eval_every_steps=10**6, checkpoint_every_steps=10**6)
c.eval.batch_size = 32
seqs = datasets.load(c, splits=('train',)).splits['train']
b = input_pipeline.Batcher(seqs, 32, 8, c.seed, {growth!r})
tokens = sum(len(s) for s in seqs)
padded = sum(bt['tokens'].size for bt in b.eval_batches())
train.train_and_evaluate(c, {workdir!r}, stop_at_step=b.num_batches)
print(json.dumps(dict(shapes=len(b.shapes), steps=b.num_batches,
                      padding=round(1 - tokens / padded, 3))))
'''


def write_corpus(folder: str, docs: int, seed: int = 0) -> dict:
  """Yahoo-like lengths: gamma(2.2, 36) tokens, clipped to 3..200."""
  rng = np.random.default_rng(seed)
  vocab = np.array([f'w{i}' for i in range(2000)])
  probs = 1.0 / np.arange(1, 2001)
  probs /= probs.sum()
  os.makedirs(folder, exist_ok=True)
  lengths = {}
  for split, n in (('train', docs), ('valid', docs // 8), ('test', docs // 8)):
    ls = np.clip(rng.gamma(2.2, 36.0, n).astype(int), 3, 200)
    with open(os.path.join(folder, f'{split}.txt'), 'w') as f:
      for l in ls:
        f.write(' '.join(rng.choice(vocab, l, p=probs)) + '\n')
    lengths[split] = ls
  return dict(mean_len=round(float(lengths['train'].mean()), 1),
              max_len=int(lengths['train'].max()))


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--docs', type=int, default=800)
  p.add_argument('--growth', type=float, default=1.5)
  p.add_argument('--emb', type=int, default=64)
  p.add_argument('--hidden', type=int, default=64)
  args = p.parse_args()
  tmp = tempfile.mkdtemp()
  data = os.path.join(tmp, 'data')
  out = dict(bench='first_epoch_compile', docs=args.docs,
             emb=args.emb, hidden=args.hidden, growth=args.growth,
             load_avg_start=round(os.getloadavg()[0], 2),
             corpus=write_corpus(data, args.docs))
  env = dict(os.environ, TWR_JAX_CACHE_DIR='')
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  for name, growth in (('fixed', 1.0), ('growth', args.growth)):
    cache = os.path.join(tmp, f'cache_{name}')
    for run in ('cold', 'warm'):
      code = CHILD.format(root=ROOT, cache=cache, data=data, growth=growth,
                          emb=args.emb, hidden=args.hidden,
                          workdir=os.path.join(tmp, f'{name}_{run}'))
      t = time.perf_counter()
      res = subprocess.run([sys.executable, '-c', code], env=env, check=True,
                           capture_output=True, text=True)
      info = json.loads(res.stdout.strip().splitlines()[-1])
      out[f'{name}_{run}'] = dict(info, wall_s=round(time.perf_counter() - t,
                                                     1))
      print(json.dumps({f'{name}_{run}': out[f'{name}_{run}']}), flush=True)
  out['load_avg_end'] = round(os.getloadavg()[0], 2)
  print(json.dumps(out))


if __name__ == '__main__':
  main()
