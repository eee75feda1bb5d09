"""Latent interpolation between two sentences, scored by ROUGE (SPEC C).

z(alpha) = (1 - alpha) z1 + alpha z2 for alpha on a uniform grid (11 points
from 0 to 1 by default), each decoded greedily; ROUGE-1/2/L F1 of every decode
against x1 and against x2, averaged over pairs. A smooth latent space gives a
monotone fall w.r.t. x1 and a rise w.r.t. x2 (paper Fig. 2, Table 4).
"""

import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from twr_jax import errors
from twr_jax.core import files
from twr_jax.core import text
from twr_jax.core import workdir as workdir_lib
from twr_jax.lm import data as datasets
from twr_jax.lm import decoding as decode
from twr_jax.lm import generate as lm_generate
from twr_jax.lm import metrics
from twr_jax.lm import model as models
from twr_jax.lm import task as lm_task

Array = jax.Array


@functools.partial(jax.jit, static_argnames=('model',))
def posterior_means(model: models.TWRVAE, params, tokens, lengths) -> Array:
  """Mean of the Gaussian z follows (masked: the true last token / the
  sentence's own steps, SPEC A.10): <f32>[B, Z]."""
  mu, logvar = model.apply({'params': params}, tokens,
                           method=models.TWRVAE.encode)
  return models.pool_posterior(mu, logvar, lengths, model.z_mode)[0]


def interpolate_codes(z1: Array, z2: Array, alphas: Array) -> Array:
  """<f32>[P, A, Z] codes (1 - alpha) z1 + alpha z2 for pairs [P, Z]."""
  a = jnp.asarray(alphas)[None, :, None]
  return (1.0 - a) * z1[:, None] + a * z2[:, None]


def choose_pairs(num_sentences: int, num_pairs: int, seed: int,
                 eligible: np.ndarray | None = None) -> np.ndarray:
  """[P, 2] indices of distinct sentences, uniformly at random (fixed seed).

  Raises:
    errors.DataError: fewer than 2 sentences are eligible.
  """
  pool = np.arange(num_sentences) if eligible is None else np.flatnonzero(
      eligible)
  if len(pool) < 2:
    raise errors.DataError(
        f'{len(pool)} of {num_sentences} sentences can be interpolated; need'
        ' at least 2 distinct ones: use a bigger split, or raise (or unset)'
        ' --max_sentence_len')
  rng = np.random.default_rng(seed)
  return np.stack([rng.choice(pool, 2, replace=False)
                   for _ in range(num_pairs)])


def check_options(*, num_pairs: int, num_points: int, max_len: int,
                  max_sentence_len: int | None, show: int = 0) -> None:
  """Checks the interpolation options before any work.

  Raises:
    errors.ConfigError: naming the option and its allowed range: pairs >= 1,
      points >= 2 (both ends), max_len >= 1, max_sentence_len >= 1 or None,
      show (pairs printed) >= 0.
  """
  for name, value, low in (('pairs', num_pairs, 1), ('points', num_points, 2),
                           ('max_len', max_len, 1),
                           ('max_sentence_len', max_sentence_len, 1),
                           ('show', show, 0)):
    if value is None and name == 'max_sentence_len':
      continue
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise errors.ConfigError(f'{name}={value!r}: must be an integer >='
                               f' {low}.')


def read_pairs(path: str) -> list[tuple[str, str]]:
  """Sentence pairs to interpolate between, one pair per line.

  A line is a JSON list of two strings (`["a cat sat .", "the dog ran ."]`)
  or two sentences separated by a tab. Blank lines are skipped.

  Raises:
    errors.DataError: naming file:line for a line that is neither, or an
      empty sentence; or if the file is missing or has no pair.
  """
  try:
    with open(path, encoding='utf-8') as f:
      lines = f.read().splitlines()
  except (FileNotFoundError, IsADirectoryError):
    raise errors.DataError(f'{path}: not a readable file') from None
  except UnicodeDecodeError as e:
    raise errors.DataError(f'{path}: not UTF-8 ({e.reason} at byte'
                           f' {e.start})') from None
  pairs = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    where = f'{path}:{number}'
    if line.lstrip().startswith('['):
      try:
        pair = json.loads(line)
      except json.JSONDecodeError as e:
        raise errors.DataError(f'{where}: invalid JSON ({e.msg})') from None
    else:
      pair = line.split('\t')
    if (not isinstance(pair, list) or len(pair) != 2
        or not all(isinstance(x, str) for x in pair)):
      raise errors.DataError(f'{where}: expected two sentences, a JSON list'
                             ' of two strings or two tab-separated fields')
    if not all(x.strip() for x in pair):
      raise errors.DataError(f'{where}: empty sentence')
    pairs.append((pair[0], pair[1]))
  if not pairs:
    raise errors.DataError(f'{path}: no sentence pair')
  return pairs


def run(model: models.TWRVAE, params, vocab: text.Vocab,
        sequences: list[np.ndarray], *, num_pairs: int = 100,
        num_points: int = 11, seed: int = 0, max_len: int = 100,
        max_sentence_len: int | None = None,
        pairs: np.ndarray | None = None) -> dict[str, Any]:
  """Interpolates between sentence pairs: random ones of a split, or given.

  Args:
    model, params, vocab: the trained model.
    sequences: the sentences, each <i32>[L] BOS ... EOS.
    num_pairs, num_points, seed: M pairs, the alpha grid, the pair seed.
    max_len: decoding steps.
    max_sentence_len: exclude sentences with more words than this.
    pairs: <int>[M, 2] indices into `sequences` of the pairs to use; then
      num_pairs, seed and max_sentence_len are not used.

  Returns:
    A JSON-ready dict: settings, alphas, mean ROUGE curves w.r.t. x1 and x2,
    and every pair's sentences and decodes.
  """
  lengths = np.array([len(s) for s in sequences])
  if pairs is None:
    eligible = (None if max_sentence_len is None
                else lengths - 2 <= max_sentence_len)
    pairs = choose_pairs(len(sequences), num_pairs, seed, eligible)
    selection = 'uniform distinct pairs, numpy default_rng(seed)'
  else:
    pairs = np.asarray(pairs).reshape(-1, 2)
    num_pairs, selection = len(pairs), 'given pairs'
  ends = sorted(set(pairs.reshape(-1).tolist()))
  width = int(lengths[ends].max())
  tokens = np.zeros((len(ends), width), np.int32)
  for row, i in enumerate(ends):
    tokens[row, : lengths[i]] = sequences[i]
  z = posterior_means(model, params, jnp.asarray(tokens),
                      jnp.asarray(lengths[ends], jnp.int32))
  row_of = {i: r for r, i in enumerate(ends)}
  z1 = z[np.array([row_of[i] for i in pairs[:, 0]])]
  z2 = z[np.array([row_of[i] for i in pairs[:, 1]])]
  alphas = np.linspace(0.0, 1.0, num_points)
  codes = interpolate_codes(z1, z2, alphas).reshape(-1, z.shape[-1])
  out, _ = decode.greedy(model, params, codes, max_len)
  out = np.asarray(out).reshape(num_pairs, num_points, max_len)
  as_text = lambda ids: ' '.join(vocab.decode(ids))
  examples, curves = [], {'x1': [], 'x2': []}
  for p, (i, j) in enumerate(pairs):
    x1, x2 = as_text(sequences[i]), as_text(sequences[j])
    decodes = [as_text(out[p, a]) for a in range(num_points)]
    examples.append(dict(x1=x1, x2=x2, index=[int(i), int(j)],
                         decodes=decodes))
    curves['x1'].append([metrics.rouge_scores(x1, d) for d in decodes])
    curves['x2'].append([metrics.rouge_scores(x2, d) for d in decodes])
  mean = {ref: {m: [float(np.mean([pair[a][m] for pair in scores]))
                    for a in range(num_points)]
                for m in ('rouge1', 'rouge2', 'rougeL')}
          for ref, scores in curves.items()}
  return dict(
      pairs=num_pairs, points=num_points, seed=seed,
      alphas=alphas.tolist(), rouge=mean, examples=examples,
      settings=dict(
          pair_selection=selection,
          max_sentence_len=max_sentence_len,
          z='posterior mean of the Gaussian z follows (masked, SPEC A.10)',
          decoding=f'greedy, at most {max_len} tokens, stop at EOS',
          rouge='F1, whitespace tokens, clipped n-gram counts and LCS'
                ' (= rouge-score 0.1.2, SPEC C)',
      ),
  )


def format_text(result: dict[str, Any], show: int = 3) -> str:
  """The mean ROUGE curves as a table, then `show` example pairs."""
  lines = [f"ROUGE F1 (mean over {result['pairs']} pairs) by alpha",
           f"{'alpha':>6} | {'R1/x1':>6} {'R2/x1':>6} {'RL/x1':>6} | "
           f"{'R1/x2':>6} {'R2/x2':>6} {'RL/x2':>6}"]
  r = result['rouge']
  for a, alpha in enumerate(result['alphas']):
    row = [r[x][m][a] for x in ('x1', 'x2') for m in ('rouge1', 'rouge2',
                                                      'rougeL')]
    lines.append(f'{alpha:6.2f} | ' + ' '.join(f'{v:6.3f}' for v in row[:3])
                 + ' | ' + ' '.join(f'{v:6.3f}' for v in row[3:]))
  for ex in result['examples'][:show]:
    lines += ['', f"x1: {ex['x1']}"]
    lines += [f'  {alpha:.1f}  {d}' for alpha, d in
              zip(result['alphas'], ex['decodes'])]
    lines.append(f"x2: {ex['x2']}")
  return '\n'.join(lines)


def interpolate_command(workdir: str, step: int | str,
                        options: dict[str, Any]) -> str:
  """`launch.interpolate`: checks the options, interpolates pairs of a split
  or of --pairs_file, writes workdir/interpolation.{json,txt,png}; returns
  the text to print."""
  check_options(num_pairs=options['pairs'], num_points=options['points'],
                max_len=options['max_len'],
                max_sentence_len=options['max_sentence_len'],
                show=options['show'])
  pairs = source = None
  if options['pairs_file'] is not None:
    texts = read_pairs(options['pairs_file'])
    source = os.path.abspath(options['pairs_file'])
  trained = workdir_lib.load_run(workdir, lm_task.load_model, step)
  if source is None:
    split = options['split']
    seqs = datasets.load(trained.config, workdir,
                         splits=(split,)).splits[split]
  else:
    seqs = lm_generate.encode_sentences(
        trained, [x for pair in texts for x in pair])
    pairs = [(2 * i, 2 * i + 1) for i in range(len(texts))]
  result = run(
      trained.model, trained.params, trained.vocab, seqs,
      num_pairs=options['pairs'], num_points=options['points'],
      seed=options['seed'], max_len=options['max_len'],
      max_sentence_len=options['max_sentence_len'], pairs=pairs)
  result.update(workdir=os.path.abspath(workdir),
                split=options['split'] if source is None else None,
                pairs_file=source, step=trained.step,
                variant=trained.config.get('variant'))
  base = os.path.join(workdir, 'interpolation')
  files.write_json(base + '.json', result)
  table = format_text(result, options['show'])
  files.write_atomic(base + '.txt', table + '\n')
  out = [table]
  try:
    from twr_jax.core import plots  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    out.append(f'no PNG: {e}')
  else:
    out.append(f"wrote {plots.plot_interpolation(result, base + '.png')}")
  out.append(f'wrote {base}.json, {base}.txt')
  return '\n'.join(out)
