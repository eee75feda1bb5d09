"""Flax modules of the TWR-VAE language model (SPEC A.3).

The encoder runs an RNN over the whole sentence with `nn.scan` and applies the
mu / logvar heads to every timestep's output in one pass, so all per-step
posteriors q(z | x_{<=t}) come out of one jitted call. The decoder is an RNN of
the same cell type fed [emb(x_{t-1}); z] at every step, with its initial state
from a bias-free Linear(z).

The layers (RNNs, `Affine`, initialisers) are the shared ones of
`core/layers.py`, parametrised like PyTorch's (SPEC A.6). The decoder's input
projection W_ih [e; z] is split into W_e e + W_z z, and W_z z is computed once
per sentence instead of once per step.

Noise is explicit: every random draw of a sentence (dropout masks, the
reparameterisation epsilon) comes from that sentence's own key, so results do
not depend on how a batch is split across devices. The caller draws it
(`example_noise`) and passes the dict as the methods' one `noise` argument;
None, or an entry that is missing or None, means no dropout (and, for 'eps',
z at the posterior mean).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from twr_jax.core import layers
from twr_jax.core import text

Array = jax.Array
PRNGKey = jax.Array

CELLS = layers.CELLS
Z_MODES = ('last', 'mean', 'sum')
Noise = layers.Noise
_entry = layers.noise_entry


def example_noise(
    keys: PRNGKey, length: int, emb_dim: int, latent: int, dropout: float,
    train: bool,
) -> dict[str, Array | None]:
  """Draws each sentence's noise from its own key.

  Args:
    keys: typed PRNG keys [B], one per sentence.
    length: padded length T.
    emb_dim, latent: E and Z.
    dropout: embedding dropout rate p.
    train: dropout masks are drawn only in training.

  Returns:
    'eps' <f32>[B, T, Z] standard normal; 'enc_keep' <f32>[B, T, E] and
    'dec_keep' <f32>[B, T-1, E] inverted-dropout multipliers (0 or 1/(1-p)),
    or None when no dropout applies.
  """

  def one(key):
    k_eps, k_enc, k_dec = jax.random.split(key, 3)
    out = {'eps': jax.random.normal(k_eps, (length, latent))}
    if train and dropout > 0.0:
      scale = 1.0 / (1.0 - dropout)
      keep = lambda k, t: jax.random.bernoulli(k, 1.0 - dropout, (t, emb_dim))
      out['enc_keep'] = keep(k_enc, length) * scale
      out['dec_keep'] = keep(k_dec, length - 1) * scale
    return out

  noise = jax.vmap(one)(keys)
  noise.setdefault('enc_keep', None)
  noise.setdefault('dec_keep', None)
  return noise


def pool_posterior(mu: Array, logvar: Array, lengths: Array, z_mode: str):
  """The Gaussian that z really follows, from the per-step posteriors.

  Only a sentence's own steps count (t < length), not padding (SPEC A.10).

  Args:
    mu, logvar: <f32>[B, T, Z] per-step posteriors.
    lengths: <i32>[B] valid steps per sentence (tokens incl. BOS and EOS).
    z_mode: 'last' (q at the true last token), 'mean' (of independent
      per-step samples: N(mean mu_t, sum sigma_t^2 / L^2)) or 'sum'
      (N(sum mu_t, sum sigma_t^2)).

  Returns:
    (mu_z, logvar_z), each <f32>[B, Z].
  """
  if z_mode == 'last':
    idx = (lengths - 1)[:, None, None]
    take = lambda a: jnp.take_along_axis(a, idx, axis=1)[:, 0]
    return take(mu), take(logvar)
  if z_mode not in Z_MODES:
    raise ValueError(f'z_mode must be one of {Z_MODES}, got {z_mode!r}')
  mask = (jnp.arange(mu.shape[1]) < lengths[:, None])[..., None]
  mu_sum = jnp.sum(jnp.where(mask, mu, 0.0), axis=1)
  var_sum = jnp.sum(jnp.where(mask, jnp.exp(logvar), 0.0), axis=1)
  if z_mode == 'sum':
    return mu_sum, jnp.log(var_sum)
  n = lengths[:, None].astype(mu.dtype)
  return mu_sum / n, jnp.log(var_sum) - 2.0 * jnp.log(n)


def sample_z(mu: Array, logvar: Array, lengths: Array, eps: Array,
             z_mode: str) -> Array:
  """Reparameterised z as the original draws it (SPEC A.4), masked.

  'last' uses eps at the true last step; 'mean' / 'sum' pool independent
  per-step samples mu_t + sigma_t eps_t over the valid steps only.

  Args:
    mu, logvar, eps: <f32>[B, T, Z]; lengths: <i32>[B].

  Returns:
    <f32>[B, Z].
  """
  samples = mu + jnp.exp(0.5 * logvar) * eps
  if z_mode == 'last':
    idx = (lengths - 1)[:, None, None]
    return jnp.take_along_axis(samples, idx, axis=1)[:, 0]
  mask = (jnp.arange(mu.shape[1]) < lengths[:, None])[..., None]
  total = jnp.sum(jnp.where(mask, samples, 0.0), axis=1)
  if z_mode == 'sum':
    return total
  if z_mode != 'mean':
    raise ValueError(f'z_mode must be one of {Z_MODES}, got {z_mode!r}')
  return total / lengths[:, None].astype(mu.dtype)


class MuBatchNorm(nn.Module):
  """BN-VAE's batch normalisation of the posterior mean (Zhu et al., 2020).

  Per latent dimension j: mu'_j = gamma (mu_j - m_j) / sqrt(v_j + eps) + b_j,
  with a FIXED scale gamma and a learnt shift b (PyTorch's BatchNorm1d with its
  weight frozen at gamma, as in Zhu et al.'s code). In training m, v are the
  mean and biased variance of mu over the positions of `mask` (over all
  devices of `axis_name`); otherwise they are the running averages. Over those
  positions mu'_j then has mean b_j and variance gamma^2 v_j / (v_j + eps), so
  E[KL] >= sum_j E[mu'_j^2] / 2 ~ Z gamma^2 / 2: the KL cannot collapse.

  The running averages are stored with the parameters ('running_mean',
  'running_var'), like PyTorch's buffers in a state_dict, so that every
  consumer of a checkpoint's params (evaluation, IW-NLL, generation) applies
  the eval-mode transform without a second variable collection. Their
  gradient is zero; the train step overwrites them with the returned EMA
  after each optimiser update (`with_bn_stats`), so the optimiser never moves
  them.

  Attributes:
    features: Z.
    gamma: the fixed scale (paper 0.6-0.7).
    momentum: weight of the batch in the running averages (PyTorch's 0.1).
    epsilon: added to the variance (PyTorch's 1e-5).
  """

  features: int
  gamma: float
  momentum: float = 0.1
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, mu: Array, mask: Array | None = None,
               axis_name: str | None = None):
    """Normalises mu.

    Args:
      mu: <f32>[..., Z].
      mask: <bool>[...] training: the positions whose statistics are used;
        None: eval mode (running averages).
      axis_name: collective axis of a batch split over devices (training).

    Returns:
      (mu' <f32>[..., Z], stats): stats is None in eval mode, else the
      updated running averages {'running_mean', 'running_var'} <f32>[Z]
      (no gradient; the running variance uses the unbiased batch variance,
      like PyTorch).
    """
    z = (self.features,)
    shift = self.param('bias', nn.initializers.zeros, z)
    run_mean = self.param('running_mean', nn.initializers.zeros, z)
    run_var = self.param('running_var', nn.initializers.ones, z)
    if mask is None:
      mean, var, stats = run_mean, run_var, None
    else:
      w = mask.astype(mu.dtype)[..., None]
      axes = tuple(range(mu.ndim - 1))
      psum = lambda x: x if axis_name is None else jax.lax.psum(x, axis_name)
      n, total = psum((jnp.sum(w), jnp.sum(w * mu, axes)))
      mean = total / n
      sq = psum(jnp.sum(w * (mu - mean) ** 2, axes))
      var = sq / n
      m = self.momentum
      stats = jax.lax.stop_gradient(dict(
          running_mean=(1.0 - m) * run_mean + m * mean,
          running_var=(1.0 - m) * run_var + m * sq / jnp.maximum(n - 1.0, 1.0),
      ))
    out = self.gamma * (mu - mean) * jax.lax.rsqrt(var + self.epsilon) + shift
    return out, stats


def with_bn_stats(params, stats: dict[str, Array] | None):
  """`params` with BN-VAE's running averages replaced by `stats` (from the
  model's 'bn_stats' output); unchanged when `stats` is None."""
  if stats is None:
    return params
  return {**params, 'mu_bn': {**params['mu_bn'], **stats}}


class TWRVAE(nn.Module):
  """The TWR-VAE language model (SPEC A.3-A.4).

  Attributes:
    vocab_size: V.
    emb_dim: E, embedding size (paper 512).
    hidden: H, RNN size (paper 256).
    latent: Z, latent size (paper 32).
    cell: 'lstm' | 'gru' | 'rnn' for both encoder and decoder.
    z_mode: 'last' | 'mean' | 'sum', how z is formed from the per-step
      posteriors.
    dropout: dropout rate on encoder and decoder input embeddings.
    bn_gamma: BN-VAE (Zhu et al., 2020): batch-normalise mu with this fixed
      scale and a learnt shift (`MuBatchNorm`); None (default): no BN.
    dtype: computation dtype (`config.train.compute_dtype`): float32, or
      bfloat16 for the embeddings' outputs, the RNN matmuls and the output
      layer (logits <bf16>). Parameters, RNN states, the mu / logvar heads
      (inputs of the KL and of z) and z stay float32; the losses reduce in
      float32 (`losses`).
  """

  vocab_size: int
  emb_dim: int = 512
  hidden: int = 256
  latent: int = 32
  cell: str = 'lstm'
  z_mode: str = 'last'
  dropout: float = 0.5
  bn_gamma: float | None = None
  dtype: Any = jnp.float32

  def setup(self):
    embed = lambda name: nn.Embed(
        self.vocab_size, self.emb_dim, embedding_init=layers.embedding_init,
        name=name
    )
    self.enc_embed = embed('enc_embed')
    self.enc_rnn = layers.RNN(self.cell, self.hidden, dtype=self.dtype,
                              name='enc_rnn')
    # Applied to every timestep: Affine for the faster weight gradient.
    self.mu_head = layers.Affine(self.latent, name='mu')
    self.logvar_head = layers.Affine(self.latent, name='logvar')
    if self.bn_gamma is not None:
      self.mu_bn = MuBatchNorm(self.latent, self.bn_gamma, name='mu_bn')
    self.dec_embed = embed('dec_embed')
    self.z_to_h0 = layers.torch_dense(
        self.hidden, self.latent, use_bias=False, name='z_to_h0'
    )
    self.dec_rnn = layers.RNN(self.cell, self.hidden, dtype=self.dtype,
                              name='dec_rnn')
    self.out = self._output_layer()

  def _output_layer(self) -> nn.Module:
    # A method, not a field: benchmarks override it to time the matmul path
    # the backend does not take (bench/train_throughput.py); values agree.
    return layers.Affine(self.vocab_size, dtype=self.dtype, name='out')

  def _embed(self, table: nn.Embed, tokens: Array, keep: Array | None):
    # Zeroing pad positions keeps the pad row's gradient exactly zero, so the
    # row stays zero under Adam and weight decay (PyTorch's padding_idx).
    # The lookup is float32 (so is the table's scattered gradient); its
    # output is cast to the compute dtype.
    e = table(tokens).astype(self.dtype) * (tokens != text.PAD)[..., None]
    return e if keep is None else e * keep.astype(e.dtype)

  def encode(self, tokens: Array, noise: Noise = None,
             bn_mask: Array | None = None, axis_name: str | None = None):
    """Per-step posteriors.

    Args:
      tokens: <i32>[B, T] BOS ... EOS then PAD.
      noise: `example_noise`'s dict; its 'enc_keep' <f32>[B, T, E] dropout
        multipliers are applied (None: no dropout).
      bn_mask, axis_name: BN-VAE only (see `__call__`); None: eval mode.

    Returns:
      (mu, logvar), each <f32>[B, T, Z]: q(z | x_{<=t}) for every t.
    """
    mu, logvar, _ = self._posteriors(tokens, noise, bn_mask, axis_name)
    return mu, logvar

  def _posteriors(self, tokens, noise, bn_mask, axis_name):
    """(mu, logvar, BN running-average update or None)."""
    h = self.enc_rnn(self._embed(self.enc_embed, tokens,
                                 _entry(noise, 'enc_keep')))
    mu, stats = self.mu_head(h), None
    if self.bn_gamma is not None:
      mu, stats = self.mu_bn(mu, bn_mask, axis_name)
    return mu, self.logvar_head(h), stats

  def decode(self, inputs: Array, z: Array, noise: Noise = None):
    """Teacher-forced decoder logits.

    Args:
      inputs: <i32>[B, T'] decoder inputs x_0 .. x_{T'-1} (BOS first).
      z: <f32>[B, Z]; or <f32>[B, C, Z], C latent samples per sentence
        (IW-NLL), whose decodes share the inputs' embedding and input
        projection (computed once per sentence, not C times).
      noise: `example_noise`'s dict; its 'dec_keep' <f32>[B, T', E] dropout
        multipliers are applied (None: no dropout).

    Returns:
      <f32>[B', T', V] logits of x_1 .. x_{T'}; B' = B, or B * C with row
      b * C + c for sample c of sentence b.
    """
    return self.out(self.decode_hidden(inputs, z, noise))

  def decode_hidden(self, inputs: Array, z: Array,
                    noise: Noise = None) -> Array:
    """The decoder RNN's outputs <f32>[B', T', H], before the output layer
    (arguments as `decode`)."""
    e = self._embed(self.dec_embed, inputs, _entry(noise, 'dec_keep'))
    h0 = self.z_to_h0(z.reshape(-1, z.shape[-1]))
    return self.dec_rnn.run(e, self.dec_rnn.initial_carry(h0), x_const=z)[1]

  def decode_init(self, z: Array):
    """The decoder's initial carry, from h0 = W z (no bias)."""
    return self.dec_rnn.initial_carry(self.z_to_h0(z))

  def decode_step(self, carry, token: Array, z: Array):
    """One free-running decoder step (eval mode).

    Args:
      carry: from `decode_init` or the previous step.
      token: <i32>[B] the previous token (BOS first).
      z: <f32>[B, Z].

    Returns:
      (carry, logits <f32>[B, V] of the next token).
    """
    e = self._embed(self.dec_embed, token[:, None], None)
    carry, h = self.dec_rnn.run(e, carry, x_const=z)
    return carry, self.out(h[:, 0])

  def __call__(self, tokens: Array, lengths: Array, noise: Noise = None, *,
               bn_mask: Array | None = None,
               axis_name: str | None = None,
               z_lengths: Array | None = None) -> dict[str, Any]:
    """Encodes, samples z and decodes (teacher forcing).

    Args:
      tokens: <i32>[B, T] BOS ... EOS then PAD.
      lengths: <i32>[B] tokens per sentence including BOS and EOS.
      noise: `example_noise(keys, T, ...)`'s dict: 'eps' <f32>[B, T, Z] and
        the dropout multipliers 'enc_keep', 'dec_keep' (None or missing: no
        dropout; without 'eps', z is the mean of the Gaussian it follows).
      bn_mask: BN-VAE training only: <bool>[B, T] the positions whose batch
        statistics normalise mu (the train step passes the KL window of the
        real sentences); None uses the running averages (eval mode).
      axis_name: collective axis of the batch statistics under pmap.
      z_lengths: <i32>[B] the steps z is formed from (taken at step
        z_lengths - 1, or pooled over steps < z_lengths); default `lengths`.
        The original code passes the batch's padded length T_b here
        (`model.z_length = 'padded'`, SPEC A.4).

    Returns:
      'logits' <f32>[B, T-1, V] for targets tokens[:, 1:]; 'mu', 'logvar'
      <f32>[B, T, Z] per-step posteriors; 'z' <f32>[B, Z] the sample used;
      'z_mu', 'z_logvar' <f32>[B, Z] the Gaussian z follows; with BN-VAE in
      training, 'bn_stats' (see `MuBatchNorm`).
    """
    mu, logvar, stats = self._posteriors(tokens, noise, bn_mask, axis_name)
    z_lengths = lengths if z_lengths is None else z_lengths
    z_mu, z_logvar = pool_posterior(mu, logvar, z_lengths, self.z_mode)
    eps = _entry(noise, 'eps')
    z = z_mu if eps is None else sample_z(mu, logvar, z_lengths, eps,
                                          self.z_mode)
    logits = self.decode(tokens[:, :-1], z, noise)
    out = dict(logits=logits, mu=mu, logvar=logvar, z=z, z_mu=z_mu,
               z_logvar=z_logvar)
    if stats is not None:
      out['bn_stats'] = stats
    return out


def model_from_config(config, vocab_size: int) -> TWRVAE:
  """Builds the model from `config.model` (the single place that does so)."""
  m = config.model
  return TWRVAE(
      vocab_size=vocab_size, emb_dim=m.emb_dim, hidden=m.hidden,
      latent=m.latent, cell=m.cell, z_mode=m.z_mode, dropout=m.dropout,
      bn_gamma=m.get('bn_gamma'), dtype=layers.compute_dtype(config),
  )
