"""The dialogue model's training objective (SPEC B.4) and its metric sums.

`dialogue_loss` is what the train step differentiates: the response's
cross-entropy plus beta times the timestep-wise KL that the model computes
over the context states (`DialogTWRVAE.kl_and_z`, SPEC B.4: it needs the
prior network at every turn, so it lives with the model).
"""

import jax
import jax.numpy as jnp

from twr_jax.core import losses
from twr_jax.dialogue import model as dialogue_model

Array = jax.Array
PRNGKey = jax.Array


def dialogue_loss(
    model: dialogue_model.DialogTWRVAE, params, batch: dict[str, Array],
    keys: PRNGKey, beta: Array | float, train: bool, reduction: str = 'sum', *,
    max_turns: Array | None = None, count: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
  """The training objective, recon + beta * timestep-wise KL (SPEC B.4).

  Args:
    model: the model.
    params: its parameters.
    batch: a `dialogue_data` batch, padded or packed (`pack_batch`: the same
      values up to float rounding, much less work).
    keys: typed PRNG keys [B], one per example: its dropout masks and
      epsilon (`dialogue_model.batch_noise`).
    beta: the KL weight (1 for Switchboard; DailyDialog's linear annealing
      from 0.1 over 9 epochs, configs/dailydialog.py).
    train: enables dropout.
    reduction: 'sum' over the batch (the original) or 'mean' per example.
    max_turns: see `DialogTWRVAE.__call__`.
    count: the divisor of 'mean' (see `losses.objective`).

  Returns:
    (loss, aux) with per-example <f32>[B] aux values: 'rec' the summed
    cross-entropy of the response's targets (`</s>` in, pads out), 'kl' the
    objective's KL term, 'kl_z' KL(q(z | x, c) || p(z | c)) at the final
    context state, 'tokens' the number of scored targets.
  """
  noise = dialogue_model.batch_noise(model, batch, keys, train)
  if 'ctx_tokens' in batch:  # Packed (`dialogue_data.pack_batch`).
    out = dialogue_model.packed_forward(model, params, batch, noise,
                                        max_turns=max_turns)
    rec = out['rec']
  else:
    out = model.apply(
        {'params': params}, batch['context'], batch['context_lens'],
        batch['floors'], batch['num_turns'], batch['response'],
        batch['response_len'], noise, max_turns=max_turns,
    )
    rec = losses.token_nll(out['logits'], batch['response'][:, 1:],
                           batch['response_len'])
  response_len = batch['response_len']
  loss = losses.objective(
      rec, out['kl'], batch['weights'], beta, reduction, count
  )
  kl_z = losses.gaussian_kl_two(
      out['mu'], out['logvar'], out['prior_mu'], out['prior_logvar']
  )
  return loss, dict(rec=rec, kl=out['kl'], kl_z=kl_z, tokens=response_len - 1)


def max_turns(batch: dict[str, Array], axis_name: str | None) -> Array:
  """N_b of the 'padded' KL: the longest real context of the whole batch."""
  n = jnp.max(jnp.where(batch['weights'] > 0, batch['num_turns'], 1))
  return n if axis_name is None else jax.lax.pmax(n, axis_name)


def metric_sums(aux: dict[str, Array], w: Array, beta) -> dict[str, Array]:
  """Metric sums over examples (see `dialogue.task.make_train_step`)."""
  return dict(
      loss=jnp.sum(w * (aux['rec'] + beta * aux['kl'])),
      rec=jnp.sum(w * aux['rec']), kl_twr=jnp.sum(w * aux['kl']),
      kl=jnp.sum(w * aux['kl_z']), sentences=jnp.sum(w),
      tokens=jnp.sum(w * aux['tokens']),
  )
