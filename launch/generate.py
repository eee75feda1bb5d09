"""Generates sentences from a trained language model.

  python -m launch.generate --workdir=W --mode=prior --decode=greedy --num=10
  python -m launch.generate --workdir=W --mode=reconstruct --decode=beam \
      --beam_size=5 --split=test --num=10

prior: z ~ N(0, I). reconstruct: z = posterior mean (or a posterior sample with
--sample_posterior) of the first --num sentences of --split. One sentence per
line on stdout (reconstruct: input TAB output); also written to
W/samples_<mode>_<decode>.txt.
"""

import os

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from twr_jax import checkpoint
from twr_jax import datasets
from twr_jax import decode
from twr_jax import models
from twr_jax import workdir as workdir_lib

flags.DEFINE_string('workdir', None, 'Training workdir.')
flags.DEFINE_string('step', 'best', "'best', 'last' or a step number.")
flags.DEFINE_enum('mode', 'prior', ['prior', 'reconstruct'], 'Where z is from.')
flags.DEFINE_enum('decode', 'greedy', list(decode.DECODERS), 'Decoder.')
flags.DEFINE_integer('num', 10, 'Sentences.')
flags.DEFINE_float('temperature', 1.0, 'Sampling temperature.')
flags.DEFINE_integer('beam_size', 5, 'Beam size.')
flags.DEFINE_integer('max_len', 40, 'Max tokens (EOS included).')
flags.DEFINE_enum('split', 'test', ['train', 'valid', 'test'],
                  'Split to reconstruct.')
flags.DEFINE_bool('sample_posterior', False,
                  'reconstruct: sample z ~ q(z|x) instead of its mean.')
flags.DEFINE_integer('seed', 0, 'Seed of z and of sampling.')
flags.mark_flag_as_required('workdir')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  checkpoint.quiet_orbax_logging()
  step = FLAGS.step if FLAGS.step in ('best', 'last') else int(FLAGS.step)
  run = workdir_lib.load_run(FLAGS.workdir, step)
  key_z, key_dec = jax.random.split(jax.random.key(FLAGS.seed))
  inputs = None
  if FLAGS.mode == 'prior':
    z = jax.random.normal(key_z, (FLAGS.num, run.config.model.latent))
  else:
    seqs = datasets.load(run.config, FLAGS.workdir,
                         splits=(FLAGS.split,)).splits[FLAGS.split][:FLAGS.num]
    width = max(len(s) for s in seqs)
    tokens = np.zeros((len(seqs), width), np.int32)
    for i, s in enumerate(seqs):
      tokens[i, : len(s)] = s
    lengths = jnp.asarray([len(s) for s in seqs], jnp.int32)
    mu, logvar = run.model.apply({'params': run.params}, jnp.asarray(tokens),
                                 method=models.TWRVAE.encode)
    z_mu, z_logvar = models.pool_posterior(mu, logvar, lengths,
                                           run.model.z_mode)
    z = z_mu
    if FLAGS.sample_posterior:
      z = z_mu + jnp.exp(0.5 * z_logvar) * jax.random.normal(key_z, z.shape)
    inputs = [' '.join(run.vocab.decode(s)) for s in seqs]
  if FLAGS.decode == 'greedy':
    out, _ = decode.greedy(run.model, run.params, z, FLAGS.max_len)
  elif FLAGS.decode == 'sample':
    out, _ = decode.sample(run.model, run.params, z, FLAGS.max_len, key_dec,
                           FLAGS.temperature)
  else:
    out, _ = decode.beam_search(run.model, run.params, z, FLAGS.max_len,
                                FLAGS.beam_size)
  lines = [' '.join(run.vocab.decode(ids)) for ids in np.asarray(out)]
  if inputs is not None:
    lines = [f'{x}\t{y}' for x, y in zip(inputs, lines)]
  path = os.path.join(FLAGS.workdir,
                      f'samples_{FLAGS.mode}_{FLAGS.decode}.txt')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
