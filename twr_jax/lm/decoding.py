"""Free-running decoding from z: greedy, sampling and beam search.

Every decoder runs a fixed number of steps with `lax.scan` (static shapes, one
compile per batch shape); a sentence that has produced EOS keeps emitting PAD.
Outputs are token ids without BOS, EOS excluded, PAD after the end, and the
number of tokens before EOS.
"""

import functools

import jax
import jax.numpy as jnp

from twr_jax.core import decoding
from twr_jax.core import text
from twr_jax.lm import model as models

Array = jax.Array
def _never_pad_or_bos(logits: Array) -> Array:
  # PAD and BOS are never a next word; EOS ends the sentence.
  return logits.at[..., jnp.array([text.PAD, text.BOS])].set(-jnp.inf)


def _finish(tokens: Array) -> tuple[Array, Array]:
  """Replaces EOS and everything after it by PAD; returns (tokens, lengths)."""
  is_eos = tokens == text.EOS
  ended = jnp.cumsum(is_eos, axis=-1) > 0
  lengths = jnp.sum(~ended, axis=-1)
  return jnp.where(ended, text.PAD, tokens), lengths


@functools.partial(jax.jit, static_argnames=('model', 'max_len'))
def greedy(model: models.TWRVAE, params, z: Array, max_len: int):
  """Greedy (argmax) decoding.

  Args:
    model: the model (static).
    params: its parameters.
    z: <f32>[B, Z] latent codes.
    max_len: decoding steps (tokens incl. EOS).

  Returns:
    (tokens <i32>[B, max_len], lengths <i32>[B]).
  """
  return _sample(model, params, z, max_len, None, 1.0)


def sample(model: models.TWRVAE, params, z: Array, max_len: int,
           key: jax.Array | None, temperature: float = 1.0):
  """Ancestral sampling from softmax(logits / temperature).

  Greedy if key is None or temperature is 0 (its limit). Shapes as in
  `greedy`.

  Raises:
    errors.ConfigError: temperature < 0, or not finite.
  """
  decoding.check_options(temperature=float(temperature))
  if temperature == 0:
    key = None
  return _sample(model, params, z, max_len, key, temperature)


@functools.partial(jax.jit, static_argnames=('model', 'max_len'))
def _sample(model: models.TWRVAE, params, z: Array, max_len: int,
            key: jax.Array | None, temperature: float):
  variables = {'params': params}
  carry = model.apply(variables, z, method=models.TWRVAE.decode_init)
  bos = jnp.full((z.shape[0],), text.BOS, jnp.int32)

  def step(state, t):
    carry, prev = state
    carry, logits = model.apply(variables, carry, prev, z,
                                method=models.TWRVAE.decode_step)
    logits = _never_pad_or_bos(logits)
    if key is None:
      nxt = decoding.argmax(logits)
    else:
      nxt = jax.random.categorical(jax.random.fold_in(key, t),
                                   logits / temperature)
    nxt = nxt.astype(jnp.int32)
    return (carry, nxt), nxt

  _, tokens = jax.lax.scan(step, (carry, bos), jnp.arange(max_len))
  return _finish(tokens.T)


@functools.partial(jax.jit,
                   static_argnames=('model', 'max_len', 'beam_size'))
def beam_search(model: models.TWRVAE, params, z: Array, max_len: int,
                beam_size: int = 5):
  """Beam search for the most probable sentence (sum of log-probabilities).

  A finished beam (it emitted EOS) keeps its score and emits PAD; the result is
  the highest-scoring beam after `max_len` steps. Shapes as in `greedy`.
  """
  b, w = z.shape[0], beam_size
  variables = {'params': params}
  zw = jnp.repeat(z, w, axis=0)  # [B * W, Z]
  carry = model.apply(variables, zw, method=models.TWRVAE.decode_init)
  # Only beam 0 is live at the start, so the first step does not pick W
  # copies of the same word.
  scores = jnp.tile(jnp.array([0.0] + [-jnp.inf] * (w - 1)), (b, 1))
  state = (carry, jnp.full((b * w,), text.BOS, jnp.int32), scores,
           jnp.zeros((b, w), bool), jnp.zeros((b, w, max_len), jnp.int32))

  def step(state, t):
    carry, prev, scores, done, tokens = state
    carry, logits = model.apply(variables, carry, prev, zw,
                                method=models.TWRVAE.decode_step)
    logp = jax.nn.log_softmax(_never_pad_or_bos(logits)).reshape(b, w, -1)
    vocab = logp.shape[-1]
    pad_only = jnp.full((vocab,), -jnp.inf).at[text.PAD].set(0.0)
    logp = jnp.where(done[..., None], pad_only, logp)
    cand = (scores[..., None] + logp).reshape(b, w * vocab)
    scores, flat = jax.lax.top_k(cand, w)
    origin, word = flat // vocab, (flat % vocab).astype(jnp.int32)
    take = lambda x: jnp.take_along_axis(x, origin, axis=1)
    done = take(done) | (word == text.EOS)
    tokens = jnp.take_along_axis(tokens, origin[..., None], axis=1)
    tokens = tokens.at[:, :, t].set(word)
    rows = (origin + jnp.arange(b)[:, None] * w).reshape(-1)
    carry = jax.tree_util.tree_map(lambda x: x[rows], carry)
    return (carry, word.reshape(-1), scores, done, tokens), None

  (_, _, scores, _, tokens), _ = jax.lax.scan(step, state, jnp.arange(max_len))
  best = jnp.argmax(scores, axis=1)
  tokens = jnp.take_along_axis(tokens, best[:, None, None], axis=1)[:, 0]
  # PAD emitted by a finished beam reads as "ended" too.
  tokens = jnp.where(tokens == text.PAD, text.EOS, tokens)
  return _finish(tokens)
