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

import json
import os

from absl import flags

from twr_jax import checkpoint
from twr_jax import cli
from twr_jax import compile_cache
from twr_jax import datasets
from twr_jax import errors
from twr_jax import generate
from twr_jax import interpolate
from twr_jax import workdir as workdir_lib

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


def format_text(result) -> str:
  lines = [f"ROUGE F1 (mean over {result['pairs']} pairs) by alpha",
           f"{'alpha':>6} | {'R1/x1':>6} {'R2/x1':>6} {'RL/x1':>6} | "
           f"{'R1/x2':>6} {'R2/x2':>6} {'RL/x2':>6}"]
  r = result['rouge']
  for a, alpha in enumerate(result['alphas']):
    row = [r[x][m][a] for x in ('x1', 'x2') for m in ('rouge1', 'rouge2',
                                                      'rougeL')]
    lines.append(f'{alpha:6.2f} | ' + ' '.join(f'{v:6.3f}' for v in row[:3])
                 + ' | ' + ' '.join(f'{v:6.3f}' for v in row[3:]))
  for ex in result['examples'][: FLAGS.show]:
    lines += ['', f"x1: {ex['x1']}"]
    lines += [f'  {alpha:.1f}  {d}' for alpha, d in
              zip(result['alphas'], ex['decodes'])]
    lines.append(f"x2: {ex['x2']}")
  return '\n'.join(lines)


def main(argv):
  del argv
  compile_cache.enable()  # Persistent XLA cache, see its docstring.
  checkpoint.quiet_orbax_logging()
  interpolate.check_options(
      num_pairs=FLAGS.pairs, num_points=FLAGS.points, max_len=FLAGS.max_len,
      max_sentence_len=FLAGS.max_sentence_len)
  if FLAGS.show < 0:
    raise errors.ConfigError(f'show={FLAGS.show}: must be an integer >= 0.')
  step = workdir_lib.parse_step(FLAGS.step)
  if workdir_lib.load_config(FLAGS.workdir).get('task', 'lm') == 'dialogue':
    raise errors.ConfigError(
        f'{FLAGS.workdir} is a dialogue run: interpolation is offered for'
        ' language-model runs only.')
  pairs = source = None
  if FLAGS.pairs_file is not None:
    texts = interpolate.read_pairs(FLAGS.pairs_file)
    source = os.path.abspath(FLAGS.pairs_file)
  run = workdir_lib.load_run(FLAGS.workdir, step)
  if source is None:
    seqs = datasets.load(run.config, FLAGS.workdir,
                         splits=(FLAGS.split,)).splits[FLAGS.split]
  else:
    seqs = generate.encode_sentences(run, [x for pair in texts for x in pair])
    pairs = [(2 * i, 2 * i + 1) for i in range(len(texts))]
  result = interpolate.run(
      run.model, run.params, run.vocab, seqs, num_pairs=FLAGS.pairs,
      num_points=FLAGS.points, seed=FLAGS.seed, max_len=FLAGS.max_len,
      max_sentence_len=FLAGS.max_sentence_len, pairs=pairs)
  result.update(workdir=os.path.abspath(FLAGS.workdir),
                split=FLAGS.split if source is None else None,
                pairs_file=source, step=run.step,
                variant=run.config.get('variant'))
  base = os.path.join(FLAGS.workdir, 'interpolation')
  with open(base + '.json', 'w') as f:
    json.dump(result, f, indent=2)
  table = format_text(result)
  with open(base + '.txt', 'w') as f:
    f.write(table + '\n')
  print(table)
  try:
    from twr_jax import plots  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f'no PNG: {e}')
  else:
    print('wrote', plots.plot_interpolation(result, base + '.png'))
  print(f'wrote {base}.json, {base}.txt')



def run():
  """Console entry point (`twr-interpolate`)."""
  cli.run(main)


if __name__ == '__main__':
  run()
