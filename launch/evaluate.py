"""Evaluates a trained language model: standard and paper-protocol numbers.

  python -m launch.evaluate --workdir=W [--split=test] [--iw_samples=500]
      [--step=best|last|N]

Writes W/eval_<split>.json with two labelled sections and prints a table (see
twr_jax/lm_eval.py): `standard` (IW-NLL, PPL, ELBO, KL, MI, AU, KL profile) and
`paper` (the original code's protocol, not a likelihood bound).
"""

import json
import os

from absl import app
from absl import flags

from twr_jax import checkpoint
from twr_jax import lm_eval
from twr_jax import workdir as workdir_lib

flags.DEFINE_string('workdir', None, 'Training workdir.')
flags.DEFINE_enum('split', 'test', ['train', 'valid', 'test'], 'Split.')
flags.DEFINE_string('step', 'best', "'best', 'last' or a step number.")
flags.DEFINE_integer('iw_samples', 500, 'K for IW-NLL (0: skip).')
flags.DEFINE_integer('iw_batch_size', 16, 'Sentences per IW-NLL call.')
flags.DEFINE_integer('iw_token_budget', 16384,
                     'Max sentences x samples x tokens per IW-NLL call.')
flags.DEFINE_integer('paper_batch_size', 64, 'Batch size of the paper protocol.')
flags.DEFINE_integer('mi_group_size', None,
                     'Sentences per MI group (default: the config, 32).')
flags.mark_flag_as_required('workdir')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  checkpoint.quiet_orbax_logging()
  step = workdir_lib.parse_step(FLAGS.step)
  result = lm_eval.evaluate_run(
      FLAGS.workdir, FLAGS.split, step, FLAGS.iw_samples, FLAGS.iw_batch_size,
      FLAGS.iw_token_budget, FLAGS.paper_batch_size, FLAGS.mi_group_size)
  path = os.path.join(FLAGS.workdir, f'eval_{FLAGS.split}.json')
  with open(path + '.tmp', 'w') as f:
    json.dump(result, f, indent=2)
  os.replace(path + '.tmp', path)
  print(lm_eval.format_result(result))
  print(f'wrote {path}')



def run():
  """Console entry point (`twr-evaluate`)."""
  app.run(main)


if __name__ == '__main__':
  run()
