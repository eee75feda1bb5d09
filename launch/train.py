"""Trains a TWR-VAE language model: a thin absl entry point.

  python -m launch.train --config=configs/synthetic.py --workdir=/tmp/twr
  twr-train --config=ptb:twr_mean --config.data.dir=DIR --workdir=/tmp/ptb
  python -m launch.train --config=configs/ptb.py:twr \
      --config.data.dir=../shared/data/ptb --workdir=/tmp/ptb \
      --config.train.num_steps=200

Re-running the same command on the same workdir resumes from its latest
checkpoint. All logic lives in `twr_jax.train.train_and_evaluate`, so that
notebooks and tests call exactly what this script calls.
"""

import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from twr_jax import train
from twr_jax.core import checkpoint
from twr_jax.core import cli
from twr_jax.core import compile_cache
from twr_jax.core import host_memory

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics.')
config_flags.DEFINE_config_file(
    'config', None, 'A config file, optionally with a variant: FILE:VARIANT.',
    lock_config=True,
)
flags.DEFINE_bool('multihost', False,
                  'Multi-host: call jax.distributed.initialize() and let it'
                  ' detect the cluster (Cloud TPU pods, SLURM, ...).')
flags.DEFINE_string('coordinator_address', None,
                    'Multi-host: host:port of process 0 (jax.distributed).')
flags.DEFINE_integer('num_processes', None, 'Multi-host: number of processes.')
flags.DEFINE_integer('process_id', None, 'Multi-host: this process.')
flags.DEFINE_bool(
    'keep_host_memory', True,
    'Keep freed host memory mapped (glibc malloc: one arena, no mmap, no'
    ' trim), so XLA:CPU steps stop page-faulting their buffers in again'
    ' (~1.4x on CPU); see twr_jax/core/host_memory.py.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.keep_host_memory:
    host_memory.keep_freed_memory()  # Before any JAX computation.
  compile_cache.enable()  # Persistent XLA cache, see its docstring.
  if FLAGS.coordinator_address or FLAGS.multihost:
    # CPU devices need gloo for cross-process collectives; GPU and TPU
    # backends ignore this setting.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if FLAGS.coordinator_address:
    jax.distributed.initialize(
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes, process_id=FLAGS.process_id,
    )
  elif FLAGS.multihost:
    jax.distributed.initialize()
  checkpoint.quiet_orbax_logging()
  logging.info('Config:\n%s', FLAGS.config)
  results = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  if results and jax.process_index() == 0:
    print(train.format_table(results))



def run():
  """Console entry point: `twr-train --config=ptb:twr --workdir=W`.

  Short config names (synthetic, ptb, yahoo, yelp) resolve to the config files
  that ship with the package, so an installed twr_jax needs no checkout.
  """
  try:
    from twr_jax import configs  # pylint: disable=g-import-not-at-top
  except ImportError:  # A checkout on sys.path without installing.
    import configs  # pylint: disable=g-import-not-at-top
  sys.argv = configs.resolve_config_flags(sys.argv)
  cli.run(main)


if __name__ == '__main__':
  run()
