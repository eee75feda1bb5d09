"""Kill-anywhere stress test of exact resume (issue 15 item 6; run by hand).

  python bench/kill_resume_stress.py [--kills=10] [--busy=2] [--seed=0]

Trains a tiny synthetic run with `launch.train` without interruption, then
trains the same config in a second workdir while SIGKILLing the process at
`--kills` moments: odd kills at a random time, even kills the moment a
checkpoint write is under way (an Orbax temporary folder appears). After each
kill the same command resumes. The final parameters must be bitwise equal to
the uninterrupted run's. Then it sends SIGTERM to a fresh run mid-training and
measures the time from the signal to the checkpoint on disk and to the
process's exit, and how many steps past the last logged one it saved.

`--busy=N` starts N CPU busy loops for the whole test (killed at the end), to
check that nothing depends on timing. Not run in CI: it takes minutes. The
runs share a persistent JAX compilation cache in $TMPDIR/kill_resume_jax_cache
(the same executables, so the same numbers), so only the first run compiles.
"""

import argparse
import glob
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import orbax.checkpoint as ocp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 30
FLAGS = [
    '--config=configs/synthetic.py:vae',  # Annealed KL: beta resumes too.
    '--config.data.synthetic.num_train=128',
    '--config.data.synthetic.num_valid=32',
    '--config.data.synthetic.num_test=32',
    '--config.model.emb_dim=8', '--config.model.hidden=16',
    '--config.model.latent=4', '--config.train.batch_size=16',
    '--config.eval.batch_size=16', '--config.eval.mi_group_size=8',
    f'--config.train.num_steps={STEPS}', '--config.train.log_every_steps=1',
    '--config.train.eval_every_steps=10', '--config.data.bucket_size=32',
    '--config.train.checkpoint_every_steps=2', '--config.train.parallel=jit',
    # Keep every checkpoint, so each resumed segment is compared step by step.
    '--config.train.keep_checkpoints=1000',
]


def command(workdir):
  return [sys.executable, '-m', 'launch.train', f'--workdir={workdir}'] + FLAGS


def start(workdir, log):
  # A persistent compilation cache: every run after the first starts in
  # seconds (the cached executables are the same code, so results are too).
  cache = os.path.join(tempfile.gettempdir(), 'kill_resume_jax_cache')
  env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_COMPILATION_CACHE_DIR=cache,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  return subprocess.Popen(command(workdir), cwd=ROOT, stdout=log,
                          stderr=subprocess.STDOUT, env=env)


def log_since(workdir, offset):
  path = os.path.join(workdir, 'train.log')
  if not os.path.exists(path):
    return ''
  with open(path) as f:
    f.seek(offset)
    return f.read()


def log_size(workdir):
  path = os.path.join(workdir, 'train.log')
  return os.path.getsize(path) if os.path.exists(path) else 0


def last_dir(workdir):
  return os.path.join(workdir, 'checkpoints', 'last')


def steps(workdir):
  return sorted(int(d) for d in os.listdir(last_dir(workdir)) if d.isdigit())


def temporary_folders(workdir):
  return set(glob.glob(os.path.join(last_dir(workdir), '*tmp*')))


def params(workdir, step):
  path = os.path.join(last_dir(workdir), str(step), 'default')
  return ocp.StandardCheckpointer().restore(path)['params']


def leaves_equal(a, b):
  if isinstance(a, dict):
    return a.keys() == b.keys() and all(leaves_equal(a[k], b[k]) for k in a)
  return np.array_equal(np.asarray(a), np.asarray(b))


def run_to_end(workdir, log):
  proc = start(workdir, log)
  if proc.wait() != 0:
    raise SystemExit(f'run failed ({proc.returncode}); see {log.name}')


def stress(base, kills, rng, log):
  """Returns the number of kills after which the resumed process wrote only
  checkpoints bitwise equal to the uninterrupted run's, and final equality."""
  full, workdir = os.path.join(base, 'full'), os.path.join(base, 'killed')
  t0 = time.time()
  run_to_end(full, log)
  duration = time.time() - t0
  print(f'uninterrupted run: {duration:.0f} s', flush=True)
  kept = lambda: set(steps(workdir)) if os.path.isdir(last_dir(workdir)) else set()
  segments = []  # Steps each process after a kill wrote.
  for k in range(kills):
    before = kept()
    offset = log_size(workdir)
    proc = start(workdir, log)
    t = time.time()
    during_write = k % 2 == 1
    if during_write:  # Kill as soon as a new checkpoint write begins.
      leftovers = temporary_folders(workdir)  # From earlier kills.
      while proc.poll() is None and temporary_folders(workdir) <= leftovers:
        time.sleep(0.002)
    else:  # Kill a random moment after a step soon after the resumed one.
      target = min(max(before, default=0) + rng.randint(1, 3), STEPS - 1)
      while (proc.poll() is None and
             f' step {target}/' not in log_since(workdir, offset)):
        time.sleep(0.01)
      time.sleep(rng.uniform(0.0, 0.5))
    if proc.poll() is not None:
      print(f'kill {k + 1}: the run had finished first', flush=True)
      break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if k:
      segments.append(kept() - before)
    print(f'kill {k + 1}: after {time.time() - t:.1f} s'
          f'{" during a checkpoint write" if during_write else ""};'
          f' newest step {max(kept(), default=None)}', flush=True)
  before = kept()
  run_to_end(workdir, log)
  segments.append(kept() - before)
  survived = 0
  for k, new in enumerate(segments):
    equal = all(leaves_equal(params(full, s), params(workdir, s))
                for s in sorted(new))
    survived += equal
    print(f'resume after kill {k + 1}: wrote steps {sorted(new)}; bitwise'
          f' equal to the uninterrupted run: {equal}', flush=True)
  final = max(steps(workdir)) == STEPS and leaves_equal(
      params(full, STEPS), params(workdir, STEPS))
  print(f'RESULT {survived}/{len(segments)} resumes exact; final step'
        f' {STEPS} parameters bitwise equal: {final}', flush=True)
  return final and survived == len(segments)
def sigterm_latency(base, log):
  """Seconds from SIGTERM to the checkpoint and to exit; steps past the log."""
  workdir = os.path.join(base, 'term')
  log_path = os.path.join(workdir, 'train.log')
  proc = start(workdir, log)
  # Wait for a logged training step past the first checkpoint.
  while proc.poll() is None:
    if os.path.exists(log_path) and ' step 15/' in open(log_path).read():
      break
    time.sleep(0.05)
  before = set(steps(workdir))
  t = time.time()
  proc.send_signal(signal.SIGTERM)
  saved_at = None
  while proc.poll() is None:
    if saved_at is None and set(steps(workdir)) - before:
      saved_at = time.time()
    time.sleep(0.002)
  exited = time.time()
  saved_at = saved_at or exited
  with open(log_path) as f:
    logged = [int(m) for m in re.findall(r' step (\d+)/', f.read())]
  print(f'SIGTERM: checkpoint after {saved_at - t:.2f} s, exit after'
        f' {exited - t:.2f} s (code {proc.returncode}); saved step'
        f' {max(steps(workdir))}, last logged step {max(logged)}', flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--kills', type=int, default=10,
                      help='0: only the SIGTERM latency')
  parser.add_argument('--busy', type=int, default=0,
                      help='CPU busy-loop processes to run meanwhile')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--keep', action='store_true', help='keep the workdirs')
  args = parser.parse_args()
  rng = random.Random(args.seed)
  base = tempfile.mkdtemp(prefix='kill_resume_')
  busy = [subprocess.Popen([sys.executable, '-c', 'while True: pass'])
          for _ in range(args.busy)]
  # A SIGTERM to this script also ends the busy loops (via `finally`).
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
  try:
    with open(os.path.join(base, 'runs.log'), 'w') as log:
      print(f'workdirs and log in {base}; load {os.getloadavg()}', flush=True)
      ok = stress(base, args.kills, rng, log) if args.kills else True
      sigterm_latency(base, log)
  finally:
    for p in busy:
      p.kill()
      p.wait()
    if not args.keep:
      shutil.rmtree(base, ignore_errors=True)
  print(f'load {os.getloadavg()}')
  sys.exit(0 if ok else 1)


if __name__ == '__main__':
  main()
