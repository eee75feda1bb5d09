"""Flax modules of the TWR-VAE language model (SPEC A.3).

The encoder runs an RNN over the whole sentence with `nn.scan` and applies the
mu / logvar heads to every timestep's output in one pass, so all per-step
posteriors q(z | x_{<=t}) come out of one jitted call. The decoder is an RNN of
the same cell type fed [emb(x_{t-1}); z] at every step, with its initial state
from a bias-free Linear(z).

Parametrisation and initialisation follow PyTorch's (SPEC A.6), so weights map
one to one onto the original code: every RNN has an input projection `ih`
(W_ih, b_ih) and a recurrent projection `hh` (W_hh, b_hh), gates in PyTorch
order (LSTM i, f, g, o; GRU r, z, n), all drawn from U(+-1/sqrt(H)); Linear
layers use U(+-1/sqrt(fan_in)); embeddings N(0, 1) with the pad row zero.

Three things differ from a textbook layout, all for speed without changing the
maths:
  * The input projection W_ih x_t + b_ih is computed for all timesteps at once
    outside the scan (one large matmul); the scan only does the recurrence.
  * The decoder's input projection W_ih [e; z] is split into W_e e + W_z z, and
    W_z z is computed once per sentence instead of once per step.
  * On the CPU backend, the output layer and the RNN input projections
    (`Affine`, `affine`) add their bias inside the matmul and materialise x^T
    for their weight gradient (XLA CPU runs that faster); on GPU / TPU they
    are plain x @ W + b (`fused_affine_default`).

Noise is explicit: every random draw of a sentence (dropout masks, the
reparameterisation epsilon) comes from that sentence's own key, so results do
not depend on how a batch is split across devices.
"""

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from twr_jax import errors
from twr_jax import text

Array = jax.Array
PRNGKey = jax.Array

CELLS = ('lstm', 'gru', 'rnn')
Z_MODES = ('last', 'mean', 'sum')
_NUM_GATES = {'lstm': 4, 'gru': 3, 'rnn': 1}


def uniform_init(bound: float):
  """PyTorch's U(-bound, bound) initialiser."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_dense(features: int, fan_in: int, use_bias: bool = True, name=None):
  """nn.Dense initialised like torch.nn.Linear: W, b ~ U(+-1/sqrt(fan_in))."""
  init = uniform_init(1.0 / math.sqrt(fan_in))
  return nn.Dense(
      features, use_bias=use_bias, kernel_init=init, bias_init=init, name=name
  )


def _with_ones(x: Array) -> Array:
  """[x, 1]: <f32>[..., K] -> <f32>[..., K + 1]."""
  return jnp.concatenate([x, jnp.ones(x.shape[:-1] + (1,), x.dtype)], -1)


@jax.custom_vjp
def affine(x: Array, w: Array, b: Array) -> Array:
  """x W + b as one matmul [x, 1] [W; b], with a fast weight gradient on CPU.

  Same values and gradients as `x @ w + b` up to float rounding; both changes
  are for XLA's CPU backend (measured in bench/train_throughput.py):
    * the bias is added inside the matmul, so the logits <f32>[..., N] are
      written once, not once by the matmul and again by the bias add (the
      output layer's forward, as in IW-NLL, ~20 % faster);
    * the weight gradient [x, 1]^T g contracts x's leading (token) axes, which
      XLA folds into a transposed-operand dot that runs on its slower generic
      path, not YNNPACK; materialising [x, 1]^T first (a copy of x, small next
      to g) keeps it on YNNPACK (output layer + cross-entropy fwd + bwd
      ~28 % faster), and gives the bias gradient as its last row.
  At paper size on PTB: train step 1.18x, IW-NLL 1.35x sentences/s.
  Not forward-differentiable (custom_vjp).

  Args:
    x: <f32>[..., K]; w: <f32>[K, N]; b: <f32>[N].

  Returns:
    <f32>[..., N].
  """
  return _with_ones(x) @ jnp.concatenate([w, b[None]], 0)


def _affine_fwd(x, w, b):
  return affine(x, w, b), (x, w)


def _affine_bwd(res, g):
  x, w = res
  # Without the barrier XLA folds the transpose back into the dot.
  x1t = jax.lax.optimization_barrier(_with_ones(x.reshape(-1, x.shape[-1])).T)
  dwb = x1t @ g.reshape(-1, g.shape[-1])
  return g @ w.T, dwb[:-1], dwb[-1]


affine.defvjp(_affine_fwd, _affine_bwd)


def fused_affine_default() -> bool:
  """Whether `Affine` (fused=None) and IW-NLL's output layer use `affine`.

  True on the CPU backend only: `affine` works around XLA:CPU's dot paths
  (measured there, see its docstring); on GPU / TPU the plain x @ W + b is
  the form their compilers fuse and tile best, and the custom VJP with an
  optimisation barrier could only get in their way (BUILD_NOTES.md, "Speed
  paths by backend"). Decided when a function is traced.
  """
  return jax.default_backend() == 'cpu'


def linear(x: Array, w: Array, b: Array, fused: bool | None = None) -> Array:
  """x @ w + b, as `affine` when `fused` (None: `fused_affine_default()`).

  Args:
    x: [..., K]; w: [K, N]; b: [N], one dtype.

  Returns:
    [..., N].
  """
  if fused_affine_default() if fused is None else fused:
    return affine(x, w, b)
  return x @ w + b


class Affine(nn.Module):
  """A Linear layer computed with `affine`: nn.Dense's parameters ('kernel'
  <f32>[K, N], 'bias' <f32>[N]) and values, its weight gradient faster on
  XLA CPU. Used for the matmuls whose inputs span every token (the RNN input
  projections and the output layer).

  Attributes:
    features: N.
    kernel_init, bias_init: initialisers; None gives torch.nn.Linear's
      U(+-1/sqrt(K)).
    fused: True: `affine`; False: x @ kernel + bias like nn.Dense; None
      (default): `fused_affine_default()`, i.e. `affine` on CPU only.
    dtype: computation dtype: x, kernel and bias are cast to it, so the
      output is <dtype>[..., N]; the parameters stay float32 (mixed
      precision, `compute_dtype`).
  """

  features: int
  kernel_init: Callable | None = None
  bias_init: Callable | None = None
  fused: bool | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """x: <f32>[..., K] -> <dtype>[..., N]."""
    init = uniform_init(1.0 / math.sqrt(x.shape[-1]))
    kernel = self.param('kernel', self.kernel_init or init,
                        (x.shape[-1], self.features))
    bias = self.param('bias', self.bias_init or init, (self.features,))
    x, kernel, bias = (a.astype(self.dtype) for a in (x, kernel, bias))
    return linear(x, kernel, bias, self.fused)


def embedding_init(key, shape, dtype=jnp.float32):
  """N(0, 1) like torch.nn.Embedding, with the padding row (id 0) zero."""
  return jax.random.normal(key, shape, dtype).at[text.PAD].set(0.0)


class RecurrentStep(nn.Module):
  """One step of an LSTM / GRU / tanh-RNN on a precomputed input projection.

  Attributes:
    cell: 'lstm', 'gru' or 'rnn'.
    hidden: state size H.
    kernel_init: initialiser of the W_hh kernel <f32>[H, G*H]; None gives
      PyTorch's default U(+-1/sqrt(H)). The bias is always U(+-1/sqrt(H)).
    dtype: computation dtype of the W_hh matmul; the carry keeps its own
      dtype (float32), so the state does not accumulate rounding.
  """

  cell: str
  hidden: int
  kernel_init: Callable | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, carry, xw: Array):
    """Args: carry: (c, h) for LSTM, else h, each <f32>[B, H];
    xw: <dtype>[B, G*H], W_ih x_t + b_ih. Returns (new carry, h <f32>[B, H])
    (h in the carry's dtype)."""
    init = uniform_init(1.0 / math.sqrt(self.hidden))
    h = carry[1] if self.cell == 'lstm' else carry
    state_dtype = h.dtype
    hw = nn.Dense(
        _NUM_GATES[self.cell] * self.hidden,
        kernel_init=self.kernel_init or init,
        bias_init=init,
        dtype=self.dtype,
        name='hh',
    )(h)
    if self.cell == 'lstm':
      i, f, g, o = jnp.split(xw + hw, 4, axis=-1)
      c = nn.sigmoid(f) * carry[0] + nn.sigmoid(i) * jnp.tanh(g)
      h = (nn.sigmoid(o) * jnp.tanh(c)).astype(state_dtype)
      return (c.astype(carry[0].dtype), h), h
    if self.cell == 'gru':
      xr, xz, xn = jnp.split(xw, 3, axis=-1)
      hr, hz, hn = jnp.split(hw, 3, axis=-1)
      r = nn.sigmoid(xr + hr)
      u = nn.sigmoid(xz + hz)
      n = jnp.tanh(xn + r * hn)  # PyTorch applies r to (W_hn h + b_hn).
      h = ((1.0 - u) * n + u * h).astype(state_dtype)
      return h, h
    h = jnp.tanh(xw + hw).astype(state_dtype)
    return h, h


class RNN(nn.Module):
  """A unidirectional RNN over a batch of sequences, scanned over time.

  Outputs past a sequence's length are computed but meaningless; callers mask
  them (a unidirectional RNN's valid outputs never depend on later pads).

  Attributes:
    cell: 'lstm', 'gru' or 'rnn'.
    hidden: state size H.
    kernel_init: initialiser of the W_ih and W_hh kernels (Flax layout
      [in, G*H]); None gives PyTorch's default U(+-1/sqrt(H)). Biases, and the
      `x_const` projection, are always U(+-1/sqrt(H)).
    dtype: computation dtype of the input and recurrent matmuls (float32
      or bfloat16); parameters and the carry stay float32.
  """

  cell: str
  hidden: int
  kernel_init: Callable | None = None
  dtype: Any = jnp.float32

  def setup(self):
    if self.cell not in CELLS:
      raise ValueError(f'cell must be one of {CELLS}, got {self.cell!r}')
    width = _NUM_GATES[self.cell] * self.hidden
    init = uniform_init(1.0 / math.sqrt(self.hidden))
    self.ih = Affine(width, kernel_init=self.kernel_init or init,
                     bias_init=init, dtype=self.dtype)
    # Only created when used (the decoder's z): W_ih [x_t; c] = W_x x_t + W_c c.
    self.ih_const = nn.Dense(width, use_bias=False, kernel_init=init,
                             dtype=self.dtype)
    self.step = nn.scan(
        RecurrentStep,
        variable_broadcast='params',
        split_rngs={'params': False},
        in_axes=1,
        out_axes=1,
    )(self.cell, self.hidden, self.kernel_init, self.dtype)

  def initial_carry(self, h0: Array):
    """The carry for initial state h0 <f32>[B, H] (LSTM: c0 = h0, SPEC A.3)."""
    return (h0, h0) if self.cell == 'lstm' else h0

  def run(self, x: Array, carry, x_const: Array | None = None):
    """Runs from a given carry; returns (final carry, outputs <f32>[B', T, H]).

    Args:
      x: <f32>[B, T, D] inputs.
      carry: from `initial_carry` or a previous `run`, rows as the outputs'.
      x_const: optional input appended to every step's x (the decoder's z);
        its projection is computed once, not T times. <f32>[B, D'] (B' = B),
        or <f32>[B, C, D']: C runs per sequence that share x (IW-NLL's
        samples), outputs row b * C + c; x's projection is then computed
        once per sequence, not C times.
    """
    xw = self.ih(x)  # All timesteps in one matmul, outside the scan.
    if x_const is not None:
      cw = self.ih_const(x_const)
      if x_const.ndim == 3:
        b, c = x_const.shape[:2]
        xw = (xw[:, None] + cw[:, :, None, :]).reshape(b * c, *xw.shape[1:])
      else:
        xw = xw + cw[:, None, :]
    return self.step(carry, xw)

  def __call__(self, x: Array, h0: Array | None = None,
               x_const: Array | None = None) -> Array:
    """Runs from h0 (zeros when None); returns outputs <f32>[B, T, H]."""
    if h0 is None:
      # A float32 state whatever the compute dtype (see RecurrentStep).
      h0 = jnp.zeros((x.shape[0], self.hidden), jnp.promote_types(
          x.dtype, jnp.float32))
    return self.run(x, self.initial_carry(h0), x_const)[1]


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

  # The output layer's `Affine.fused` (None: by backend). A class attribute,
  # not a field: it changes speed, not values (bench/train_throughput.py and
  # bench/device_check.py subclass it to measure the other path).
  fused_output = None

  def setup(self):
    embed = lambda name: nn.Embed(
        self.vocab_size, self.emb_dim, embedding_init=embedding_init, name=name
    )
    self.enc_embed = embed('enc_embed')
    self.enc_rnn = RNN(self.cell, self.hidden, dtype=self.dtype,
                       name='enc_rnn')
    # Applied to every timestep: Affine for the faster weight gradient.
    self.mu_head = Affine(self.latent, name='mu')
    self.logvar_head = Affine(self.latent, name='logvar')
    if self.bn_gamma is not None:
      self.mu_bn = MuBatchNorm(self.latent, self.bn_gamma, name='mu_bn')
    self.dec_embed = embed('dec_embed')
    self.z_to_h0 = torch_dense(
        self.hidden, self.latent, use_bias=False, name='z_to_h0'
    )
    self.dec_rnn = RNN(self.cell, self.hidden, dtype=self.dtype,
                       name='dec_rnn')
    self.out = Affine(self.vocab_size, fused=self.fused_output,
                      dtype=self.dtype, name='out')

  def _embed(self, table: nn.Embed, tokens: Array, keep: Array | None):
    # Zeroing pad positions keeps the pad row's gradient exactly zero, so the
    # row stays zero under Adam and weight decay (PyTorch's padding_idx).
    # The lookup is float32 (so is the table's scattered gradient); its
    # output is cast to the compute dtype.
    e = table(tokens).astype(self.dtype) * (tokens != text.PAD)[..., None]
    return e if keep is None else e * keep.astype(e.dtype)

  def encode(self, tokens: Array, enc_keep: Array | None = None,
             bn_mask: Array | None = None, axis_name: str | None = None):
    """Per-step posteriors.

    Args:
      tokens: <i32>[B, T] BOS ... EOS then PAD.
      enc_keep: optional <f32>[B, T, E] dropout multipliers.
      bn_mask, axis_name: BN-VAE only (see `__call__`); None: eval mode.

    Returns:
      (mu, logvar), each <f32>[B, T, Z]: q(z | x_{<=t}) for every t.
    """
    mu, logvar, _ = self._posteriors(tokens, enc_keep, bn_mask, axis_name)
    return mu, logvar

  def _posteriors(self, tokens, enc_keep, bn_mask, axis_name):
    """(mu, logvar, BN running-average update or None)."""
    h = self.enc_rnn(self._embed(self.enc_embed, tokens, enc_keep))
    mu, stats = self.mu_head(h), None
    if self.bn_gamma is not None:
      mu, stats = self.mu_bn(mu, bn_mask, axis_name)
    return mu, self.logvar_head(h), stats

  def decode(self, inputs: Array, z: Array, dec_keep: Array | None = None):
    """Teacher-forced decoder logits.

    Args:
      inputs: <i32>[B, T'] decoder inputs x_0 .. x_{T'-1} (BOS first).
      z: <f32>[B, Z]; or <f32>[B, C, Z], C latent samples per sentence
        (IW-NLL), whose decodes share the inputs' embedding and input
        projection (computed once per sentence, not C times).
      dec_keep: optional <f32>[B, T', E] dropout multipliers.

    Returns:
      <f32>[B', T', V] logits of x_1 .. x_{T'}; B' = B, or B * C with row
      b * C + c for sample c of sentence b.
    """
    return self.out(self.decode_hidden(inputs, z, dec_keep))

  def decode_hidden(self, inputs: Array, z: Array,
                    dec_keep: Array | None = None) -> Array:
    """The decoder RNN's outputs <f32>[B', T', H], before the output layer
    (arguments as `decode`)."""
    e = self._embed(self.dec_embed, inputs, dec_keep)
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

  def __call__(self, tokens: Array, lengths: Array, keys: PRNGKey, *,
               train: bool, bn_mask: Array | None = None,
               axis_name: str | None = None,
               z_lengths: Array | None = None) -> dict[str, Any]:
    """Encodes, samples z and decodes (teacher forcing).

    Args:
      tokens: <i32>[B, T] BOS ... EOS then PAD.
      lengths: <i32>[B] tokens per sentence including BOS and EOS.
      keys: typed PRNG keys [B], one per sentence (dropout and epsilon).
      train: enables dropout.
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
    noise = example_noise(
        keys, tokens.shape[1], self.emb_dim, self.latent, self.dropout, train
    )
    mu, logvar, stats = self._posteriors(tokens, noise['enc_keep'], bn_mask,
                                         axis_name)
    z_lengths = lengths if z_lengths is None else z_lengths
    z = sample_z(mu, logvar, z_lengths, noise['eps'], self.z_mode)
    z_mu, z_logvar = pool_posterior(mu, logvar, z_lengths, self.z_mode)
    logits = self.decode(tokens[:, :-1], z, noise['dec_keep'])
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
      bn_gamma=m.get('bn_gamma'), dtype=compute_dtype(config),
  )


COMPUTE_DTYPES = ('float32', 'bfloat16')


def compute_dtype(config) -> jnp.dtype:
  """`config.train.compute_dtype` as a dtype (float32 when the field is
  absent, e.g. a run saved before it existed).

  Raises:
    errors.ConfigError: not one of `COMPUTE_DTYPES`.
  """
  name = config.get('train', {}).get('compute_dtype', 'float32')
  if name not in COMPUTE_DTYPES:
    raise errors.ConfigError(
        f'config.train.compute_dtype = {name!r} is not allowed; choose one of'
        f' {", ".join(map(repr, COMPUTE_DTYPES))}')
  return jnp.dtype(name)
