"""IW-NLL throughput (SPEC A.8, K = 500) of twr_jax.lm.likelihood vs PyTorch.

  python bench/iwnll_throughput.py --data_dir=../shared/data/ptb \
      [--num_sentences=30]

Scores the first `--num_sentences` PTB test sentences with a paper-size model
(configs/ptb.py:twr, PTB vocabulary, random init, eval mode):

  jax:   `likelihood.log_likelihood` (sentences grouped by length bucket,
         `--batch_size` per call, samples in chunks within `--token_budget`);
  torch: bench/reference/torch_iwnll.py, He et al.'s loop (one sentence at a
         time, K samples in chunks of 100), `--threads` threads, run as a
         subprocess on the same sentences with the same weights (written to
         an .npz under torch's names), so both estimate the same log p(x).

One untimed JAX pass compiles every shape; then `--rounds` timed JAX passes
and torch runs alternate. With `--ablations`, the timed passes also run
`likelihood` with earlier versions of its decoding step, to measure what each
change bought (same estimate up to float rounding):

  jax_full_logits:  each sample decoded on its own copy of the sentence, and
                    the logits of all (samples x tokens) materialised before
                    the cross-entropy (`models.TWRVAE.decode` +
                    `losses.token_nll`), the code before both changes;
  jax_shared_input: the samples share the sentence's input projection
                    (`decode` with z <f32>[B, C, Z]), logits still
                    materialised (the stepwise output layer not yet used).

Also runs the torch estimator check (`--check`: on a 1-d latent toy, the IW estimate matches
log p(x) integrated on a grid and is below the ELBO). Prints one JSON line
with both sentences/s, the ratio and both mean IW-NLLs (equal up to
Monte-Carlo noise).
"""

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
import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import ptb  # pylint: disable=g-import-not-at-top
from twr_jax.core import host_memory
from twr_jax.core import losses
from twr_jax.core import text
from twr_jax.lm import data as datasets
from twr_jax.lm import input_pipeline
from twr_jax.lm import likelihood
from twr_jax.lm import model as models


def _full_logits_chunk(model, params, tokens, lengths, z, shared):
  """-log p(x|z) <f32>[B, C] via materialised logits (see `--ablations`)."""
  b, c = z.shape[:2]
  rep = jnp.repeat(tokens, c, axis=0)
  if shared:
    logits = model.apply({'params': params}, tokens[:, :-1], z,
                         method=models.TWRVAE.decode)
  else:
    logits = model.apply({'params': params}, rep[:, :-1],
                         z.reshape(b * c, -1), method=models.TWRVAE.decode)
  rec = losses.token_nll(logits, rep[:, 1:], jnp.repeat(lengths, c))
  return rec.reshape(b, c)


def ablated_chunk_log_weights(shared: bool):
  """`likelihood._chunk_log_weights` with its decoding step replaced."""

  @functools.partial(jax.jit, static_argnames=('model', 'chunk'))
  def chunk_log_weights(model, params, tokens, lengths, z_mu, z_logvar, keys,
                        start, chunk):
    ids = start + jnp.arange(chunk)
    draw = lambda key: jax.vmap(lambda j: jax.random.normal(
        jax.random.fold_in(key, j), z_mu.shape[-1:]))(ids)
    eps = jax.vmap(draw)(keys)
    z = z_mu[:, None] + jnp.exp(0.5 * z_logvar)[:, None] * eps
    rec = _full_logits_chunk(model, params, tokens, lengths, z, shared)
    return likelihood.gaussian_log_weights(-rec, z, eps, z_logvar)

  return chunk_log_weights


FLAGS = flags.FLAGS


def define_flags():
  """Defined by main only, so that tests can import the helpers."""
  flags.DEFINE_string('data_dir', '../shared/data/ptb', 'PTB folder.')
  flags.DEFINE_integer('num_sentences', 30, 'First N test sentences.')
  flags.DEFINE_integer('samples', 500, 'K.')
  flags.DEFINE_integer(
      'batch_size', 1, 'JAX sentences per call. With few sentences per length'
      ' bucket, larger batches are mostly weight-0 padding rows; 1 still gives'
      ' calls of up to K samples x tokens within the token budget.')
  flags.DEFINE_integer(
      'token_budget', 65536, 'JAX sentences x samples x tokens per call'
      ' (lm_eval\'s default; all K = 500 samples of a PTB sentence in one'
      ' call).')
  flags.DEFINE_integer(
      'bucket_size', 8, 'JAX pads sentences to a multiple of this (1: exact'
      ' lengths, ~10 % faster here, one compiled shape per length).')
  flags.DEFINE_integer('rounds', 2, 'Timed JAX / torch alternations.')
  flags.DEFINE_integer('threads', 2, 'torch threads.')
  flags.DEFINE_string(
      'torch_omp_wait_policy', 'PASSIVE',
      "OMP_WAIT_POLICY for torch ('' keeps OpenMP's default, active"
      ' spin-waiting, which makes torch several times slower whenever other'
      ' processes share the cores).')
  flags.DEFINE_bool('ablations', True, 'Also time the earlier decoding steps'
                    ' (see the module docstring).')
  flags.DEFINE_enum(
      'malloc', 'keep', ['keep', 'default'],
      "'keep': host_memory.keep_freed_memory() for JAX and the same glibc"
      " malloc setting (GLIBC_TUNABLES) for torch, so neither page-faults its"
      " buffers in every call; 'default': glibc's defaults for both.")


TORCH_SCRIPT = os.path.join(ROOT, 'bench', 'reference', 'torch_iwnll.py')


def init_params(model: models.TWRVAE, key: jax.Array):
  """Random parameters of `model` (PyTorch-style init, see models.py)."""
  tokens = jnp.array([[text.BOS, text.EOS, text.PAD]], jnp.int32)
  return jax.jit(model.init)(
      {'params': key}, tokens, jnp.array([2], jnp.int32))['params']


def jax_iw_log_px(model: models.TWRVAE, params, sequences, num_samples: int,
                  batch_size: int, token_budget: int, key: jax.Array,
                  bucket_size: int = 8):
  """IW estimates of log p(x) with twr_jax.lm.likelihood.

  Args:
    model, params: an LSTM TWR-VAE (eval mode).
    sequences: N encoded sentences, each <i32>[L_i] BOS ... EOS.
    num_samples: K.
    batch_size: sentences per call.
    token_budget: see `likelihood.log_likelihood`.
    key: the evaluation key.
    bucket_size: sentences are padded to a multiple of this (one compiled
      shape per bucket).

  Returns:
    (log_px <f64>[N] in input order, seconds).
  """
  batcher = input_pipeline.Batcher(sequences, batch_size, bucket_size, 0)
  out = likelihood.log_likelihood(model, params, batcher, key, num_samples,
                                  token_budget, log_every_s=1e9)
  return out['log_px'], out['seconds']


def torch_state_dict(params) -> dict[str, np.ndarray]:
  """The LSTM TWR-VAE's parameters under torch_iwnll.VAE's names.

  Flax kernels are [in, out] (torch: [out, in]); the decoder's input
  projection is stored split, W_e (embedding) and W_z (z), which torch keeps
  as one [4H, E + Z] matrix over the concatenation [e; z].
  """
  p = jax.tree_util.tree_map(np.asarray, params)
  t = lambda a: np.ascontiguousarray(a.T)

  def lstm(rnn, const=None):
    w_ih = rnn['ih']['kernel']
    if const is not None:
      w_ih = np.concatenate([w_ih, const], axis=0)
    return {'weight_ih_l0': t(w_ih), 'bias_ih_l0': rnn['ih']['bias'],
            'weight_hh_l0': t(rnn['step']['hh']['kernel']),
            'bias_hh_l0': rnn['step']['hh']['bias']}

  out = {'enc.emb.weight': p['enc_embed']['embedding'],
         'enc.mu.weight': t(p['mu']['kernel']), 'enc.mu.bias': p['mu']['bias'],
         'enc.lv.weight': t(p['logvar']['kernel']),
         'enc.lv.bias': p['logvar']['bias'],
         'dec.emb.weight': p['dec_embed']['embedding'],
         'dec.z2h.weight': t(p['z_to_h0']['kernel']),
         'dec.out.weight': t(p['out']['kernel']),
         'dec.out.bias': p['out']['bias']}
  out.update({f'enc.rnn.{k}': v for k, v in lstm(p['enc_rnn']).items()})
  out.update({f'dec.rnn.{k}': v for k, v in lstm(
      p['dec_rnn'], p['dec_rnn']['ih_const']['kernel']).items()})
  return {k: np.array(v, np.float32) for k, v in out.items()}


def run_torch(args: list[str], omp_wait_policy: str = '',
              keep_freed_memory: bool = False) -> dict:
  """Runs torch_iwnll.py with `args`; returns its JSON line as a dict."""
  env = dict(os.environ)
  if omp_wait_policy:
    env['OMP_WAIT_POLICY'] = omp_wait_policy
  if keep_freed_memory:
    env['GLIBC_TUNABLES'] = host_memory.GLIBC_TUNABLES
  out = subprocess.run([sys.executable, TORCH_SCRIPT] + args, check=True,
                       capture_output=True, text=True, env=env).stdout
  return json.loads(out.strip().splitlines()[-1])


def main(_):
  if FLAGS.malloc == 'keep':
    host_memory.keep_freed_memory()  # Before any JAX computation.
  config = ptb.get_config('twr')
  config.data.dir = FLAGS.data_dir
  data = datasets.load(config, splits=('test',))
  sequences = data.splits['test'][: FLAGS.num_sentences]
  load0 = os.getloadavg()[0]
  model = models.model_from_config(config, len(data.vocab))
  params = init_params(model, jax.random.key(0))
  key = jax.random.key(1)
  modes = {'jax': likelihood._chunk_log_weights}  # pylint: disable=protected-access
  if FLAGS.ablations:
    modes['jax_full_logits'] = ablated_chunk_log_weights(shared=False)
    modes['jax_shared_input'] = ablated_chunk_log_weights(shared=True)

  def run_jax(mode):
    with mock.patch.object(likelihood, '_chunk_log_weights', modes[mode]):
      return jax_iw_log_px(model, params, sequences, FLAGS.samples,
                           FLAGS.batch_size, FLAGS.token_budget, key,
                           FLAGS.bucket_size)

  t0 = time.time()
  for mode in modes:
    run_jax(mode)  # Compiles every shape.
  compile_s = time.time() - t0

  have_torch = importlib.util.find_spec('torch') is not None
  tmp = tempfile.mkdtemp()
  tokens_file = os.path.join(tmp, 'tokens.txt')
  params_file = os.path.join(tmp, 'params.npz')
  if have_torch:
    with open(tokens_file, 'w') as f:
      f.write('\n'.join(' '.join(map(str, s)) for s in sequences))
    np.savez(params_file, **torch_state_dict(params))
  jax_s, torch_runs, nll = {k: [] for k in modes}, [], {}
  for _ in range(FLAGS.rounds):
    for k in modes:
      lp, seconds = run_jax(k)
      jax_s[k].append(seconds)
      nll[k] = -float(np.mean(lp))
    if have_torch:
      torch_runs.append(run_torch(
          ['--tokens-file', tokens_file, '--params-npz', params_file,
           '--vocab', str(len(data.vocab)), '--K', str(FLAGS.samples),
           '--ns', '100', '--threads', str(FLAGS.threads)],
          FLAGS.torch_omp_wait_policy, FLAGS.malloc == 'keep'))
  n = len(sequences)
  lengths = [len(s) - 1 for s in sequences]  # |x| + 1 scored tokens.
  out = {'bench': 'iwnll_throughput', 'jax_version': jax.__version__,
         'malloc': FLAGS.malloc,
         'K': FLAGS.samples, 'sentences': n,
         'mean_scored_tokens': round(float(np.mean(lengths)), 2),
         'jax': dict(sentences_per_s=round(n / statistics.median(jax_s['jax']),
                                           3),
                     batch_size=FLAGS.batch_size,
                     token_budget=FLAGS.token_budget,
                     bucket_size=FLAGS.bucket_size,
                     compile_and_first_passes_s=round(compile_s, 1),
                     nll_mean=round(nll['jax'], 4))}
  for k in modes:
    if k != 'jax':
      out[k] = dict(
          sentences_per_s=round(n / statistics.median(jax_s[k]), 3),
          nll_mean=round(nll[k], 4),
          time_over_jax=round(sum(jax_s[k]) / sum(jax_s['jax']), 3))
  if have_torch:
    t_s = statistics.median(r['seconds'] for r in torch_runs)
    out['torch'] = dict(sentences_per_s=round(n / t_s, 3),
                        version=torch_runs[0]['version'],
                        threads=torch_runs[0]['threads'], ns=100,
                        omp_wait_policy=FLAGS.torch_omp_wait_policy or
                        'default',
                        nll_mean=torch_runs[-1]['nll_mean'])
    out['jax_over_torch'] = round(
        out['jax']['sentences_per_s'] / out['torch']['sentences_per_s'], 3)
    out['torch_check'] = run_torch(['--check'])['check']
  else:
    out['torch'] = 'skipped: torch not importable'
  for f in (tokens_file, params_file):
    if os.path.exists(f):
      os.remove(f)
  os.rmdir(tmp)
  out['load_avg_start_end'] = [round(load0, 2),
                               round(os.getloadavg()[0], 2)]
  print(json.dumps(out))


if __name__ == '__main__':
  define_flags()
  app.run(main)
