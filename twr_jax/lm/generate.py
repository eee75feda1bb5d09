"""Sentences from a trained language model: from the prior, reconstructions.

`generate` decodes sentences from the prior or reconstructs the first
sentences of a split or of a file of your own (`read_sentences`).
`launch/generate.py` (through `twr_jax.tasks`) and the notebook call these.
"""


import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from twr_jax import errors
from twr_jax.core import decoding
from twr_jax.core import files
from twr_jax.core import text
from twr_jax.core import workdir as workdir_lib
from twr_jax.lm import data as datasets
from twr_jax.lm import decoding as decode
from twr_jax.lm import input_pipeline
from twr_jax.lm import model as models
from twr_jax.lm import task as lm_task

MODES = ('prior', 'reconstruct')


def read_sentences(path: str) -> list[str]:
  """Sentences to reconstruct, one per line ('-' reads standard input).

  Raises:
    errors.DataError: the file is missing, not UTF-8, empty, or has a blank
      line (naming file:line).
  """
  if path != text.STDIN:
    return text.read_lines(path)
  name, lines = text.read_input(path)
  if not lines:
    raise errors.DataError(f'{name}: no sentence')
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      raise errors.DataError(f'{name}:{number}: line is blank (one sentence'
                             ' per line)')
  return lines


def encode_sentences(run: workdir_lib.Run,
                     sentences: list[str]) -> list[np.ndarray]:
  """Tokenises sentences like the run's data (SPEC A.1): BOS ids EOS each.

  Words outside the vocabulary become `<unk>`.
  """
  return input_pipeline.encode_lines(
      sentences, run.vocab, keep_empty=run.config.data.keep_empty_tokens)


def generate(run: workdir_lib.Run, workdir: str, mode: str = 'prior',
             decoder: str = 'greedy', num: int = 10, max_len: int = 40,
             temperature: float = 1.0, beam_size: int = 5,
             split: str = 'test', sample_posterior: bool = False,
             seed: int = 0,
             sentences: list[str] | None = None) -> list[str]:
  """Decodes `num` sentences of a language-model run.

  Args:
    run: the restored run (`workdir.load_run`).
    workdir: its workdir (for the data of 'reconstruct').
    mode: 'prior' (z ~ N(0, I)) or 'reconstruct' (z from the posterior of the
      first `num` sentences of `sentences`, or of `split` without them: its
      mean, or a sample with `sample_posterior`).
    decoder: 'greedy', 'sample' (softmax at `temperature`) or 'beam'.
    num: sentences, >= 0 (0: an empty list); at most the number of
      `sentences` or of the split's sentences.
    max_len: decoding steps, >= 1; temperature >= 0 (0 = greedy);
      beam_size >= 1 (1 = greedy); split, seed: as named.
    sentences: raw sentences to reconstruct (see `read_sentences`).

  Returns:
    One line per sentence; for 'reconstruct', 'input<TAB>output'.

  Raises:
    errors.ConfigError: an option outside its range (`decoding.check_options`),
      an unknown mode, `sentences` with mode 'prior', or a dialogue run.
  """
  decoding.check_options(decoder=decoder, num=num, max_len=max_len,
                       temperature=temperature, beam_size=beam_size)
  if mode not in MODES:
    raise errors.ConfigError(f'mode={mode!r}: must be one of'
                             f' {", ".join(MODES)}.')
  if sentences is not None and mode != 'reconstruct':
    raise errors.ConfigError('sentences_file: only with mode=reconstruct.')
  if run.config.get('task', 'lm') != 'lm':
    raise errors.ConfigError(
        'generate: not a language-model run; a dialogue run answers contexts'
        ' (contexts_file, `dialogue.generate.respond`).')
  if num == 0:
    return []
  key_z, key_dec = jax.random.split(jax.random.key(seed))
  inputs = None
  if mode == 'prior':
    z = jax.random.normal(key_z, (num, run.config.model.latent))
  else:
    if sentences is not None:
      seqs = encode_sentences(run, sentences)
    else:
      seqs = datasets.load(run.config, workdir, splits=(split,)).splits[split]
    seqs = seqs[:num]
    tokens = np.zeros((len(seqs), max(len(s) for s in seqs)), np.int32)
    for i, s in enumerate(seqs):
      tokens[i, : len(s)] = s
    lengths = jnp.asarray([len(s) for s in seqs], jnp.int32)
    mu, logvar = run.model.apply({'params': run.params}, jnp.asarray(tokens),
                                 method=models.TWRVAE.encode)
    z, z_logvar = models.pool_posterior(mu, logvar, lengths, run.model.z_mode)
    if sample_posterior:
      z = z + jnp.exp(0.5 * z_logvar) * jax.random.normal(key_z, z.shape)
    inputs = [' '.join(run.vocab.decode(s)) for s in seqs]
  if decoder == 'greedy':
    out, _ = decode.greedy(run.model, run.params, z, max_len)
  elif decoder == 'sample':
    out, _ = decode.sample(run.model, run.params, z, max_len, key_dec,
                           temperature)
  else:
    out, _ = decode.beam_search(run.model, run.params, z, max_len, beam_size)
  lines = [' '.join(run.vocab.decode(ids)) for ids in np.asarray(out)]
  if inputs is not None:
    lines = [f'{x}\t{y}' for x, y in zip(inputs, lines)]
  return lines


def generate_command(workdir: str, step: int | str,
                     options: dict[str, Any]) -> str:
  """`launch.generate` for an LM run: checks the options, decodes, writes
  workdir/samples_<mode>_<decode>.txt; returns the text to print ('' for
  --num=0)."""
  if options['contexts_file'] is not None:
    raise errors.ConfigError(
        f'{workdir} is a language-model run: --contexts_file is for'
        ' dialogue runs (use --mode and --sentences_file).')
  decoding.check_options(
      decoder=options['decode'], num=options['num'],
      max_len=options['max_len'], temperature=options['temperature'],
      beam_size=options['beam_size'])
  if options['num'] == 0:
    return ''  # Nothing to decode: print nothing.
  sentences = None
  if options['sentences_file'] is not None:
    sentences = read_sentences(options['sentences_file'])
  run = workdir_lib.load_run(workdir, lm_task.load_model, step)
  lines = generate(
      run, workdir, options['mode'], options['decode'], options['num'],
      options['max_len'], options['temperature'], options['beam_size'],
      options['split'], options['sample_posterior'], options['seed'],
      sentences=sentences)
  path = os.path.join(workdir,
                      f"samples_{options['mode']}_{options['decode']}.txt")
  files.write_lines(path, lines)
  return '\n'.join(lines)
