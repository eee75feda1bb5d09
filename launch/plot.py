r"""Plots training runs: a thin absl entry point around `plots.plot_workdirs`.

  python -m launch.plot --workdir=/tmp/ptb_twr
  python -m launch.plot --workdir=/tmp/ptb_twr --compare=/tmp/ptb_vae \
      --out=/tmp/figures

Writes training_curves.png (all runs overlaid), kl_profile_<split>.png for
each eval_<split>.json of --workdir, and interpolation.png if
--workdir/interpolation.json exists, then prints the paths written. Needs
matplotlib: pip install 'twr_jax[plots]'.
"""

from absl import app
from absl import flags

from twr_jax.core import cli
from twr_jax.core import plots

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'The training workdir to plot.')
flags.DEFINE_multi_string('compare', [],
                          'More workdirs to overlay (repeat the flag).')
flags.DEFINE_string('out', None, 'Output folder (default: --workdir).')
flags.mark_flag_as_required('workdir')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    written = plots.plot_workdirs(FLAGS.workdir, FLAGS.compare, FLAGS.out)
  except FileNotFoundError as e:
    # A wrong --workdir is a usage error: say so without a traceback.
    raise app.UsageError(str(e)) from e
  for path in written:
    print(path)



def run():
  """Console entry point (`twr-plot`)."""
  cli.run(main)


if __name__ == '__main__':
  run()
