"""The TWR-VAE dialogue model (SPEC B.3-B.6) in Flax.

A hierarchical conditional VAE on `dialogue_data` batches:

  utterance encoder  bidirectional GRU over each turn's embeddings,
                     u = [h_fwd(last token); h_bwd(first token)];
  context encoder    GRU over [u_i; onehot(floor_i)], c = state at the last
                     turn, H = the per-turn states (exactly 0 past the end);
  recognition net    q(z | x, c): Linear heads on [u_x; c];
  prior net          p(z | c): tanh(Linear(c)), then Linear heads;
  decoder            GRU from the hidden state [z; c] fed word embeddings.

The timestep-wise regulariser is over context-encoder steps (SPEC B.4): the
recognition and prior nets are applied to every H_i and KL(q_i || p_i) is
averaged over the steps; z itself comes from q at the final state c only.

Parametrisation and initialisation follow the PyTorch original (so weights
map one to one): GRUs have `ih` and `hh` projections with gates in the order
r, z, n and both biases, their stacked weight matrices orthogonal and biases
U(+-1/sqrt(H)); recognition and prior Linears U(+-0.02) with zero bias; the
output Linear U(+-0.1) with zero bias; the shared embedding N(0, 1) with a
zero pad row.

Like `lm.model.TWRVAE`, every random draw of an example (its dropout masks and
epsilon) comes from that example's own key, so results do not depend on how a
batch is split across devices or which other rows it holds. The caller draws
it (`batch_noise`: `example_noise` or `packed_noise`) and passes the dict as
the methods' one `noise` argument; None, or an entry that is missing or None,
means no dropout (and, for 'eps', z at the mean of q).

References:
  Li et al., "Improving Variational Autoencoder for Text Modelling with
  Timestep-Wise Regularisation", COLING 2020, Section 3.2.
  ruizheliUOA/TWR-VAE `dialogue_dd/models_dailydial.py`, `train_dailydial.py`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from twr_jax.core import layers
from twr_jax.core import losses
from twr_jax.dialogue import data as dialogue_data

Array = jax.Array
PRNGKey = jax.Array
Noise = layers.Noise
_entry = layers.noise_entry

# 'valid': each example's KL is the mean over its own context turns.
# 'padded': the original's sum over the batch's longest context N_b, padded
# turns (H_i = 0) included, divided by N_b (SPEC B.4).
KL_MASKS = ('valid', 'padded')
NUM_FLOORS = 2

# torch.nn.init.orthogonal_ on the stacked [3H, in] matrix W. For a Flax
# kernel K = W^T of shape [in, 3H], JAX's orthogonal initialiser draws the
# same distribution transposed: orthonormal rows of K when in <= 3H (i.e.
# orthonormal columns of W), orthonormal columns otherwise.
_GRU_KERNEL_INIT = jax.nn.initializers.orthogonal()


def _dense(features: int, bound: float, name: str) -> nn.Dense:
  """A Linear with W ~ U(+-bound) and zero bias, as the original's init."""
  return nn.Dense(
      features, kernel_init=layers.uniform_init(bound),
      bias_init=nn.initializers.zeros, name=name,
  )


def _gru(hidden: int, name: str, dtype) -> layers.RNN:
  return layers.RNN('gru', hidden, kernel_init=_GRU_KERNEL_INIT, dtype=dtype,
                    name=name)


def _take_step(x: Array, index: Array) -> Array:
  """x[b, index[b]] for x <f32>[B, T, D] and index <i32>[B]: <f32>[B, D]."""
  return jnp.take_along_axis(x, index[:, None, None], axis=1)[:, 0]


def reverse_valid(x: Array, lengths: Array) -> Array:
  """Reverses each sequence's valid prefix; padding steps stay in place.

  Args:
    x: <f32>[B, T, D].
    lengths: <i32>[B] valid steps, 1..T.

  Returns:
    <f32>[B, T, D] with out[b, t] = x[b, lengths[b] - 1 - t] for t <
    lengths[b], else x[b, t].
  """
  t = jnp.arange(x.shape[1])
  n = lengths[:, None]
  index = jnp.where(t < n, n - 1 - t, t)
  return jnp.take_along_axis(x, index[..., None], axis=1)


# Which dropout mask a position's key draws (`dropout_keep`).
_CTX_EMB, _CTX_IN, _X_EMB, _DEC_EMB = range(4)


def dropout_keep(keys: PRNGKey, kind: int, slot: Array, offset: Array,
                 width: int, rate: float) -> Array:
  """Inverted-dropout multipliers, one vector per position of an example.

  The mask at (kind, slot, offset) of example b depends on nothing else:
  its key is `fold_in(fold_in(fold_in(keys[b], kind), slot), offset)`. So
  the padded [B, N, T] layout and the packed lanes (`packed_loss`) draw the
  same mask for the same token, and masks are drawn for real tokens only.

  Args:
    keys: typed PRNG keys [...], each position's example's dropout key.
    kind: which mask (`_CTX_EMB`, `_CTX_IN`, `_X_EMB`, `_DEC_EMB`).
    slot, offset: <i32>[...] the context slot (0 for the response) and the
      token's position in its utterance (0 for `_CTX_IN`).
    width: the masked vector's size.
    rate: the dropout rate p, 0 <= p < 1.

  Returns:
    <f32>[..., width]: 0 or 1 / (1 - p), each 1 / (1 - p) with probability
    1 - p.
  """
  shape = slot.shape

  def one(key, s, o):
    key = jax.random.fold_in(jax.random.fold_in(
        jax.random.fold_in(key, kind), s), o)
    return jax.random.bernoulli(key, 1.0 - rate, (width,))

  keep = jax.vmap(one)(keys.reshape(-1), slot.reshape(-1), offset.reshape(-1))
  return keep.reshape(*shape, width) / (1.0 - rate)


def example_noise(
    keys: PRNGKey, *, num_turns: int, utt_len: int, res_len: int,
    emb_dim: int, ctx_in: int, latent: int, emb_dropout: float,
    ctx_dropout: float, train: bool,
) -> dict[str, Array | None]:
  """Draws each example's noise from its own key, in the padded layout.

  Args:
    keys: typed PRNG keys [B], one per example.
    num_turns: context slots W - 1.
    utt_len: padded context-turn length U - 1.
    res_len: padded response length R.
    emb_dim: E.
    ctx_in: width of the context encoder's input, 2 H_u + 2.
    latent: Z.
    emb_dropout: dropout rate on word embeddings (encoder and decoder).
    ctx_dropout: dropout rate on the context encoder's input.
    train: dropout masks are drawn only in training.

  Returns:
    'eps' <f32>[B, Z] for z; inverted-dropout multipliers (0 or 1/(1-p)), or
    None when no dropout applies: 'ctx_emb_keep' <f32>[B, W-1, U-1, E] (the
    context turns' embeddings), 'ctx_keep' <f32>[B, W-1, 2 H_u + 2] (the
    context encoder's input), 'x_emb_keep' and 'dec_keep' <f32>[B, R-1, E]
    (the response's embeddings in the utterance encoder and the decoder; the
    original draws separate masks for the two). Each mask is
    `dropout_keep`'s at its position, the packed layout's too.
  """
  keys_eps, keys_keep = jax.vmap(jax.random.split, out_axes=1)(keys)
  noise = {'eps': jax.vmap(
      lambda k: jax.random.normal(k, (latent,)))(keys_eps)}
  b, n, t = keys.shape[0], num_turns, res_len - 1

  def grid(*shape):  # Each example's key and index arrays over `shape`.
    index = np.indices(shape)
    key = jnp.broadcast_to(
        keys_keep.reshape((b,) + (1,) * len(shape)), (b,) + shape)
    return (key,) + tuple(jnp.broadcast_to(i, (b,) + shape) for i in index)

  if train and emb_dropout > 0.0:
    key, slot, offset = grid(n, utt_len)
    noise['ctx_emb_keep'] = dropout_keep(key, _CTX_EMB, slot, offset,
                                         emb_dim, emb_dropout)
    key, offset = grid(t)
    zero = jnp.zeros_like(offset)
    noise['x_emb_keep'] = dropout_keep(key, _X_EMB, zero, offset, emb_dim,
                                       emb_dropout)
    noise['dec_keep'] = dropout_keep(key, _DEC_EMB, zero, offset, emb_dim,
                                     emb_dropout)
  if train and ctx_dropout > 0.0:
    key, slot = grid(n)
    noise['ctx_keep'] = dropout_keep(key, _CTX_IN, slot,
                                     jnp.zeros_like(slot), ctx_in,
                                     ctx_dropout)
  for name in ('ctx_emb_keep', 'ctx_keep', 'x_emb_keep', 'dec_keep'):
    noise.setdefault(name, None)
  return noise


class UtteranceEncoder(nn.Module):
  """Bidirectional GRU over embedded utterances of given lengths.

  Matches PyTorch's packed bidirectional GRU: the forward direction's state
  at the last real token, and the backward direction started at the last
  real token and read at the first; tokens past the length never count.

  Attributes:
    hidden: H_u per direction.
    dtype: computation dtype of the GRUs' matmuls (see `layers.RNN`).
  """

  hidden: int
  dtype: Any = jnp.float32

  def setup(self):
    self.fwd = _gru(self.hidden, 'fwd', self.dtype)
    self.bwd = _gru(self.hidden, 'bwd', self.dtype)

  def __call__(self, x: Array, lengths: Array) -> Array:
    """Encodes utterances.

    Args:
      x: <f32>[N, T, E] embedded tokens.
      lengths: <i32>[N] tokens per utterance, 1..T.

    Returns:
      <f32>[N, 2 H_u], [h_fwd_last; h_bwd_first].
    """
    last = lengths - 1
    h_fwd = _take_step(self.fwd(x), last)
    # Reversing the valid prefix makes the backward pass an ordinary forward
    # pass whose step lengths - 1 has read the utterance back to its start.
    h_bwd = _take_step(self.bwd(reverse_valid(x, lengths)), last)
    return jnp.concatenate([h_fwd, h_bwd], axis=-1)


class DialogTWRVAE(nn.Module):
  """The TWR-VAE dialogue model (SPEC B.3-B.4).

  Attributes:
    vocab_size: V.
    emb_dim: E, the shared word embedding size (200).
    utt_hidden: H_u, the utterance GRU size per direction (300).
    ctx_hidden: H_c, the context GRU size (300).
    latent: Z (200).
    emb_dropout: dropout rate on word embeddings, encoder and decoder (0.5).
    ctx_dropout: dropout rate on the context encoder's input (0.25).
    kl_mask: 'valid' (standard) or 'padded' (the original's), see `KL_MASKS`.
    dtype: computation dtype (`config.train.compute_dtype`): float32, or
      bfloat16 for the embedding's output, the GRU matmuls and the output
      layer; parameters, GRU states, the recognition and prior nets (the KL)
      and z stay float32 (see `lm.model.TWRVAE`).

  The decoder's hidden size is `dec_hidden` = H_c + Z (500), as its initial
  state is [z; c].
  """

  vocab_size: int
  emb_dim: int = 200
  utt_hidden: int = 300
  ctx_hidden: int = 300
  latent: int = 200
  emb_dropout: float = 0.5
  ctx_dropout: float = 0.25
  kl_mask: str = 'valid'
  dtype: Any = jnp.float32

  @property
  def dec_hidden(self) -> int:
    """H_d = H_c + Z, the decoder GRU size (its initial state is [z; c])."""
    return self.ctx_hidden + self.latent

  def setup(self):
    if self.kl_mask not in KL_MASKS:
      raise ValueError(
          f'kl_mask must be one of {KL_MASKS}, got {self.kl_mask!r}'
      )
    self.embed = nn.Embed(
        self.vocab_size, self.emb_dim, embedding_init=layers.embedding_init,
        name='embed',
    )
    self.utt_encoder = UtteranceEncoder(self.utt_hidden, self.dtype,
                                        name='utt_encoder')
    self.ctx_rnn = _gru(self.ctx_hidden, 'ctx_rnn', self.dtype)
    self.recog_mu = _dense(self.latent, 0.02, 'recog_mu')
    self.recog_logvar = _dense(self.latent, 0.02, 'recog_logvar')
    self.prior_fc = _dense(self.latent, 0.02, 'prior_fc')
    self.prior_mu = _dense(self.latent, 0.02, 'prior_mu')
    self.prior_logvar = _dense(self.latent, 0.02, 'prior_logvar')
    self.dec_rnn = _gru(self.dec_hidden, 'dec_rnn', self.dtype)
    # Affine: nn.Dense's parameters and values, faster on XLA CPU.
    self.out = layers.Affine(
        self.vocab_size, kernel_init=layers.uniform_init(0.1),
        bias_init=nn.initializers.zeros, dtype=self.dtype, name='out',
    )

  def _embed(self, tokens: Array, keep: Array | None) -> Array:
    # Zeroing pad positions keeps the pad row's gradient exactly zero, like
    # PyTorch's padding_idx (see lm.model.TWRVAE._embed).
    # Looked up in float32, then cast (see lm.model.TWRVAE._embed).
    e = (self.embed(tokens).astype(self.dtype)
         * (tokens != dialogue_data.PAD)[..., None])
    return e if keep is None else e * keep.astype(e.dtype)

  def encode_utterances(self, tokens: Array, lengths: Array) -> Array:
    """Utterance encodings u (eval mode: no dropout).

    Args:
      tokens: <i32>[..., T] utterances, PAD-padded.
      lengths: <i32>[...] tokens per utterance, 1..T.

    Returns:
      <f32>[..., 2 H_u].
    """
    return self._encode_utterances(tokens, lengths, None)

  def _encode_utterances(self, tokens: Array, lengths: Array,
                         keep: Array | None) -> Array:
    """`encode_utterances` with optional <f32>[..., T, E] embedding dropout
    multipliers (a context's or the response's entry of the noise)."""
    lead, t = tokens.shape[:-1], tokens.shape[-1]
    e = self._embed(tokens, keep).reshape(-1, t, self.emb_dim)
    u = self.utt_encoder(e, lengths.reshape(-1))
    return u.reshape(*lead, 2 * self.utt_hidden)

  def encode_context(
      self, context: Array, context_lens: Array, floors: Array,
      num_turns: Array, noise: Noise = None,
  ) -> tuple[Array, Array]:
    """Encodes the context turns.

    Args:
      context: <i32>[B, N, U-1] context turns (see `dialogue_data`).
      context_lens: <i32>[B, N] tokens per turn (1 for empty slots).
      floors: <i32>[B, N] 1 where the speaker is the response's, else 0.
      num_turns: <i32>[B] context turns, 1..N.
      noise: `example_noise`'s dict; its dropout multipliers 'ctx_emb_keep'
        <f32>[B, N, U-1, E] (the turns' embeddings) and 'ctx_keep'
        <f32>[B, N, 2 H_u + 2] (the context encoder's input) are applied
        (None: no dropout).

    Returns:
      (c <f32>[B, H_c], the state after the last turn; H <f32>[B, N, H_c],
      the per-turn states, exactly 0 at turns >= num_turns as after
      PyTorch's pad_packed_sequence).
    """
    u = self._encode_utterances(context, context_lens,
                                _entry(noise, 'ctx_emb_keep'))
    return self.context_states(u, floors, num_turns, noise)

  def context_states(
      self, u: Array, floors: Array, num_turns: Array, noise: Noise = None,
  ) -> tuple[Array, Array]:
    """The context GRU over utterance encodings (the rest of `encode_context`).

    Args:
      u: <f32>[B, N, 2 H_u] utterance encodings; values at turns >=
        num_turns are never read.
      floors, num_turns: as in `encode_context`.
      noise: its 'ctx_keep' is applied, as in `encode_context`.

    Returns:
      As `encode_context`.
    """
    x = jnp.concatenate([u, jax.nn.one_hot(floors, NUM_FLOORS)], axis=-1)
    ctx_keep = _entry(noise, 'ctx_keep')
    if ctx_keep is not None:
      x = x * ctx_keep
    # A unidirectional GRU's valid states never depend on later (padding)
    # turns, so masking afterwards equals the packed computation.
    valid = jnp.arange(x.shape[1]) < num_turns[:, None]
    h = jnp.where(valid[..., None], self.ctx_rnn(x), 0.0)
    return _take_step(h, num_turns - 1), h

  def recognition(self, u_x: Array, h: Array) -> tuple[Array, Array]:
    """q(z | x, c) = N(mu, exp(logvar)) from [u_x; h].

    Args:
      u_x: <f32>[..., 2 H_u] the response's encoding.
      h: <f32>[..., H_c] a context state, same leading shape.

    Returns:
      (mu, logvar), each <f32>[..., Z].
    """
    x = jnp.concatenate([u_x, h], axis=-1)
    return self.recog_mu(x), self.recog_logvar(x)

  def prior(self, h: Array) -> tuple[Array, Array]:
    """p(z | c) = N(mu, exp(logvar)) from a context state h <f32>[..., H_c].

    Returns:
      (mu, logvar), each <f32>[..., Z].
    """
    h = jnp.tanh(self.prior_fc(h))
    return self.prior_mu(h), self.prior_logvar(h)

  def decode(self, inputs: Array, z: Array, c: Array,
             noise: Noise = None) -> Array:
    """Teacher-forced decoder logits.

    Args:
      inputs: <i32>[B, T] decoder inputs (`<s>` first).
      z: <f32>[B, Z].
      c: <f32>[B, H_c].
      noise: `example_noise`'s dict; its 'dec_keep' <f32>[B, T, E]
        embedding dropout multipliers are applied (None: no dropout).

    Returns:
      <f32>[B, T, V] logits of the next tokens.
    """
    h0 = jnp.concatenate([z, c], axis=-1)
    e = self._embed(inputs, _entry(noise, 'dec_keep'))
    return self.out(self.dec_rnn(e, h0=h0))

  def decode_init(self, z: Array, c: Array) -> Array:
    """The decoder's initial carry, the hidden state [z; c] <f32>[B, H_d]."""
    return self.dec_rnn.initial_carry(jnp.concatenate([z, c], axis=-1))

  def decode_step(self, carry: Array, token: Array) -> tuple[Array, Array]:
    """One free-running decoder step (eval mode: no dropout).

    Args:
      carry: <f32>[B, H_d] from `decode_init` or the previous step.
      token: <i32>[B] the previous token (`<s>` first).

    Returns:
      (carry, logits <f32>[B, V] of the next token).
    """
    carry, h = self.dec_rnn.run(self._embed(token[:, None], None), carry)
    return carry, self.out(h[:, 0])

  def __call__(
      self, context: Array, context_lens: Array, floors: Array,
      num_turns: Array, response: Array, response_len: Array,
      noise: Noise = None, *, max_turns: Array | None = None,
  ) -> dict[str, Any]:
    """Encodes, samples z from q(z | x, c) and decodes (teacher forcing).

    Args:
      context, context_lens, floors, num_turns: as in `encode_context`.
      response: <i32>[B, R] `<s> ... </s>`, PAD-padded.
      response_len: <i32>[B] tokens of the response, `<s>` and `</s>` in.
      noise: `example_noise`'s dict (`batch_noise`): 'eps' <f32>[B, Z] and
        the dropout multipliers (None or missing: no dropout; without 'eps',
        z is the mean of q).
      max_turns: N_b for kl_mask='padded', the longest context of the whole
        batch; defaults to max(num_turns) of these rows. Pass the global
        value when a batch is split across devices.

    Returns:
      'logits' <f32>[B, R-1, V] for targets response[:, 1:];
      'kl_steps' <f32>[B, N] KL(q_i || p_i) at every context step (padded
      steps computed from H_i = 0); 'kl' <f32>[B] their average per
      `kl_mask`; 'z' <f32>[B, Z]; 'mu', 'logvar' <f32>[B, Z] of q(z | x, c)
      and 'prior_mu', 'prior_logvar' <f32>[B, Z] of p(z | c), at c.
    """
    c, h = self.encode_context(context, context_lens, floors, num_turns,
                               noise)
    # x = w_1 .. w_n </s>: the response without `<s>`.
    u_x = self._encode_utterances(response[:, 1:], response_len - 1,
                                  _entry(noise, 'x_emb_keep'))
    out = self.kl_and_z(u_x, c, h, num_turns, noise, max_turns)
    out['logits'] = self.decode(response[:, :-1], out['z'], c, noise)
    return out

  def kl_and_z(self, u_x: Array, c: Array, h: Array, num_turns: Array,
               noise: Noise = None,
               max_turns: Array | None = None) -> dict[str, Array]:
    """The timestep-wise KL and z (the part of `__call__` between the
    encoders and the decoder).

    Args:
      u_x: <f32>[B, 2 H_u] the response's encoding.
      c, h: from `encode_context`.
      num_turns: <i32>[B] context turns.
      noise: its 'eps' <f32>[B, Z] is the standard normal noise of z (None:
        z = mu).
      max_turns: see `__call__`.

    Returns:
      `__call__`'s values but 'logits'.
    """
    num_slots = h.shape[1]
    # The same recognition and prior nets at every context step (SPEC B.4).
    u_rep = jnp.broadcast_to(u_x[:, None], (*h.shape[:2], u_x.shape[-1]))
    mu_q, logvar_q = self.recognition(u_rep, h)
    mu_p, logvar_p = self.prior(h)
    kl_steps = losses.gaussian_kl_two(mu_q, logvar_q, mu_p, logvar_p)
    steps = jnp.arange(num_slots)
    if self.kl_mask == 'valid':
      valid = steps < num_turns[:, None]
      kl = jnp.sum(jnp.where(valid, kl_steps, 0.0), axis=1) / num_turns
    else:
      n_b = jnp.max(num_turns) if max_turns is None else max_turns
      kl = jnp.sum(jnp.where(steps < n_b, kl_steps, 0.0), axis=1) / n_b
    # H at the last turn is c, so q and p at c are those of that step.
    last = num_turns - 1
    mu, logvar = _take_step(mu_q, last), _take_step(logvar_q, last)
    eps = _entry(noise, 'eps')
    z = mu if eps is None else mu + jnp.exp(0.5 * logvar) * eps
    return dict(
        kl_steps=kl_steps, kl=kl, z=z, mu=mu, logvar=logvar,
        prior_mu=_take_step(mu_p, last),
        prior_logvar=_take_step(logvar_p, last),
    )


def _starts(item: Array) -> Array:
  """<bool>[L, P]: positions where a new item (or padding run) begins."""
  first = jnp.ones(item.shape[:1] + (1,), bool)
  return jnp.concatenate([first, item[:, 1:] != item[:, :-1]], axis=1)


def _offsets(item: Array) -> Array:
  """<i32>[L, P]: each position's index within its item."""
  t = jnp.broadcast_to(jnp.arange(item.shape[1]), item.shape)
  begin = jax.lax.cummax(jnp.where(_starts(item), t, 0), axis=1)
  return t - begin


def _segment_grus(runs: list[tuple[Any, Array, Array, Array | None]],
                  dtype: Any = jnp.float32) -> list[Array]:
  """GRUs over lanes of items laid end to end, restarted at each item.

  Each run is (the `layers.RNN` GRU's params, x <f32>[L, P, D] inputs,
  starts <bool>[L, P], h0 <f32>[L, P, H] or None): at a start the state is
  h0 there (zeros if None) before the step, so every item is encoded as if
  alone, from its own initial state. The runs share one scan over P (fewer
  sequential steps than one scan each). `dtype` is the matmuls' (see
  `layers.RNN`); states stay float32.

  Returns:
    Per run, the outputs <f32>[L, P, H].
  """
  hidden = [p['step']['hh']['kernel'].shape[0] for p, *_ in runs]
  cells = [layers.RecurrentStep('gru', h, dtype=dtype) for h in hidden]
  # Input projections of every position at once, outside the scan.
  xs = [layers.Affine(3 * h, dtype=dtype).apply({'params': p['ih']}, x)
        for h, (p, x, _, _) in zip(hidden, runs)]
  time_major = lambda x: None if x is None else jnp.swapaxes(x, 0, 1)
  seqs = [(time_major(xw), time_major(start), time_major(h0))
          for xw, (_, _, start, h0) in zip(xs, runs)]

  def step(carry, inputs):
    new = []
    for cell, (p, *_), h, (xw, start, h0) in zip(cells, runs, carry, inputs):
      h = jnp.where(start[:, None], 0.0 if h0 is None else h0, h)
      new.append(cell.apply({'params': p['step']}, h, xw)[0])
    return new, new

  carry = [jnp.zeros((x.shape[0], h), jnp.float32)
           for x, h in zip(xs, hidden)]
  _, outs = jax.lax.scan(step, carry, seqs)
  return [jnp.swapaxes(o, 0, 1) for o in outs]


def packed_noise(model: DialogTWRVAE, batch: dict[str, Array],
                 keys: PRNGKey, train: bool) -> dict[str, Array | None]:
  """`example_noise` at the positions of a packed batch: the same values as
  the padded layout's at every real token (`dropout_keep`).

  Returns:
    'eps' <f32>[B, Z]; 'ctx_emb_keep' <f32>[L_c, P, E], 'x_emb_keep' and
    'dec_keep' <f32>[L_r, P, E], 'ctx_keep' <f32>[B, W-1, 2 H_u + 2], or
    None without dropout.
  """
  keys_eps, keys_keep = jax.vmap(jax.random.split, out_axes=1)(keys)
  noise = {'eps': jax.vmap(
      lambda k: jax.random.normal(k, (model.latent,)))(keys_eps)}
  rows, slots = batch['ctx_last'].shape
  for name in ('ctx_emb_keep', 'ctx_keep', 'x_emb_keep', 'dec_keep'):
    noise[name] = None
  if train and model.emb_dropout > 0.0:
    item = jnp.maximum(batch['ctx_item'], 0)
    noise['ctx_emb_keep'] = dropout_keep(
        keys_keep[item // slots], _CTX_EMB, item % slots,
        _offsets(batch['ctx_item']), model.emb_dim, model.emb_dropout)
    row = batch['res_row']
    key, zero = keys_keep[jnp.maximum(row, 0)], jnp.zeros_like(row)
    for name, kind in (('x_emb_keep', _X_EMB), ('dec_keep', _DEC_EMB)):
      noise[name] = dropout_keep(key, kind, zero, _offsets(row),
                                 model.emb_dim, model.emb_dropout)
  if train and model.ctx_dropout > 0.0:
    slot = jnp.broadcast_to(jnp.arange(slots), (rows, slots))
    key = jnp.broadcast_to(keys_keep[:, None], (rows, slots))
    noise['ctx_keep'] = dropout_keep(
        key, _CTX_IN, slot, jnp.zeros_like(slot),
        2 * model.utt_hidden + NUM_FLOORS, model.ctx_dropout)
  return noise


def batch_noise(model: DialogTWRVAE, batch: dict[str, Array], keys: PRNGKey,
                train: bool) -> dict[str, Array | None]:
  """Each example's noise for `batch`, padded (`example_noise`) or packed
  (`packed_noise`, for `packed_forward`): what `__call__` takes.

  Args:
    model: the model (its sizes and dropout rates).
    batch: a `dialogue_data` batch, padded or packed (`pack_batch`).
    keys: typed PRNG keys [B], one per example.
    train: dropout masks are drawn only in training.
  """
  if 'ctx_tokens' in batch:
    return packed_noise(model, batch, keys, train)
  num_slots, utt_len = batch['context'].shape[1:]
  return example_noise(
      keys, num_turns=num_slots, utt_len=utt_len,
      res_len=batch['response'].shape[1], emb_dim=model.emb_dim,
      ctx_in=2 * model.utt_hidden + NUM_FLOORS, latent=model.latent,
      emb_dropout=model.emb_dropout, ctx_dropout=model.ctx_dropout,
      train=train)


def packed_forward(
    model: DialogTWRVAE, params, batch: dict[str, Array], noise: Noise = None,
    *, max_turns: Array | None = None,
) -> dict[str, Array]:
  """`DialogTWRVAE.__call__` on a packed batch (`dialogue_data.pack_batch`).

  The same computation as on the padded batch, over real tokens only: the
  utterance encoder runs over the lanes of context turns and of responses
  (x), restarted at every turn, its backward direction over the lanes
  reversed; the decoder over the response lanes, restarted at every
  response from that row's [z; c]; the output layer and cross-entropy at
  the lanes' positions. Each value equals the padded computation's up to
  float rounding, with the same dropout masks (`packed_noise`).

  Args:
    model: the model (its hyperparameters; the modules run on `params`).
    params: its parameters.
    batch: a packed batch.
    noise: `packed_noise`'s dict (None: no dropout, z = mu).
    max_turns: see `DialogTWRVAE.__call__`.

  Returns:
    `__call__`'s values without 'logits', plus 'rec' <f32>[B], the summed
    cross-entropy of each response's targets (`losses.token_nll`'s).
  """
  variables = {'params': params}
  rows, slots = batch['ctx_last'].shape
  width = batch['ctx_tokens'].shape[1]
  num_ctx = batch['ctx_tokens'].shape[0]
  entry = functools.partial(_entry, noise)
  embed = lambda tokens, keep: model.apply(
      variables, tokens, keep, method=lambda m, t, k: m._embed(t, k))  # pylint: disable=protected-access

  # Utterance encoder: context lanes and response lanes (x) together.
  e = jnp.concatenate([embed(batch['ctx_tokens'], entry('ctx_emb_keep')),
                       embed(batch['res_targets'], entry('x_emb_keep'))])
  res_row = batch['res_row']
  item = jnp.concatenate(
      [batch['ctx_item'], jnp.where(res_row >= 0, rows * slots + res_row, -1)])
  enc = params['utt_encoder']
  # Reversing whole lanes reverses every item in place: the backward GRU
  # then reads each item from its last token to its first.
  h_fwd, h_bwd = _segment_grus([
      (enc['fwd'], e, _starts(item), None),
      (enc['bwd'], e[:, ::-1], _starts(item[:, ::-1]), None)], model.dtype)
  h_fwd = h_fwd.reshape(-1, h_fwd.shape[-1])
  h_bwd = h_bwd.reshape(-1, h_bwd.shape[-1])

  def encodings(last, lengths):
    """[h_fwd at the last token; h_bwd at the first] of items ending at
    flat positions `last` (lane * P + offset)."""
    lane, end = last // width, last % width
    first_reversed = lane * width + width - 1 - (end - lengths + 1)
    return jnp.concatenate([h_fwd[last], h_bwd[first_reversed]], axis=-1)

  u = encodings(batch['ctx_last'], batch['context_lens'])
  u_x = encodings(num_ctx * width + batch['res_last'],
                  batch['response_len'] - 1)
  c, h = model.apply(variables, u, batch['floors'], batch['num_turns'],
                     noise, method=DialogTWRVAE.context_states)
  out = model.apply(variables, u_x, c, h, batch['num_turns'], noise,
                    max_turns, method=DialogTWRVAE.kl_and_z)

  # Decoder: each response from its row's [z; c].
  valid = res_row >= 0
  row = jnp.maximum(res_row, 0)
  h0 = jnp.concatenate([out['z'], c], axis=-1)[row]
  (h_dec,) = _segment_grus([
      (params['dec_rnn'], embed(batch['res_inputs'], entry('dec_keep')),
       _starts(res_row), h0)], model.dtype)
  logits = model.apply(variables, h_dec, method=lambda m, x: m.out(x))
  ce = optax.softmax_cross_entropy_with_integer_labels(  # As token_nll's.
      logits.astype(jnp.float32), batch['res_targets'])
  out['rec'] = jax.ops.segment_sum(jnp.where(valid, ce, 0.0).reshape(-1),
                                   row.reshape(-1), num_segments=rows)
  return out


def model_from_config(config: ml_collections.ConfigDict,
                      vocab_size: int) -> DialogTWRVAE:
  m = config.model
  return DialogTWRVAE(
      vocab_size=vocab_size, emb_dim=m.emb_dim, utt_hidden=m.utt_hidden,
      ctx_hidden=m.ctx_hidden, latent=m.latent, emb_dropout=m.emb_dropout,
      ctx_dropout=m.ctx_dropout, kl_mask=m.kl_mask,
      dtype=layers.compute_dtype(config),
  )
