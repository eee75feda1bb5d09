"""The language model's training objective (SPEC A.4, and the baselines').

`lm_loss` is what the train step differentiates: the per-sentence
reconstruction and timestep-wise KL terms (`core.losses`), combined with beta
and the batch reduction, with the baselines' variants (free bits, BN-VAE).
"""

import jax
import jax.numpy as jnp
import ml_collections

from twr_jax.core import losses
from twr_jax.lm import model as models

Array = jax.Array
PRNGKey = jax.Array


def lm_loss(model: models.TWRVAE, config: ml_collections.ConfigDict, params,
            batch: dict[str, Array], keys: PRNGKey, beta: Array, count: Array,
            axis_name: str | None = None):
  """The language model's training objective on one batch (or device share).

  sum_b w_b (rec_b + beta K_b), or that divided by `count` ('mean'), where K_b
  is the timestep-wise KL (SPEC A.4) or, with `model.free_bits` lambda > 0,
  Kingma et al.'s free-bits term (`losses.free_bits_kl` on the per-dimension
  timestep-wise KL, batch-averaged over all devices). With `model.bn_gamma`
  (BN-VAE), mu is batch-normalised with statistics over the KL window's
  positions of the real sentences of the whole batch (`models.MuBatchNorm`).

  Args:
    model, config: the model and run config.
    params: the parameters to differentiate.
    batch: 'tokens' <i32>[B, T], 'lengths' <i32>[B], 'weights' <f32>[B].
    keys: typed PRNG keys [B], one per sentence: its dropout masks and
      epsilon (`models.example_noise`).
    beta: the KL weight.
    count: the global number of real sentences ('mean' reduction).
    axis_name: the collective axis under pmap.

  Returns:
    (loss, aux): aux holds <f32>[B] 'rec', 'kl' (timestep-wise KL), 'kl_obj'
    (the objective's KL term), 'kl_z' (KL of the Gaussian z is drawn from),
    and with BN-VAE 'bn_stats' (the running averages after this batch).
  """
  tokens, lengths, w = batch['tokens'], batch['lengths'], batch['weights']
  window = config.model.kl_window
  # The original's arithmetic uses the batch's padded length T_b instead of
  # each sentence's own (SPEC A.4; off by default).
  padded = lambda field: config.model.get(field, 'sentence') == 'padded'
  kl_lengths = batch['enc_lengths'] if padded('kl_length') else lengths
  z_lengths = batch['enc_lengths'] if padded('z_length') else lengths
  bn = {}
  if config.model.get('bn_gamma') is not None:
    window_mask = jax.vmap(losses.kl_window_mask, in_axes=(0, None, None))(
        kl_lengths, tokens.shape[1], window)
    bn = dict(bn_mask=window_mask & (w > 0)[:, None], axis_name=axis_name)
  noise = models.example_noise(keys, tokens.shape[1], model.emb_dim,
                               model.latent, model.dropout, train=True)
  out = model.apply({'params': params}, tokens, lengths, noise,
                    z_lengths=z_lengths, **bn)
  rec = losses.token_nll(out['logits'], tokens[:, 1:], lengths)
  kl = losses.masked_kl(out['mu'], out['logvar'], kl_lengths, window)
  kl_obj = kl
  free_bits = config.model.get('free_bits', 0.0)
  if free_bits > 0:
    kl_dims = losses.masked_kl_dims(out['mu'], out['logvar'], kl_lengths,
                                    window)
    kl_obj = losses.free_bits_kl(kl_dims, w, free_bits, axis_name)
  loss = losses.objective(rec, kl_obj, w, beta, config.train.loss_reduction,
                          count)
  aux = dict(rec=rec, kl=kl, kl_obj=kl_obj,
             kl_z=losses.gaussian_kl(out['z_mu'], out['z_logvar']))
  if 'bn_stats' in out:
    aux['bn_stats'] = out['bn_stats']
  return loss, aux


def metric_sums(aux: dict[str, Array], batch: dict[str, Array],
                beta: Array) -> dict[str, Array]:
  """The train step's metric sums over sentences (divide on the host):
  'loss' (the objective optimised, at this beta), 'rec', 'kl_twr' (the
  timestep-wise KL, without free bits), 'kl' (KL of the posterior z is drawn
  from), 'sentences', 'tokens' (scored targets, EOS included)."""
  w = batch['weights']
  rec, kl = aux['rec'], aux['kl']
  return dict(
      loss=jnp.sum(w * (rec + beta * aux['kl_obj'])), rec=jnp.sum(w * rec),
      kl_twr=jnp.sum(w * kl), kl=jnp.sum(w * aux['kl_z']),
      sentences=jnp.sum(w), tokens=jnp.sum(w * (batch['lengths'] - 1)),
  )
