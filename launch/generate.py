"""Generates sentences (language model) or responses (dialogue) of a run.

Language-model runs:

  python -m launch.generate --workdir=W --mode=prior --decode=greedy --num=10
  python -m launch.generate --workdir=W --mode=reconstruct --decode=beam \
      --beam_size=5 --split=test --num=10
  python -m launch.generate --workdir=W --mode=reconstruct \
      --sentences_file=mine.txt

prior: z ~ N(0, I). reconstruct: z = posterior mean (or a posterior sample with
--sample_posterior) of the first --num sentences of --sentences_file (one per
line; '-' reads standard input) or else of --split. One sentence per line on
stdout (reconstruct: input TAB output); also written to
W/samples_<mode>_<decode>.txt.

Dialogue runs:

  python -m launch.generate --workdir=DD_RUN --contexts_file=contexts.jsonl
  echo '["hi , how are you ?"]' | python -m launch.generate \
      --workdir=DD_RUN --contexts_file=- --decode=sample --temperature=0.7

--num responses per context (each line of the file a JSON list of turns, a
turn a string or {"text": ..., "floor": 0|1}): greedy decoding from --num
prior samples as the evaluator does, or temperature sampling; printed per
context and written to W/responses_<decode>.jsonl.

Options are checked before anything is loaded: --num >= 0 (0 prints nothing),
--max_len >= 1, --temperature >= 0 (0 = greedy), --beam_size >= 1 (1 =
greedy).
"""


from absl import flags

from twr_jax import errors
from twr_jax import tasks
from twr_jax.core import checkpoint
from twr_jax.core import cli
from twr_jax.core import compile_cache
from twr_jax.core import decoding
from twr_jax.core import workdir as workdir_lib
from twr_jax.lm import generate

flags.DEFINE_string('workdir', None, 'Training workdir.')
flags.DEFINE_string('step', 'best', "'best', 'last' or a step number.")
flags.DEFINE_enum('mode', 'prior', list(generate.MODES),
                  'Language model: where z is from.')
flags.DEFINE_enum('decode', 'greedy', list(decoding.DECODERS),
                  "Decoder (dialogue: 'greedy' or 'sample').")
flags.DEFINE_integer('num', 10, 'Sentences; dialogue: responses per context'
                     ' (>= 0).')
flags.DEFINE_float('temperature', 1.0, 'Sampling temperature (>= 0, 0 ='
                   ' greedy).')
flags.DEFINE_integer('beam_size', 5, 'Beam size (>= 1).')
flags.DEFINE_integer('max_len', 40, 'Max tokens, EOS included (>= 1).')
flags.DEFINE_enum('split', 'test', ['train', 'valid', 'test'],
                  'Split to reconstruct.')
flags.DEFINE_string('sentences_file', None,
                    "Language model, reconstruct: sentences to reconstruct,"
                    " one per line ('-': standard input).")
flags.DEFINE_string('contexts_file', None,
                    "Dialogue: contexts, JSON lines of turns ('-': standard"
                    ' input).')
flags.DEFINE_bool('sample_posterior', False,
                  'reconstruct: sample z ~ q(z|x) instead of its mean.')
flags.DEFINE_integer('seed', 0, 'Seed of z and of sampling.')
flags.mark_flag_as_required('workdir')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  compile_cache.enable()  # Persistent XLA cache, see its docstring.
  checkpoint.quiet_orbax_logging()
  if FLAGS.sentences_file is not None and FLAGS.mode != 'reconstruct':
    raise errors.ConfigError('--sentences_file needs --mode=reconstruct.')
  if FLAGS.contexts_file is not None and FLAGS.sentences_file is not None:
    raise errors.ConfigError('--contexts_file (dialogue) and --sentences_file'
                             ' (language model) exclude each other.')
  # Task-independent options first, before the workdir is read (issue 13);
  # the run's task then checks its own decoders, before anything is loaded.
  decoding.check_options(
      decoder=FLAGS.decode, num=FLAGS.num, max_len=FLAGS.max_len,
      temperature=FLAGS.temperature, beam_size=FLAGS.beam_size)
  step = workdir_lib.parse_step(FLAGS.step)
  command = tasks.command(FLAGS.workdir, 'generate')
  out = command(FLAGS.workdir, step, FLAGS.flag_values_dict())
  if out:
    print(out)



def run():
  """Console entry point (`twr-generate`)."""
  cli.run(main)


if __name__ == '__main__':
  run()
