"""Sentences from a trained run: from the prior, or reconstructions.

`launch/generate.py` and the notebook call `generate`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from twr_jax import datasets
from twr_jax import decode
from twr_jax import models
from twr_jax import workdir as workdir_lib

MODES = ('prior', 'reconstruct')


def generate(run: workdir_lib.Run, workdir: str, mode: str = 'prior',
             decoder: str = 'greedy', num: int = 10, max_len: int = 40,
             temperature: float = 1.0, beam_size: int = 5,
             split: str = 'test', sample_posterior: bool = False,
             seed: int = 0) -> list[str]:
  """Decodes `num` sentences.

  Args:
    run: the restored run (`workdir.load_run`).
    workdir: its workdir (for the vocabulary and data of 'reconstruct').
    mode: 'prior' (z ~ N(0, I)) or 'reconstruct' (z from the posterior of the
      first `num` sentences of `split`: its mean, or a sample with
      `sample_posterior`).
    decoder: 'greedy', 'sample' (softmax at `temperature`) or 'beam'.
    num, max_len, temperature, beam_size, split, seed: as named.

  Returns:
    One line per sentence; for 'reconstruct', 'input<TAB>output'.
  """
  if mode not in MODES:
    raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
  if decoder not in decode.DECODERS:
    raise ValueError(f'decoder must be one of {decode.DECODERS}, got'
                     f' {decoder!r}')
  key_z, key_dec = jax.random.split(jax.random.key(seed))
  inputs = None
  if mode == 'prior':
    z = jax.random.normal(key_z, (num, run.config.model.latent))
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
