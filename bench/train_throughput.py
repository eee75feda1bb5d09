"""Train-step throughput at paper size on real PTB batches, against PyTorch.

  python bench/train_throughput.py --data_dir=../shared/data/ptb [--steps=40]

Builds the paper-size model (configs/ptb.py:twr: emb 512, hidden 256, latent
32, LSTM, batch 64, PTB vocabulary) and times the train step on the first
`--steps` PTB training batches (their natural length mix), alternating step by
step between

  jit:           the step as `train.py` runs it on one device;
  pmap:          the same under `jax.pmap` on one device;
  jit_plain_out: jit with the output layer computed as x @ W + b like nn.Dense
                 (the model before `layers.affine`, same values);
  jit_bf16:      jit with `train.compute_dtype=bfloat16` (`--bf16`): matmuls
                 on bfloat16 operands, parameters and losses float32;
  matmul:        a 2048 x 2048 fp32 `jnp` matmul, the measured peak (and the
                 same in bfloat16, `matmul_peak_bf16_gflops`),

so that machine noise hits all alike. Then it runs the PyTorch reference
(../shared/bench/torch_reference_step.py, 2 threads) as subprocesses, if torch
is importable:

  torch_matched:      `--length T` for every padded length T of the timed JAX
                      batches, i.e. the same shapes; sentences/s = the timed
                      batches' sentences / the sum of torch's median step time
                      at each batch's T;
  torch_lengths_file: the reference's own protocol with `--lengths-file` (PTB
                      train lengths + 2): each batch padded to the longest of
                      64 random PTB sentences, i.e. more padding than length
                      buckets (reported for completeness, not for the ratio).

JAX and torch rounds alternate `--rounds` times. Torch runs with
OMP_WAIT_POLICY=PASSIVE by default: with OpenMP's default active spin-wait its
2 threads took 3.5 s instead of 0.57 s per step (T = 24) while other jobs
shared the 2 cores (load ~6), which would inflate the ratio ~6x. Torch's % of
peak is against the JAX matmul peak (MKL's own 2048^3 peak is lower on this
CPU, see ../shared/bench/README.md). `--malloc=keep` (the default) gives
both sides glibc's keep-freed-memory setting (twr_jax/core/host_memory.py;
GLIBC_TUNABLES for torch), `--malloc=default` neither. `--profile` also
times the step's parts (encoder, decoder RNN, output layer + cross-entropy,
optimiser) at the most common padded length. Prints one JSON line.

FLOPs (`step_flops`) are counted from the padded shapes, multiply-add = 2:
with B sentences of padded length T, G gates (LSTM 4), N_e = B T encoder and
N_d = B (T - 1) decoder positions, the forward pass is

  encoder   2 N_e (E + H) G H          (input + recurrent projections)
  heads     2 N_e H 2 Z                (mu and logvar on every step)
  z -> h0   2 B Z H
  z -> gates 2 B Z G H                 (once per sentence, see models.py)
  decoder   2 N_d (E + H) G H
  output    2 N_d H V

and a train step counts 3x the forward (backward = 2x forward). XLA's
`cost_analysis()` of the compiled step is printed next to it at one shape
('flops_check'); it counts a `scan` body once, not T times, so it sits below
the analytic count by roughly the recurrent part. Embedding
lookups, gate nonlinearities, softmax and the optimiser are not counted. At
T = 22, V = 9947 this is 33.7 GFLOP, 61 % in the output layer (the bench
README's 35.3 counts 22 decoder steps, V = 10000 and z in every decoder step).
"""

import dataclasses
import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from unittest import mock

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import ptb  # pylint: disable=g-import-not-at-top
from twr_jax.core import host_memory
from twr_jax.core import layers
from twr_jax.core import losses
from twr_jax.core import optim
from twr_jax.core import parallel
from twr_jax.core import prng
from twr_jax.core import schedules
from twr_jax.lm import data as datasets
from twr_jax.lm import input_pipeline
from twr_jax.lm import model as models
from twr_jax.lm import task as lm_task

FLAGS = flags.FLAGS


def define_flags():
  """Defined by main only, so that tests can import the helpers."""
  flags.DEFINE_string('data_dir', '../shared/data/ptb', 'PTB folder.')
  flags.DEFINE_integer('steps', 40, 'Timed JAX steps per mode (PTB batches).')
  flags.DEFINE_integer('rounds', 2, 'Alternations of JAX and torch timing.')
  flags.DEFINE_integer('torch_steps', 6, 'Timed torch steps per length.')
  flags.DEFINE_integer('torch_threads', 2, 'torch.set_num_threads.')
  flags.DEFINE_string(
      'torch_omp_wait_policy', 'PASSIVE',
      "OMP_WAIT_POLICY for torch ('' keeps OpenMP's default, active"
      ' spin-waiting, which makes torch several times slower whenever other'
      ' processes share the cores).')
  flags.DEFINE_string(
      'torch_script',
      os.path.join(ROOT, '..', 'shared', 'bench', 'torch_reference_step.py'),
      'The PyTorch reference step.')
  flags.DEFINE_bool('plain_out', True, 'Also time the plain-dot output layer.')
  flags.DEFINE_bool('bf16', True, 'Also time compute_dtype=bfloat16.')
  flags.DEFINE_bool('profile', True, 'Time the parts of the step.')
  flags.DEFINE_enum(
      'malloc', 'keep', ['keep', 'default'],
      "'keep': host_memory.keep_freed_memory() for JAX and the same glibc"
      " malloc setting (GLIBC_TUNABLES) for torch, so neither page-faults its"
      " buffers in every step; 'default': glibc's defaults for both.")


PEAK_N = 2048


def step_flops(batch: int, length: int, vocab: int, emb: int, hidden: int,
               latent: int, gates: int = 4) -> dict[str, int]:
  """Analytic FLOPs of one train step (see the module docstring).

  Args:
    batch, length: B and padded T of the token array <i32>[B, T].
    vocab, emb, hidden, latent: V, E, H, Z.
    gates: G (LSTM 4, GRU 3, tanh RNN 1).

  Returns:
    Forward FLOPs per part ('encoder', 'heads', 'z', 'decoder', 'output'),
    'forward' (their sum) and 'step' (3 x forward).
  """
  n_enc, n_dec, g = batch * length, batch * (length - 1), gates * hidden
  parts = dict(
      encoder=2 * n_enc * (emb + hidden) * g,
      heads=2 * n_enc * hidden * 2 * latent,
      z=2 * batch * latent * (hidden + g),
      decoder=2 * n_dec * (emb + hidden) * g,
      output=2 * n_dec * hidden * vocab,
  )
  parts['forward'] = sum(parts.values())
  parts['step'] = 3 * parts['forward']
  return parts


def matmul_peak(n: int = PEAK_N, dtype=jnp.float32):
  """A jitted n x n matmul and its FLOPs: (fn, operand, 2 n^3)."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  return jax.jit(lambda x: x @ x), a, 2 * n**3


class OtherPathAffine(layers.Affine):
  """`layers.Affine` on a chosen matmul path: `affine` (fused=True) or
  x @ W + b (False), whatever `layers.fused_affine_default()` says."""

  fused: bool = False

  @nn.compact
  def __call__(self, x):
    # The path is chosen when the layer is traced (fused_affine_default).
    with mock.patch.object(layers, 'fused_affine_default', lambda: self.fused):
      return super().__call__(x)


def with_output_path(model: models.TWRVAE, fused: bool) -> models.TWRVAE:
  """`model` (same fields and parameters) with its output layer on the
  `fused` path; the other layers keep the backend's."""
  cls = type('OutputPath', (models.TWRVAE,), {
      '_output_layer': lambda self: OtherPathAffine(
          self.vocab_size, fused=fused, dtype=self.dtype, name='out')})
  return cls(**{f.name: getattr(model, f.name)
                for f in dataclasses.fields(models.TWRVAE)
                if f.name not in ('parent', 'name')})


class PlainOutTWRVAE(models.TWRVAE):
  """TWRVAE with the output layer computed as x @ W + b (nn.Dense's way)."""

  def _output_layer(self):
    return OtherPathAffine(self.vocab_size, fused=False, dtype=self.dtype,
                           name='out')


def _timed(fn, *args):
  t = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - t


def run_torch(script: str, vocab: int, threads: int, steps: int,
              length: int | None = None, lengths_file: str | None = None,
              warmup: int = 2, omp_wait_policy: str = '',
              keep_freed_memory: bool = False) -> dict:
  """Runs the PyTorch reference once; returns its JSON line as a dict."""
  cmd = [sys.executable, script, '--vocab', str(vocab), '--threads',
         str(threads), '--steps', str(steps), '--warmup', str(warmup)]
  if length is not None:
    cmd += ['--length', str(length)]
  if lengths_file:
    cmd += ['--lengths-file', lengths_file]
  env = dict(os.environ)
  if omp_wait_policy:
    env['OMP_WAIT_POLICY'] = omp_wait_policy
  if keep_freed_memory:
    env['GLIBC_TUNABLES'] = host_memory.GLIBC_TUNABLES
  out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                       env=env).stdout
  return json.loads(out.strip().splitlines()[-1])


def profile_parts(model, params, tx, batch, key, reps: int = 6) -> dict:
  """Median ms of the step's parts (forward + backward each) at one shape.

  Parts: 'encoder' (embedding, RNN, mu / logvar heads), 'decoder_rnn'
  (embedding, z -> h0, RNN), 'output_ce' (output layer + cross-entropy),
  'optimiser' (Adam update), 'step' (all of lm_task.make_train_step) and
  'other' (step minus the parts: embedding gradients, KL, noise, ...); also
  'output_ce_plain', the output layer + cross-entropy computed as x @ W + b
  (not part of the step).
  """
  tokens, lengths = jnp.asarray(batch['tokens']), jnp.asarray(batch['lengths'])
  b, t = tokens.shape
  keys = prng.example_keys(key, jnp.asarray(batch['index']), 0)
  noise = models.example_noise(keys, t, model.emb_dim, model.latent,
                               model.dropout, True)
  z = jax.random.normal(key, (b, model.latent))

  def enc(p):
    mu, logvar = model.apply({'params': p}, tokens, noise,
                             method=models.TWRVAE.encode)
    return jnp.sum(mu) + jnp.sum(logvar)

  def dec_h(m, inputs, z, keep):
    e = m._embed(m.dec_embed, inputs, keep)  # pylint: disable=protected-access
    return m.dec_rnn(e, h0=m.z_to_h0(z), x_const=z)

  def dec(p):
    return jnp.sum(model.apply({'params': p}, tokens[:, :-1], z,
                               noise['dec_keep'], method=dec_h))

  h = jax.jit(lambda p: model.apply({'params': p}, tokens[:, :-1], z,
                                    noise['dec_keep'], method=dec_h))(params)

  def out_ce(p, h, mdl=model):
    logits = mdl.apply({'params': p}, h, method=lambda m, h: m.out(h))
    return jnp.sum(losses.token_nll(logits, tokens[:, 1:], lengths))

  plain = PlainOutTWRVAE(model.vocab_size, model.emb_dim, model.hidden,
                         model.latent)

  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  opt_state = tx.init(params)
  state = lm_task.create_train_state(model, tx, key)
  step = jax.jit(lm_task.make_train_step(
      model, ptb.get_config('twr'), schedules.make_kl_schedule('constant')))
  fns = dict(
      encoder=(jax.jit(jax.grad(enc)), (params,)),
      decoder_rnn=(jax.jit(jax.grad(dec)), (params,)),
      output_ce=(jax.jit(jax.grad(out_ce, argnums=(0, 1))), (params, h)),
      output_ce_plain=(jax.jit(jax.grad(
          lambda p, h: out_ce(p, h, plain), argnums=(0, 1))), (params, h)),
      optimiser=(jax.jit(lambda g, s, p: optax.apply_updates(
          p, tx.update(g, s, p)[0])), (grads, opt_state, params)),
      step=(lambda s: step(s, batch, key)[1], (state,)),
  )
  times = {k: [] for k in fns}
  for fn, args in fns.values():
    jax.block_until_ready(fn(*args))
  for _ in range(reps):
    for k, (fn, args) in fns.items():
      times[k].append(_timed(fn, *args))
  out = {k: round(1e3 * statistics.median(v), 1) for k, v in times.items()}
  out['other'] = round(out['step'] - sum(
      v for k, v in out.items() if k not in ('step', 'output_ce_plain')), 1)
  out['T'] = t
  return out


def main(_):
  if FLAGS.malloc == 'keep':
    host_memory.keep_freed_memory()  # Before any JAX computation.
  load0 = os.getloadavg()[0]
  config = ptb.get_config('twr')
  config.data.dir = FLAGS.data_dir
  data = datasets.load(config, splits=('train',))
  vocab = len(data.vocab)
  batcher = input_pipeline.Batcher(data.splits['train'], 64, 8, config.seed)
  batches = [batcher.train_batch(s) for s in range(FLAGS.steps)]
  lengths_t = [b['tokens'].shape[1] for b in batches]
  m = config.model
  flops = [step_flops(64, t, vocab, m.emb_dim, m.hidden, m.latent)['step']
           for t in lengths_t]
  tx = optim.optimizer_from_config(config)
  step_fn = lambda model: lm_task.make_train_step(
      model, config, schedules.make_kl_schedule('constant'))
  key = jax.random.key(0)
  model = models.model_from_config(config, vocab)
  variants = {'jit': (model, 'jit'), 'pmap': (model, 'pmap')}
  if FLAGS.plain_out:
    plain = PlainOutTWRVAE(**{f: getattr(model, f) for f in (
        'vocab_size', 'emb_dim', 'hidden', 'latent', 'cell', 'z_mode',
        'dropout')})
    variants['jit_plain_out'] = (plain, 'jit')
  if FLAGS.bf16:
    variants['jit_bf16'] = (model.clone(dtype=jnp.bfloat16), 'jit')
  runs = {}
  for name, (mdl, mode) in variants.items():
    layout = parallel.Layout(mode=mode, num_devices=1)
    state = layout.replicate(lm_task.create_train_state(mdl, tx, key))
    fn = layout.compile(step_fn(mdl), 3, broadcast_argnums=(2,),
                        donate_argnums=(0,))
    t0 = time.time()
    for t in sorted(set(lengths_t)):  # Compile every timed shape once.
      b = batches[lengths_t.index(t)]
      state, met = fn(state, layout.shard(b), key)
      jax.block_until_ready(met)
    runs[name] = dict(layout=layout, fn=fn, state=state, times=[],
                      compile_s=time.time() - t0)
  peak_fn, peak_x, peak_flops = matmul_peak()
  jax.block_until_ready(peak_fn(peak_x))
  peak_times = []
  bf16_fn, bf16_x, _ = matmul_peak(dtype=jnp.bfloat16)
  jax.block_until_ready(bf16_fn(bf16_x))
  bf16_peak_times = []

  # FLOP cross-check: XLA's cost analysis of the step at the commonest T.
  t_common = max(set(lengths_t), key=lengths_t.count)
  b_common = batches[lengths_t.index(t_common)]
  try:
    cost = jax.jit(step_fn(model)).lower(
        lm_task.create_train_state(model, tx, key), b_common,
        key).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get('flops', float('nan')))
  except Exception:  # pylint: disable=broad-except
    xla_flops = float('nan')

  have_torch = importlib.util.find_spec('torch') is not None
  torch_matched, torch_file = [], []
  lengths_file = None
  if have_torch:
    fd, lengths_file = tempfile.mkstemp(suffix='.txt')
    with os.fdopen(fd, 'w') as f:
      f.write('\n'.join(str(len(s)) for s in data.splits['train']))
  sentences = sum(float(b['weights'].sum()) for b in batches)
  per_round = -(-FLAGS.steps // FLAGS.rounds)
  for r in range(FLAGS.rounds):
    for s in range(r * per_round, min((r + 1) * per_round, FLAGS.steps)):
      order = list(runs.values())
      for run in order if s % 2 else order[::-1]:  # No fixed order effects.
        t = time.perf_counter()
        run['state'], met = run['fn'](run['state'],
                                      run['layout'].shard(batches[s]), key)
        jax.block_until_ready(met)
        run['times'].append(time.perf_counter() - t)
      peak_times.append(_timed(peak_fn, peak_x))
      bf16_peak_times.append(_timed(bf16_fn, bf16_x))
    if have_torch:
      run = functools.partial(run_torch, FLAGS.torch_script, vocab,
                              FLAGS.torch_threads,
                              omp_wait_policy=FLAGS.torch_omp_wait_policy,
                              keep_freed_memory=FLAGS.malloc == 'keep')
      torch_matched.append({
          t: run(FLAGS.torch_steps, length=t)['median_step_s']
          for t in sorted(set(lengths_t))})
      torch_file.append(run(FLAGS.torch_steps * len(set(lengths_t)),
                            lengths_file=lengths_file))
  if lengths_file:
    os.remove(lengths_file)

  peak = peak_flops / statistics.median(peak_times) / 1e9
  out = {'bench': 'train_throughput', 'jax': jax.__version__, 'batch': 64,
         'malloc': FLAGS.malloc,
         'vocab': vocab, 'steps': FLAGS.steps, 'devices': 1,
         'sentences': int(sentences),
         'mean_T': round(float(np.mean(lengths_t)), 2),
         'shapes': sorted(set(lengths_t)),
         'flops_per_step_mean_g': round(float(np.mean(flops)) / 1e9, 2),
         'matmul_peak_gflops': round(peak, 1),
         'matmul_peak_bf16_gflops': round(
             peak_flops / statistics.median(bf16_peak_times) / 1e9, 1)}
  f_common = step_flops(64, t_common, vocab, m.emb_dim, m.hidden, m.latent)
  out['flops_check'] = dict(
      T=t_common, analytic_g=round(f_common['step'] / 1e9, 2),
      output_share=round(f_common['output'] / f_common['forward'], 3),
      xla_cost_analysis_g=round(xla_flops / 1e9, 2))
  for name, run in runs.items():
    total = sum(run['times'])
    gflops = sum(flops) / total / 1e9
    out[name] = dict(sentences_per_s=round(sentences / total, 1),
                     median_step_ms=round(
                         1e3 * statistics.median(run['times']), 1),
                     gflops=round(gflops, 1),
                     pct_of_peak=round(100 * gflops / peak, 1),
                     compile_s=round(run['compile_s'], 1))
  jit_total = sum(runs['jit']['times'])
  ratios = {'pmap_over_jit_time': round(
      sum(runs['pmap']['times']) / jit_total, 3),
            'jit_pct_of_peak': out['jit']['pct_of_peak']}
  if 'jit_bf16' in runs:
    ratios['bf16_over_jit_time'] = round(
        sum(runs['jit_bf16']['times']) / jit_total, 3)
  if 'jit_plain_out' in runs:
    ratios['plain_out_over_jit_time'] = round(
        sum(runs['jit_plain_out']['times']) / jit_total, 3)
  if have_torch:
    # Each round's torch time for the timed batches, weighted by their shapes.
    t_matched = np.mean([sum(tm[t] for t in lengths_t) for tm in torch_matched])
    out['torch_matched'] = dict(
        sentences_per_s=round(sentences / t_matched, 1),
        gflops=round(sum(flops) / t_matched / 1e9, 1),
        pct_of_peak=round(100 * sum(flops) / t_matched / 1e9 / peak, 1),
        median_step_ms_by_T={t: round(1e3 * statistics.median(
            tm[t] for tm in torch_matched), 1) for t in sorted(set(lengths_t))})
    out['torch_lengths_file'] = dict(
        sentences_per_s=round(statistics.median(
            x['sentences_per_s'] for x in torch_file), 1),
        median_step_ms=round(1e3 * statistics.median(
            x['median_step_s'] for x in torch_file), 1),
        version=torch_file[0]['version'], threads=torch_file[0]['threads'],
        omp_wait_policy=FLAGS.torch_omp_wait_policy or 'default')
    ratios['jax_over_torch_matched'] = round(t_matched / jit_total, 3)
    ratios['jax_over_torch_lengths_file'] = round(
        out['jit']['sentences_per_s']
        / out['torch_lengths_file']['sentences_per_s'], 3)
  else:
    out['torch'] = 'skipped: torch not importable'
  out['ratios'] = ratios
  out['load_avg_start_end'] = [round(load0, 2), round(os.getloadavg()[0], 2)]
  if FLAGS.profile:
    out['profile_ms'] = profile_parts(
        model, runs['jit']['layout'].unreplicate(runs['jit']['state']).params,
        tx, b_common, key)
  print(json.dumps(out))


if __name__ == '__main__':
  define_flags()
  app.run(main)
