"""Latent interpolation with ROUGE (paper Fig. 2 / Table 4; SPEC C).

  python -m launch.interpolate --workdir=W [--pairs=100] [--points=11]
      [--split=test] [--seed=0]
  python -m launch.interpolate --workdir=W --pairs_file=pairs.txt

Pairs are drawn at random from --split, or read from --pairs_file (one pair a
line: a JSON list of two sentences, or two sentences separated by a tab;
tokenised like the run's data). Language-model runs only.

Writes W/interpolation.json (every setting, the mean ROUGE-1/2/L F1 curves
w.r.t. both inputs, every pair's decodes), W/interpolation.txt (tables like the
paper's) and W/interpolation.png.
"""

from absl import flags

from twr_jax import tasks
from twr_jax.core import checkpoint
from twr_jax.core import cli
from twr_jax.core import compile_cache
from twr_jax.core import workdir as workdir_lib
from twr_jax.lm import interpolate

flags.DEFINE_string('workdir', None, 'Training workdir.')
flags.DEFINE_string('step', 'best', "'best', 'last' or a step number.")
flags.DEFINE_enum('split', 'test', ['train', 'valid', 'test'], 'Split.')
flags.DEFINE_integer('pairs', 100, 'Sentence pairs (>= 1).')
flags.DEFINE_string('pairs_file', None,
                    'Pairs of your own, one a line: a JSON list of two'
                    ' sentences or two tab-separated sentences.')
flags.DEFINE_integer('points', 11, 'Points on the alpha grid (0 .. 1, >= 2).')
flags.DEFINE_integer('seed', 0, 'Seed of the pair selection.')
flags.DEFINE_integer('max_len', 100, 'Max decoded tokens (>= 1).')
flags.DEFINE_integer('max_sentence_len', None,
                     'Exclude longer sentences (words, >= 1); default: none.')
flags.DEFINE_integer('show', 3, 'Example pairs in the text table (>= 0).')
flags.mark_flag_as_required('workdir')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  compile_cache.enable()  # Persistent XLA cache, see its docstring.
  checkpoint.quiet_orbax_logging()
  # The options first, before the workdir is read (issue 13).
  interpolate.check_options(
      num_pairs=FLAGS.pairs, num_points=FLAGS.points, max_len=FLAGS.max_len,
      max_sentence_len=FLAGS.max_sentence_len, show=FLAGS.show)
  step = workdir_lib.parse_step(FLAGS.step)
  command = tasks.command(FLAGS.workdir, 'interpolate')
  print(command(FLAGS.workdir, step, FLAGS.flag_values_dict()))



def run():
  """Console entry point (`twr-interpolate`)."""
  cli.run(main)


if __name__ == '__main__':
  run()
