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

from absl import flags

from twr_jax import checkpoint
from twr_jax import cli
from twr_jax import decode
from twr_jax import generate
from twr_jax import workdir as workdir_lib

flags.DEFINE_string('workdir', None, 'Training workdir.')
flags.DEFINE_string('step', 'best', "'best', 'last' or a step number.")
flags.DEFINE_enum('mode', 'prior', list(generate.MODES), 'Where z is from.')
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
  step = workdir_lib.parse_step(FLAGS.step)
  run = workdir_lib.load_run(FLAGS.workdir, step)
  lines = generate.generate(
      run, FLAGS.workdir, FLAGS.mode, FLAGS.decode, FLAGS.num, FLAGS.max_len,
      FLAGS.temperature, FLAGS.beam_size, FLAGS.split, FLAGS.sample_posterior,
      FLAGS.seed)
  path = os.path.join(FLAGS.workdir,
                      f'samples_{FLAGS.mode}_{FLAGS.decode}.txt')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))



def run():
  """Console entry point (`twr-generate`)."""
  cli.run(main)


if __name__ == '__main__':
  run()
