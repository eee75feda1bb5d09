"""One device check: train step, IW-NLL and dialogue evaluation on any backend.

  python bench/device_check.py --ptb_dir=data_carry/ptb \
      --dd_dir=data_carry/dailydialog --out=$OUT/device_check.json

On whatever JAX sees (GPU, TPU or CPU) it measures, in this order (the most
wanted numbers first, so that a run cut short still has them):

  env          jax / jaxlib / flax versions, backend, devices, the default
               matmul precision setting;
  matmul_peak  an n x n matmul in float32 (default precision and HIGHEST)
               and bfloat16: the device's reachable TFLOP/s;
  train/...    the LM train step at paper size (emb 512, hidden 256, latent
               32, LSTM, PTB vocabulary) on real PTB training batches of the
               most common padded length, for jit vs pmap (all local
               devices), float32 vs bfloat16 (`train.compute_dtype`) and
               batch sizes 64 / 256 / 1024;
  iwnll/...    IW-NLL with K = 500 samples of the first 300 PTB test
               sentences (`likelihood.log_likelihood`), float32 and bfloat16;
  dialogue/... the dialogue evaluation on the first 2,000 DailyDialog test
               contexts: 10 greedy prior samples of <= 40 tokens each
               (`dialogue_decoding.sample_examples`), then every metric
               (`dialogue_metrics.score_responses`, on the host CPU).

The weights are random (PyTorch-style init) unless `--lm_workdir` /
`--dd_workdir` name trained runs; the JSON says which. A random-init dialogue
model almost never emits `</s>`, so every response runs all 40 steps (the
most decoder work); the timings do not depend on the weights otherwise.

Each measurement reports its warm-up (first call(s), compilation included)
separately from a fixed number of timed calls, each result fetched with
`block_until_ready` (or to the host) before the clock stops. Batches are
passed as host NumPy arrays, as the training loop does. The persistent
compilation cache is not used, so compile times are cold ones.

`--budget=full` is the above; `--budget=smoke` runs the same code on tiny
models and data sizes (a few seconds on a CPU, tests/device_check_test.py);
`auto` (default) picks smoke on CPU, full elsewhere. Every section runs in its
own try/except: an error is recorded in the JSON and the next section runs.
The JSON file is rewritten after every section, so a run stopped by a
timeout leaves everything measured so far; sections left when
`--time_limit_s` has passed are skipped (and say so). Ends with a table.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'bench'))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

# Per budget: the sections' sizes. 'train' cases are (mode, dtype, batch) in
# the order they run; the first few run before the evaluations.
BUDGETS = {
    'full': dict(
        lm_model=dict(emb_dim=512, hidden=256, latent=32), dd_variant='twr',
        peak_n=8192, peak_reps=10, train_steps=20, train_warmup=2,
        train_first=[('jit', 'float32', 64), ('jit', 'bfloat16', 64),
                     ('pmap', 'float32', 64)],
        train_rest=[('jit', 'float32', 256), ('jit', 'bfloat16', 256),
                    ('jit', 'float32', 1024), ('jit', 'bfloat16', 1024),
                    ('pmap', 'bfloat16', 64), ('pmap', 'float32', 1024)],
        iw_sentences=300, iw_samples=500, dd_contexts=2000, dd_samples=10,
        dd_max_len=40, time_limit_s=450),
    'smoke': dict(
        lm_model=dict(emb_dim=16, hidden=16, latent=4), dd_variant='tiny',
        peak_n=128, peak_reps=2, train_steps=2, train_warmup=1,
        train_first=[('jit', 'float32', 8), ('jit', 'bfloat16', 8),
                     ('pmap', 'float32', 8)],
        train_rest=[], iw_sentences=6, iw_samples=8, dd_contexts=6,
        dd_samples=2, dd_max_len=6, time_limit_s=3600),
}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--ptb_dir', default=os.path.join(ROOT, '..', 'shared',
                                                   'data', 'ptb'))
  p.add_argument('--dd_dir', default=os.path.join(ROOT, '..', 'shared',
                                                  'data', 'dailydialog'))
  p.add_argument('--out', default='device_check.json',
                 help='The JSON file written (after every section).')
  p.add_argument('--budget', default='auto',
                 choices=('auto', 'smoke', 'full'))
  p.add_argument('--time_limit_s', type=float, default=None,
                 help='Skip the sections left after this many seconds'
                 ' (default: the budget\'s, 450 s for full).')
  p.add_argument('--sections', default='',
                 help='Comma-separated name prefixes to run (e.g.'
                 ' "train/jit,iwnll"); empty: all.')
  p.add_argument('--lm_workdir', default='',
                 help='A trained LM run for IW-NLL (default: random init).')
  p.add_argument('--dd_workdir', default='',
                 help='A trained dialogue run (default: random init).')
  p.add_argument('--iw_batch_size', type=int, default=0,
                 help='IW-NLL sentences per call (0: 1 on CPU, the fastest'
                 ' there, 16 on accelerators).')
  p.add_argument('--iw_token_budget', type=int, default=0,
                 help='IW-NLL decoder positions per call (0: 65536 on CPU,'
                 ' 2^20 on accelerators).')
  p.add_argument('--dd_batch_size', type=int, default=256,
                 help='Dialogue contexts decoded per call.')
  return p.parse_args(argv)


def _print(*args):
  print(*args, flush=True)


def _write_json(path: str, obj) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def env_info(budget: str) -> dict:
  """Versions, devices and settings that the numbers depend on."""
  import flax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  return dict(
      python=platform.python_version(), jax=jax.__version__,
      jaxlib=jaxlib.__version__, flax=flax.__version__,
      optax=optax.__version__, backend=jax.default_backend(),
      device_kind=devices[0].device_kind,
      devices=[str(d) for d in devices],
      local_device_count=jax.local_device_count(),
      process_count=jax.process_count(),
      # None: the backend's default precision for float32 dots (compare
      # matmul_peak's float32 and float32_highest to see what it does).
      default_matmul_precision=jax.config.jax_default_matmul_precision,
      xla_flags=os.environ.get('XLA_FLAGS', ''),
      budget=budget, load_avg=[round(x, 2) for x in os.getloadavg()],
      started_utc=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))


def matmul_peak(n: int, reps: int) -> dict:
  """TFLOP/s of an n x n matmul: float32 (default and HIGHEST precision) and
  bfloat16 operands; median of `reps` timed calls after one warm-up."""
  out = {'n': n}
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  cases = {
      'float32': (jax.jit(lambda x: x @ x), a),
      'float32_highest': (jax.jit(lambda x: jnp.matmul(
          x, x, precision=jax.lax.Precision.HIGHEST)), a),
      'bfloat16': (jax.jit(lambda x: x @ x), a.astype(jnp.bfloat16)),
  }
  for name, (fn, x) in cases.items():
    jax.block_until_ready(fn(x))
    times = []
    for _ in range(reps):
      t = time.perf_counter()
      jax.block_until_ready(fn(x))
      times.append(time.perf_counter() - t)
    out[name + '_tflops'] = round(2 * n**3 / statistics.median(times) / 1e12,
                                  3)
  return out


class Context:
  """Data and configs shared by the sections (loaded once, on first use)."""

  def __init__(self, args, sizes):
    self.args, self.sizes = args, sizes
    self._lm, self._dd = None, None
    self.peaks = {}

  def lm_config(self, dtype: str):
    from configs import ptb  # pylint: disable=g-import-not-at-top
    config = ptb.get_config('twr')
    config.data.dir = self.args.ptb_dir
    for k, v in self.sizes['lm_model'].items():
      config.model[k] = v
    config.train.compute_dtype = dtype
    return config

  def lm_data(self):
    if self._lm is None:
      from twr_jax.lm import data as datasets  # pylint: disable=g-import-not-at-top
      self._lm = datasets.load(self.lm_config('float32'),
                               splits=('train', 'test'))
    return self._lm

  def dd(self):
    """(config, vocab, test examples) of DailyDialog."""
    if self._dd is None:
      from configs import dailydialog  # pylint: disable=g-import-not-at-top
      from twr_jax.dialogue import data as dialogue_data  # pylint: disable=g-import-not-at-top
      from twr_jax import tasks  # pylint: disable=g-import-not-at-top
      if self.args.dd_workdir:
        run = tasks.load_run(self.args.dd_workdir, 'last')
        config, vocab = run.config, run.vocab
        self.dd_params = run.params
      else:
        config = dailydialog.get_config(self.sizes['dd_variant'])
        config.data.dir = self.args.dd_dir
        vocab = dialogue_data.load_vocab(config, None)
        self.dd_params = None
      config.data.dir = self.args.dd_dir
      examples = dialogue_data.eval_examples(
          dialogue_data.read_split(config, 'test'), vocab,
          config.data.window, config.data.max_utt_len)
      self._dd = (config, vocab, examples[:self.sizes['dd_contexts']])
    return self._dd


def _lm_batches(sequences, batch_size: int, count: int, seed: int):
  """`count` real PTB training batches of the most common padded length T.

  One T means one compiled shape per case (compiling every PTB bucket at
  paper size would take most of the time budget). Batches come in training
  order (`Batcher.train_batch`); if that length has fewer than `count`
  batches, they are reused in turn.
  """
  from twr_jax.lm import input_pipeline  # pylint: disable=g-import-not-at-top
  batcher = input_pipeline.Batcher(sequences, batch_size, 8, seed)
  padded = [input_pipeline.bucket_length(len(s), 8) for s in sequences]
  t_common = max(set(padded), key=padded.count)
  found = []
  for step in range(batcher.num_batches):
    b = batcher.train_batch(step)
    if b['tokens'].shape[1] == t_common:
      found.append(b)
      if len(found) == count:
        break
  return [found[i % len(found)] for i in range(count)], len(found)


def train_case(ctx: Context, mode: str, dtype: str, batch_size: int,
               other_out: bool = False) -> dict:
  """Times the LM train step (`lm_task.make_train_step`) for one case.

  `other_out`: the output layer takes the path this backend does not use by
  default (`layers.fused_affine_default`): the CPU's fused `affine` on an
  accelerator, x @ W + b on CPU; measures whether the backend choice holds.
  """
  from twr_jax.core import layers  # pylint: disable=g-import-not-at-top
  from twr_jax.lm import model as models  # pylint: disable=g-import-not-at-top
  from twr_jax.core import optim  # pylint: disable=g-import-not-at-top
  from twr_jax.core import parallel  # pylint: disable=g-import-not-at-top
  from twr_jax.core import schedules  # pylint: disable=g-import-not-at-top
  from twr_jax.lm import task as lm_task  # pylint: disable=g-import-not-at-top
  import train_throughput  # pylint: disable=g-import-not-at-top
  s = ctx.sizes
  config = ctx.lm_config(dtype)
  data = ctx.lm_data()
  vocab = len(data.vocab)
  n_dev = 1 if mode == 'jit' else jax.local_device_count()
  layout = parallel.Layout(mode=mode, num_devices=n_dev)
  steps, warmup = s['train_steps'], s['train_warmup']
  batches, distinct = _lm_batches(data.splits['train'], batch_size,
                                  warmup + steps, config.seed)
  model = models.model_from_config(config, vocab)
  fused_out = None
  if other_out:
    fused_out = not layers.fused_affine_default()
    model = train_throughput.with_output_path(model, fused_out)
  key = jax.random.key(0)
  state = layout.replicate(lm_task.create_train_state(
      model, optim.optimizer_from_config(config), key))
  fn = layout.compile(
      lm_task.make_train_step(model, config,
                            schedules.make_kl_schedule('constant')),
      3, broadcast_argnums=(2,), donate_argnums=(0,))
  t = time.perf_counter()
  for b in batches[:warmup]:
    state, met = fn(state, layout.shard(b), key)
  jax.block_until_ready(met)
  warmup_s = time.perf_counter() - t
  t = time.perf_counter()
  for b in batches[warmup:]:
    state, met = fn(state, layout.shard(b), key)
  jax.block_until_ready((state, met))
  timed_s = time.perf_counter() - t
  first = layout.first(met)
  timed = batches[warmup:]
  sentences = sum(float(b['weights'].sum()) for b in timed)
  tokens = sum(float((b['weights'] * (b['lengths'] - 1)).sum()) for b in timed)
  t_len = batches[0]['tokens'].shape[1]
  m = config.model
  flops = steps * train_throughput.step_flops(
      batch_size, t_len, vocab, m.emb_dim, m.hidden, m.latent)['step']
  out = dict(mode=mode, compute_dtype=dtype, batch=batch_size,
             output_layer='affine (fused)' if (
                 layers.fused_affine_default() if fused_out is None
                 else fused_out) else 'x @ W + b',
             devices=n_dev, T=t_len, distinct_batches=distinct,
             warmup_steps=warmup, warmup_s=round(warmup_s, 2),
             timed_steps=steps, step_ms=round(1e3 * timed_s / steps, 2),
             sentences_per_s=round(sentences / timed_s, 1),
             tokens_per_s=round(tokens / timed_s, 1),
             tflops=round(flops / timed_s / 1e12, 3),
             last_loss_per_sentence=round(
                 float(first['loss']) / max(float(first['sentences']), 1), 3))
  peak = ctx.peaks.get(dtype + '_tflops')
  if peak:
    out['pct_of_matmul_peak'] = round(100 * out['tflops'] / peak, 1)
  return out


def iwnll_case(ctx: Context, dtype: str) -> dict:
  """Times IW-NLL (K samples) of the first N PTB test sentences."""
  from twr_jax.lm import input_pipeline  # pylint: disable=g-import-not-at-top
  from twr_jax.lm import likelihood  # pylint: disable=g-import-not-at-top
  from twr_jax.lm import model as models  # pylint: disable=g-import-not-at-top
  from twr_jax.core import text  # pylint: disable=g-import-not-at-top
  from twr_jax import tasks  # pylint: disable=g-import-not-at-top
  from twr_jax.lm import task as lm_task  # pylint: disable=g-import-not-at-top
  s, args = ctx.sizes, ctx.args
  cpu = jax.default_backend() == 'cpu'
  batch_size = args.iw_batch_size or (1 if cpu else 16)
  budget = args.iw_token_budget or (65536 if cpu else 2**20)
  if args.lm_workdir:
    run = tasks.load_run(args.lm_workdir, 'last')
    run.config.train.compute_dtype = dtype
    model = models.model_from_config(run.config, len(run.vocab))
    params = run.params
    sequences = input_pipeline.encode_lines(
        text.read_corpus(args.ptb_dir, splits=('test',))['test'], run.vocab)
    weights = args.lm_workdir
  else:
    data = ctx.lm_data()
    model = models.model_from_config(ctx.lm_config(dtype), len(data.vocab))
    params = lm_task.init_params(model, jax.random.key(0))
    sequences = data.splits['test']
    weights = 'random init'
  sequences = sequences[:s['iw_sentences']]
  key = jax.random.key(1)
  # Warm-up: one sentence of each padded length, in batches of the timed
  # run's shape, compiles every shape the timed run uses.
  firsts = {}
  for seq in sequences:
    firsts.setdefault(input_pipeline.bucket_length(len(seq), 8), seq)
  t = time.perf_counter()
  likelihood.log_likelihood(
      model, params, input_pipeline.Batcher(list(firsts.values()),
                                            batch_size, 8, 0),
      key, s['iw_samples'], budget, log_every_s=1e9)
  warmup_s = time.perf_counter() - t
  out = likelihood.log_likelihood(
      model, params, input_pipeline.Batcher(sequences, batch_size, 8, 0), key,
      s['iw_samples'], budget, log_every_s=1e9)
  n = len(sequences)
  return dict(compute_dtype=dtype, weights=weights, sentences=n,
              samples=s['iw_samples'], batch_size=batch_size,
              token_budget=budget, shapes=len(firsts),
              warmup_s=round(warmup_s, 2), timed_s=round(out['seconds'], 2),
              sentences_per_s=round(n / out['seconds'], 2),
              nll_per_sentence=round(-float(np.mean(out['log_px'])), 3))


def dialogue_case(ctx: Context, dtype: str) -> dict:
  """Times the dialogue evaluation of the first C DailyDialog test contexts."""
  from twr_jax.dialogue import data as dialogue_data  # pylint: disable=g-import-not-at-top
  from twr_jax.dialogue import decoding as dialogue_decoding  # pylint: disable=g-import-not-at-top
  from twr_jax.dialogue import model as dialogue_model  # pylint: disable=g-import-not-at-top
  from twr_jax.dialogue import metrics as dialogue_metrics  # pylint: disable=g-import-not-at-top
  from twr_jax.dialogue import task as dialogue_task  # pylint: disable=g-import-not-at-top
  s = ctx.sizes
  config, vocab, examples = ctx.dd()
  config.train.compute_dtype = dtype
  model = dialogue_model.model_from_config(config, len(vocab))
  params = ctx.dd_params
  if params is None:
    params = dialogue_task.init_params(model, jax.random.key(0), config,
                                        vocab)
  kwargs = dict(num_samples=s['dd_samples'], max_len=s['dd_max_len'],
                batch_size=ctx.args.dd_batch_size, window=config.data.window,
                max_utt_len=config.data.max_utt_len)
  key = jax.random.key(1)
  # Warm-up: the same examples (the packed utterance encoder compiles one
  # shape per trimmed width, which only the same examples reproduce).
  t = time.perf_counter()
  dialogue_decoding.sample_examples(model, params, examples, vocab, key, **kwargs)
  warmup_s = time.perf_counter() - t
  t = time.perf_counter()
  tokens, _ = dialogue_decoding.sample_examples(model, params, examples, vocab,
                                            key, **kwargs)
  sample_s = time.perf_counter() - t  # Tokens are host arrays by now.
  t = time.perf_counter()
  hyps = [[vocab.decode(x) for x in samples] for samples in tokens]
  refs = [vocab.decode(ex.response) for ex in examples]
  dialogue_metrics.score_responses(hyps, refs)
  metric_s = time.perf_counter() - t
  ran = np.sum(tokens != dialogue_data.PAD, axis=-1)
  n = len(examples)
  return dict(compute_dtype=dtype,
              weights=ctx.args.dd_workdir or 'random init', contexts=n,
              samples=s['dd_samples'], max_len=s['dd_max_len'],
              batch_size=ctx.args.dd_batch_size,
              mean_response_steps=round(float(np.mean(ran)), 1),
              warmup_s=round(warmup_s, 2), sample_s=round(sample_s, 2),
              metric_s_host=round(metric_s, 2),
              sample_contexts_per_s=round(n / sample_s, 1),
              contexts_per_s=round(n / (sample_s + metric_s), 1))


def plan(ctx: Context) -> list[tuple[str, callable]]:
  """The sections in run order: (name, thunk)."""
  s = ctx.sizes
  train = lambda mode, dtype, b: (f'train/{mode}/{dtype}/b{b}',
                                  lambda: train_case(ctx, mode, dtype, b))
  out = [('matmul_peak', lambda: matmul_peak(s['peak_n'], s['peak_reps']))]
  out += [train(*c) for c in s['train_first']]
  mode, dtype, b = s['train_first'][0]
  out.append((f'train/{mode}/{dtype}/b{b}/other_output_layer',
              lambda: train_case(ctx, mode, dtype, b, other_out=True)))
  out += [('iwnll/float32', lambda: iwnll_case(ctx, 'float32')),
          ('dialogue/float32', lambda: dialogue_case(ctx, 'float32'))]
  out += [train(*c) for c in s['train_rest']]
  out += [('iwnll/bfloat16', lambda: iwnll_case(ctx, 'bfloat16')),
          ('dialogue/bfloat16', lambda: dialogue_case(ctx, 'bfloat16'))]
  return out


def format_table(result: dict) -> str:
  """One line per section: its headline numbers."""
  rows = []
  for name, r in result['sections'].items():
    if 'error' in r or 'skipped' in r:
      rows.append(f'{name:<28} {r.get("skipped") or "ERROR " + r["error"]}')
    elif name.startswith('train/'):
      rows.append(
          f'{name:<28} T={r["T"]:<3} {r["step_ms"]:>9.2f} ms/step'
          f' {r["sentences_per_s"]:>10.1f} sent/s {r["tflops"]:>7.2f} TFLOP/s'
          f' (warm-up {r["warmup_s"]:.1f} s)')
    elif name.startswith('iwnll/'):
      rows.append(
          f'{name:<28} K={r["samples"]} {r["sentences"]} sent'
          f' {r["sentences_per_s"]:>9.2f} sent/s  NLL {r["nll_per_sentence"]}'
          f' (warm-up {r["warmup_s"]:.1f} s)')
    elif name.startswith('dialogue/'):
      rows.append(
          f'{name:<28} {r["contexts"]} ctx {r["sample_contexts_per_s"]:>9.1f}'
          f' ctx/s sampling, {r["contexts_per_s"]:.1f} ctx/s with metrics'
          f' (warm-up {r["warmup_s"]:.1f} s)')
    elif name == 'matmul_peak':
      rows.append(f'{name:<28} n={r["n"]} f32 {r["float32_tflops"]} /'
                  f' f32 highest {r["float32_highest_tflops"]} / bf16'
                  f' {r["bfloat16_tflops"]} TFLOP/s')
  env = result['env']
  head = (f'device check: {env.get("device_kind")} x'
          f' {env.get("local_device_count")} ({env.get("backend")}), jax'
          f' {env.get("jax")}, budget {env.get("budget")},'
          f' {result.get("total_s")} s')
  return '\n'.join([head] + rows)


def main(argv=None) -> dict:
  """Runs the check; returns (and writes) the result dict."""
  args = parse_args(argv)
  t_start = time.perf_counter()
  budget = args.budget
  if budget == 'auto':
    budget = 'smoke' if jax.default_backend() == 'cpu' else 'full'
  sizes = BUDGETS[budget]
  limit = args.time_limit_s or sizes['time_limit_s']
  result = {'env': {}, 'sections': {}}
  try:
    result['env'] = env_info(budget)
  except Exception as e:  # pylint: disable=broad-except
    result['env'] = {'error': repr(e), 'budget': budget}
  _print(json.dumps(result['env']))
  _write_json(args.out, result)
  ctx = Context(args, sizes)
  wanted = [w for w in args.sections.split(',') if w]
  for name, thunk in plan(ctx):
    if wanted and not any(name.startswith(w) for w in wanted):
      continue
    elapsed = time.perf_counter() - t_start
    if elapsed > limit:
      r = {'skipped': f'time limit {limit:.0f} s reached at {elapsed:.0f} s'}
    else:
      _print(f'[{elapsed:6.1f} s] {name} ...')
      t = time.perf_counter()
      try:
        r = thunk()
      except Exception as e:  # pylint: disable=broad-except
        r = {'error': f'{type(e).__name__}: {e}'[:500],
             'traceback': traceback.format_exc()[-3000:]}
      r['section_s'] = round(time.perf_counter() - t, 2)
      if name == 'matmul_peak' and 'error' not in r:
        ctx.peaks = r
    result['sections'][name] = r
    result['total_s'] = round(time.perf_counter() - t_start, 1)
    _write_json(args.out, result)
    _print(f'  {name}: {json.dumps(r)[:400]}')
  result['total_s'] = round(time.perf_counter() - t_start, 1)
  _write_json(args.out, result)
  _print(format_table(result))
  return result


if __name__ == '__main__':
  main()
