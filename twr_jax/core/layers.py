"""Layers both tasks' models share: PyTorch-parametrised RNNs (SPEC A.3, A.6).

Parametrisation and initialisation follow PyTorch's (SPEC A.6), so weights map
one to one onto the original code: every RNN has an input projection `ih`
(W_ih, b_ih) and a recurrent projection `hh` (W_hh, b_hh), gates in PyTorch
order (LSTM i, f, g, o; GRU r, z, n), all drawn from U(+-1/sqrt(H)); Linear
layers use U(+-1/sqrt(fan_in)); embeddings N(0, 1) with the pad row zero.

For speed without changing the maths:
  * The input projection W_ih x_t + b_ih is computed for all timesteps at once
    outside the scan (one large matmul); the scan only does the recurrence.
  * A constant input appended to every step (the decoder's z) is projected
    once per sequence (`RNN.run`'s x_const), not once per step.
  * On the CPU backend, the RNN input projections and output layers
    (`Affine`, `affine`) add their bias inside the matmul and materialise x^T
    for their weight gradient (XLA CPU runs that faster); on GPU / TPU they
    are plain x @ W + b (`fused_affine_default`).
"""

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from twr_jax import errors
from twr_jax.core import text

Array = jax.Array

CELLS = ('lstm', 'gru', 'rnn')
# A model's random draws for a batch, by name: dropout multipliers ('*_keep')
# and the reparameterisation noise ('eps'), drawn outside the model from each
# example's own key (the models' `example_noise`). None: no noise.
Noise = dict[str, Array | None] | None
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
  """Whether `Affine` and IW-NLL's output layer use `affine`.

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
  """A Linear layer computed with `linear`: nn.Dense's parameters ('kernel'
  <f32>[K, N], 'bias' <f32>[N]) and values; on CPU as `affine`, whose weight
  gradient is faster there (`fused_affine_default`). Used for the matmuls
  whose inputs span every token (the RNN input projections and the output
  layer).

  Attributes:
    features: N.
    kernel_init, bias_init: initialisers; None gives torch.nn.Linear's
      U(+-1/sqrt(K)).
    dtype: computation dtype: x, kernel and bias are cast to it, so the
      output is <dtype>[..., N]; the parameters stay float32 (mixed
      precision, `compute_dtype`).
  """

  features: int
  kernel_init: Callable | None = None
  bias_init: Callable | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """x: <f32>[..., K] -> <dtype>[..., N]."""
    init = uniform_init(1.0 / math.sqrt(x.shape[-1]))
    kernel = self.param('kernel', self.kernel_init or init,
                        (x.shape[-1], self.features))
    bias = self.param('bias', self.bias_init or init, (self.features,))
    x, kernel, bias = (a.astype(self.dtype) for a in (x, kernel, bias))
    return linear(x, kernel, bias)


def noise_entry(noise: Noise, name: str) -> Array | None:
  """noise[name]; None when `noise` is None or has no such entry (no
  dropout)."""
  return None if noise is None else noise.get(name)


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
