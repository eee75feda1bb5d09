"""Dialogue training speed at paper size on real DailyDialog batches, vs torch.

  python bench/dialogue_train_throughput.py \
      --data_dir=../shared/data/dailydialog [--steps=75] [--malloc=keep]

Paper-size model (configs/dailydialog.py:twr: embedding 200, utterance GRU
300 x 2, context GRU 300, z 200, decoder GRU 500, vocabulary 10,002, batch
96, Adam with coupled L2) on the training batches of steps 0 ..
`--warmup + --steps - 1` (`DialogBatcher`, seed 1111: the first batches of
epoch 0, their natural mix of context and response lengths). Training
contexts/s of

  jax_packed   the train step as `launch.train` runs it (`pack_batches`:
               context turns and responses laid end to end, real tokens
               only, `dialogue_data.pack_batch`);
  jax_padded   the same step on the padded [96, 9, 39] batches (what
               packing buys; `--padded`);
  torch        bench/reference/torch_dialogue_train.py: the original's
               iteration (packed bi-GRU utterance encoder over B x N_b
               turns, packed context GRU, recognition and prior nets in a
               Python loop over the context steps, decoder and output layer
               over the batch's padded responses, Adam with the shared
               embedding updated twice), torch 2.13 CPU, `--threads` threads,
               OMP_WAIT_POLICY=PASSIVE.

Every mode first runs the `--warmup` batches untimed; the JAX packed step also
compiles every shape of the timed batches first (reported as compile_s). The
timed batches are split into `--rounds` chunks and the modes take turns chunk
by chunk (alternating order), so load changes on a shared machine hit all
alike. `--malloc=keep` (default) keeps freed memory mapped in this process
(twr_jax/core/host_memory.py), which JAX and torch share; 'default' is glibc's.
`--profile` then times the packed step's parts on one batch (forward +
backward each): the utterance encoder, the context GRU with the KL terms, the
decoder GRU, the output layer with the cross-entropy, the noise, the Adam
update. Prints one JSON line; `jax_packed_over_torch` is the ratio of
contexts/s.
"""

import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'bench', 'reference'))
from configs import dailydialog  # pylint: disable=g-import-not-at-top
from twr_jax.core import host_memory
from twr_jax.core import optim
from twr_jax.core import prng
from twr_jax.core import schedules
from twr_jax.dialogue import data as dialogue_data
from twr_jax.dialogue import model as dialogue_model
from twr_jax.dialogue import task as dialogue_task
from flax.training import train_state

flags.DEFINE_string('data_dir', os.path.join(ROOT, '..', 'shared', 'data',
                                             'dailydialog'), 'DailyDialog.')
flags.DEFINE_integer('steps', 75, 'Timed batches per mode.')
flags.DEFINE_integer('warmup', 5, 'Untimed batches per mode first.')
flags.DEFINE_integer('rounds', 3, 'Chunks the modes take turns on.')
flags.DEFINE_integer('threads', 2, 'torch threads.')
flags.DEFINE_bool('padded', False, 'Also time the padded JAX step.')
flags.DEFINE_bool('torch', True, 'Time the torch reference.')
flags.DEFINE_bool('profile', True, "Time the packed step's parts.")
flags.DEFINE_enum(
    'malloc', 'keep', ['keep', 'default'],
    "'keep': host_memory.keep_freed_memory() (JAX and torch share this"
    " process); 'default': glibc's defaults.")
FLAGS = flags.FLAGS


def batch_stats(batches) -> dict[str, float]:
  """What the original's arrays would hold: N_b, padded and real tokens."""
  n_b = [int(b['num_turns'].max()) for b in batches]
  r_b = [int(b['response_len'].max()) for b in batches]
  return dict(
      mean_context_turns=round(float(np.mean(n_b)), 2),
      mean_padded_response=round(float(np.mean(r_b)), 2),
      mean_real_response=round(float(np.mean(
          [b['response_len'].mean() for b in batches])), 2))


class JaxMode:
  """One JAX train step over a list of (possibly packed) batches."""

  def __init__(self, model, config, params, batches):
    self.batches = batches
    tx = optim.optimizer_from_config(config)
    # A copy: the step donates its state, and the modes share `params`.
    params = jax.tree_util.tree_map(jnp.array, params)
    self.state = train_state.TrainState.create(apply_fn=model.apply, params=params,
                                         tx=tx)
    self.fn = jax.jit(dialogue_task.make_train_step(
        model, config, schedules.make_kl_schedule('constant')),
                      donate_argnums=(0,))
    self.key = jax.random.key(0)
    self.times = []

  def run(self, i) -> float:
    t = time.perf_counter()
    self.state, metrics = self.fn(self.state, self.batches[i], self.key)
    jax.block_until_ready(metrics)
    return time.perf_counter() - t


class TorchMode:
  """The torch reference over the padded batches."""

  def __init__(self, vocab_size, config, batches):
    import torch  # pylint: disable=g-import-not-at-top
    import torch_dialogue_train  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(FLAGS.threads)
    torch.manual_seed(0)
    m = config.model
    self.net = torch_dialogue_train.DialogTrainer(
        vocab_size, m.emb_dim, m.utt_hidden, m.ctx_hidden, m.latent).train()
    self.batches = batches
    self.times = []

  def run(self, i) -> float:
    t = time.perf_counter()
    self.net.step(self.batches[i])
    return time.perf_counter() - t


def _shape(batch):
  return (batch['ctx_tokens'].shape[0], batch['res_inputs'].shape[0])


def profile_parts(model, params, config, batch, reps=3) -> dict[str, float]:
  """Median ms of the packed step's parts, forward + backward each."""
  b = jax.tree_util.tree_map(jnp.asarray, batch)
  keys = prng.example_keys(jax.random.key(0), b['index'], 0)
  var = {'params': params}
  rows, slots = b['ctx_last'].shape
  noise = jax.jit(lambda: dialogue_model.packed_noise(model, b, keys, True))()
  num_ctx = b['ctx_tokens'].shape[0]
  e_ctx = jax.random.normal(jax.random.key(1), b['ctx_tokens'].shape
                            + (model.emb_dim,))
  e_res = jax.random.normal(jax.random.key(2), b['res_inputs'].shape
                            + (model.emb_dim,))
  item = jnp.concatenate([b['ctx_item'], jnp.where(
      b['res_row'] >= 0, rows * slots + b['res_row'], -1)])
  seg = dialogue_model._segment_grus  # pylint: disable=protected-access
  starts = dialogue_model._starts  # pylint: disable=protected-access

  def encoder(p):
    e = jnp.concatenate([e_ctx, e_res])
    f, r = seg([(p['utt_encoder']['fwd'], e, starts(item), None),
                (p['utt_encoder']['bwd'], e[:, ::-1], starts(item[:, ::-1]),
                 None)])
    return jnp.sum(f) + jnp.sum(r)

  u = jax.random.normal(jax.random.key(3), (rows, slots,
                                            2 * model.utt_hidden))

  def context(p):
    c, h = model.apply({'params': p}, u, b['floors'], b['num_turns'], noise,
                       method=dialogue_model.DialogTWRVAE.context_states)
    out = model.apply({'params': p}, u[:, 0], c, h, b['num_turns'], noise,
                      method=dialogue_model.DialogTWRVAE.kl_and_z)
    return jnp.sum(out['kl']) + jnp.sum(out['z'])

  h0 = jax.random.normal(jax.random.key(4), b['res_row'].shape
                         + (model.dec_hidden,))

  def decoder(p):
    (h,) = seg([(p['dec_rnn'], e_res, starts(b['res_row']), h0)])
    return jnp.sum(h)

  h_dec = jax.random.normal(jax.random.key(5), b['res_row'].shape
                            + (model.dec_hidden,))

  def output(p):
    logits = model.apply({'params': p}, h_dec, method=lambda m, x: m.out(x))
    ce = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(
        logits, b['res_targets'][..., None], -1)[..., 0]
    return jnp.sum(jnp.where(b['res_row'] >= 0, ce, 0.0))

  tx = optim.optimizer_from_config(config)
  opt_state = tx.init(params)
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  fns = dict(
      utterance_encoder=(jax.jit(jax.grad(encoder)), (params,)),
      context_and_kl=(jax.jit(jax.grad(context)), (params,)),
      decoder_rnn=(jax.jit(jax.grad(decoder)), (params,)),
      output_ce=(jax.jit(jax.grad(output)), (params,)),
      noise=(jax.jit(lambda k: dialogue_model.packed_noise(model, b, k, True)),
             (keys,)),
      optimiser=(jax.jit(lambda g, s, p: tx.update(g, s, p)),
                 (grads, opt_state, params)),
  )
  times = {k: [] for k in fns}
  for fn, args in fns.values():
    jax.block_until_ready(fn(*args))
  for _ in range(reps):
    for k, (fn, args) in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[k].append(time.perf_counter() - t)
  out = {k: round(1e3 * statistics.median(v), 1) for k, v in times.items()}
  out['lanes'] = dict(context=num_ctx, responses=b['res_inputs'].shape[0])
  return out


def main(argv):
  del argv
  if FLAGS.malloc == 'keep':
    host_memory.keep_freed_memory()  # Before any JAX or torch computation.
  # OpenMP's default busy-waiting collapses under load on a shared machine
  # (see bench/train_throughput.py); PASSIVE is set before torch starts.
  os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
  load0 = os.getloadavg()[0]
  config = dailydialog.get_config('twr')
  config.data.dir = FLAGS.data_dir
  dialogues = dialogue_data.read_split(config, 'train')
  vocab = dialogue_data.load_vocab(config, None, dialogues)
  batcher = dialogue_data.DialogBatcher(
      dialogue_data.EncodedDialogues.encode(dialogues, vocab,
                                            config.data.max_utt_len),
      config.train.batch_size, config.data.window, config.seed)
  n = FLAGS.warmup + FLAGS.steps
  rows = [batcher.train_batch(s) for s in range(n)]
  t = time.perf_counter()
  packed = [dialogue_data.pack_batch(b) for b in rows]
  pack_ms = 1e3 * (time.perf_counter() - t) / n
  model = dialogue_model.model_from_config(config, len(vocab))
  params = dialogue_task.init_params(model, jax.random.key(0), config, vocab)

  modes = {'jax_packed': JaxMode(model, config, params, packed)}
  if FLAGS.padded:
    modes['jax_padded'] = JaxMode(model, config, params, rows)
  if FLAGS.torch:
    try:
      modes['torch'] = TorchMode(len(vocab), config, rows)
    except ImportError:
      pass
  compile_s = {}
  for name, mode in modes.items():
    t = time.perf_counter()
    for i in range(FLAGS.warmup):
      mode.run(i)
    if name == 'jax_packed':  # Every timed shape once, outside the timing.
      seen = {_shape(packed[i]) for i in range(FLAGS.warmup)}
      for i in range(FLAGS.warmup, n):
        if _shape(packed[i]) not in seen:
          seen.add(_shape(packed[i]))
          mode.run(i)
    compile_s[name] = round(time.perf_counter() - t, 1)

  timed = list(range(FLAGS.warmup, n))
  chunks = np.array_split(timed, FLAGS.rounds)
  loads = []
  for r, chunk in enumerate(chunks):
    order = list(modes.values())
    for mode in order if r % 2 else order[::-1]:
      for i in chunk:
        mode.times.append(mode.run(int(i)))
    loads.append(round(os.getloadavg()[0], 2))

  out = {'bench': 'dialogue_train_throughput', 'jax': jax.__version__,
         'malloc': FLAGS.malloc, 'batch': config.train.batch_size,
         'vocab': len(vocab), 'steps': FLAGS.steps, 'warmup': FLAGS.warmup,
         'rounds': FLAGS.rounds, **batch_stats(rows[FLAGS.warmup:]),
         'shapes_packed': len({_shape(b) for b in packed}),
         'pack_ms_per_batch': round(pack_ms, 1),
         'load_avg_start': round(load0, 2), 'load_avg_after_rounds': loads}
  contexts = FLAGS.steps * config.train.batch_size
  for name, mode in modes.items():
    total = sum(mode.times)
    out[name] = dict(contexts_per_s=round(contexts / total, 2),
                     median_step_s=round(statistics.median(mode.times), 3),
                     warmup_and_compile_s=compile_s[name])
  if 'torch' in modes:
    import torch  # pylint: disable=g-import-not-at-top
    out['torch'].update(version=torch.__version__, threads=FLAGS.threads,
                        omp_wait_policy=os.environ['OMP_WAIT_POLICY'])
    out['jax_packed_over_torch'] = round(
        out['jax_packed']['contexts_per_s'] / out['torch']['contexts_per_s'],
        2)
  if 'jax_padded' in modes:
    out['jax_packed_over_padded'] = round(
        out['jax_packed']['contexts_per_s']
        / out['jax_padded']['contexts_per_s'], 2)
  if FLAGS.profile:
    # The timed batch of median size (context lanes).
    i = sorted(timed, key=lambda i: _shape(packed[i]))[len(timed) // 2]
    out['profile_ms'] = profile_parts(model, params, config, packed[i])
    out['profile_ms']['step'] = round(1e3 * statistics.median(
        modes['jax_packed'].run(i) for _ in range(3)), 1)
  out['load_avg_end'] = round(os.getloadavg()[0], 2)
  print(json.dumps(out))


if __name__ == '__main__':
  app.run(main)
