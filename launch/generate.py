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

import json
import os

from absl import flags

from twr_jax import checkpoint
from twr_jax import cli
from twr_jax import compile_cache
from twr_jax import decode
from twr_jax import errors
from twr_jax import generate
from twr_jax import workdir as workdir_lib

flags.DEFINE_string('workdir', None, 'Training workdir.')
flags.DEFINE_string('step', 'best', "'best', 'last' or a step number.")
flags.DEFINE_enum('mode', 'prior', list(generate.MODES),
                  'Language model: where z is from.')
flags.DEFINE_enum('decode', 'greedy', list(decode.DECODERS),
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
  dialogue = FLAGS.contexts_file is not None
  decode.check_options(
      decoder=FLAGS.decode, num=FLAGS.num, max_len=FLAGS.max_len,
      temperature=FLAGS.temperature, beam_size=FLAGS.beam_size,
      decoders=generate.DIALOGUE_DECODERS if dialogue else decode.DECODERS)
  if FLAGS.sentences_file is not None and FLAGS.mode != 'reconstruct':
    raise errors.ConfigError('--sentences_file needs --mode=reconstruct.')
  if dialogue and FLAGS.sentences_file is not None:
    raise errors.ConfigError('--contexts_file (dialogue) and --sentences_file'
                             ' (language model) exclude each other.')
  step = workdir_lib.parse_step(FLAGS.step)
  task = workdir_lib.load_config(FLAGS.workdir).get('task', 'lm')
  if task == 'dialogue' and not dialogue:
    raise errors.ConfigError(
        f'{FLAGS.workdir} is a dialogue run: give it contexts with'
        ' --contexts_file=FILE (JSON lines of turns, - for standard input).')
  if task == 'dialogue' and FLAGS.mode != 'prior':
    raise errors.ConfigError(
        f'--mode={FLAGS.mode} is not offered for dialogue runs: they answer'
        ' --contexts_file.')
  if task != 'dialogue' and dialogue:
    raise errors.ConfigError(
        f'{FLAGS.workdir} is a language-model run: --contexts_file is for'
        ' dialogue runs (use --mode and --sentences_file).')
  if FLAGS.num == 0:
    return  # Nothing to decode: print nothing.
  if dialogue:
    contexts = generate.read_contexts(FLAGS.contexts_file)
    run = workdir_lib.load_run(FLAGS.workdir, step)
    results = generate.respond(run, contexts, FLAGS.num, FLAGS.decode,
                               FLAGS.max_len, FLAGS.temperature, FLAGS.seed)
    path = os.path.join(FLAGS.workdir, f'responses_{FLAGS.decode}.jsonl')
    with open(path, 'w') as f:
      f.writelines(json.dumps(r) + '\n' for r in results)
    print(generate.format_responses(results))
    return
  sentences = None
  if FLAGS.sentences_file is not None:
    sentences = generate.read_sentences(FLAGS.sentences_file)
  run = workdir_lib.load_run(FLAGS.workdir, step)
  lines = generate.generate(
      run, FLAGS.workdir, FLAGS.mode, FLAGS.decode, FLAGS.num, FLAGS.max_len,
      FLAGS.temperature, FLAGS.beam_size, FLAGS.split, FLAGS.sample_posterior,
      FLAGS.seed, sentences=sentences)
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
