"""Evaluates a trained run: standard and paper-protocol numbers.

  python -m launch.evaluate --workdir=W [--split=test] [--iw_samples=500]
      [--step=best|last|N]
  python -m launch.evaluate --workdir=DIALOGUE_W [--split=test]
      [--word_vectors=glove.twitter.27B.200d.txt] [--references=FILE]

Writes W/eval_<split>.json with two labelled sections and prints a table.
Language model (twr_jax/lm/report.py): `standard` (IW-NLL, PPL, ELBO, KL, MI,
AU, KL profile) and `paper` (the original code's protocol, not a likelihood
bound). Dialogue (twr_jax/dialogue/report.py): 10 greedy prior samples per
context scored by BLEU, BOW embedding and distinct-n in `paper` (SPEC B.7) and
`standard` (SPEC B.8) modes, plus W/samples_<split>.jsonl.
"""


from absl import flags

from twr_jax import tasks
from twr_jax.core import checkpoint
from twr_jax.core import cli
from twr_jax.core import compile_cache
from twr_jax.core import host_memory
from twr_jax.core import workdir as workdir_lib

flags.DEFINE_string('workdir', None, 'Training workdir.')
flags.DEFINE_enum('split', 'test', ['train', 'valid', 'test'], 'Split.')
flags.DEFINE_string('step', 'best', "'best', 'last' or a step number.")
flags.DEFINE_integer('iw_samples', 500, 'K for IW-NLL (0: skip).')
flags.DEFINE_integer('iw_batch_size', 1, 'Sentences per IW-NLL call.')
flags.DEFINE_integer('iw_token_budget', 65536,
                     'Max sentences x samples x tokens per IW-NLL call.')
flags.DEFINE_integer('paper_batch_size', 64, 'Batch size of the paper protocol.')
flags.DEFINE_integer('mi_group_size', None,
                     'Sentences per MI group (default: the config, 32).')
flags.DEFINE_string('word_vectors', None,
                    'Dialogue: word vectors (GloVe/word2vec text) for the BOW'
                    ' metrics; default config.eval.word_vectors.')
flags.DEFINE_string('references', None,
                    'Dialogue: multi-reference file (JSON lines).')
flags.DEFINE_string('data_dir', None, 'Overrides config.data.dir.')
flags.DEFINE_integer('num_samples', None, 'Dialogue: responses per context.')
flags.DEFINE_integer('sample_batch_size', None,
                     'Dialogue: contexts decoded together.')
flags.DEFINE_integer('max_contexts', None,
                     'Dialogue: only the first N contexts (smoke runs); a'
                     ' --references file still has a line per context of the'
                     ' whole split.')
flags.DEFINE_bool(
    'keep_host_memory', True,
    'Keep freed host memory mapped (glibc malloc: one arena, no mmap, no'
    ' trim), so XLA:CPU steps stop page-faulting their buffers in again'
    ' (~1.4x on CPU); see twr_jax/core/host_memory.py.')
flags.DEFINE_enum('compute_dtype', None, ['float32', 'bfloat16'],
                  "Overrides the run's train.compute_dtype (default: the"
                  " run's).")
flags.mark_flag_as_required('workdir')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if FLAGS.keep_host_memory:
    host_memory.keep_freed_memory()  # Before any JAX computation.
  compile_cache.enable()  # Persistent XLA cache, see its docstring.
  checkpoint.quiet_orbax_logging()
  step = workdir_lib.parse_step(FLAGS.step)
  command = tasks.command(FLAGS.workdir, 'evaluate')
  print(command(FLAGS.workdir, step, FLAGS.flag_values_dict()))



def run():
  """Console entry point (`twr-evaluate`)."""
  cli.run(main)


if __name__ == '__main__':
  run()
