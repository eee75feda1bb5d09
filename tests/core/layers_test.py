"""Tests of the shared layers (core/layers.py) against PyTorch's equations."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twr_jax.core import layers

H = 5


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _numpy_rnn(cell, x, wi, bi, wh, bh):
  """PyTorch's equations (gates i,f,g,o / r,z,n), step by step."""
  B, T, _ = x.shape
  h = np.zeros((B, wh.shape[0]))
  c = np.zeros_like(h)
  outs = []
  for t in range(T):
    xi, hh = x[:, t] @ wi + bi, h @ wh + bh
    if cell == 'lstm':
      i, f, g, o = np.split(xi + hh, 4, axis=-1)
      c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
      h = _sigmoid(o) * np.tanh(c)
    elif cell == 'gru':
      r = _sigmoid(xi[:, :H] + hh[:, :H])
      u = _sigmoid(xi[:, H : 2 * H] + hh[:, H : 2 * H])
      n = np.tanh(xi[:, 2 * H :] + r * hh[:, 2 * H :])
      h = (1 - u) * n + u * h
    else:
      h = np.tanh(xi + hh)
    outs.append(h)
  return np.stack(outs, 1)


@pytest.mark.parametrize('cell', layers.CELLS)
def test_rnn_matches_pytorch_equations(cell):
  rnn = layers.RNN(cell, H)
  x = jax.random.normal(jax.random.key(0), (2, 6, 4))
  params = rnn.init(jax.random.key(1), x)
  p = jax.tree_util.tree_map(np.asarray, params['params'])
  want = _numpy_rnn(cell, np.asarray(x, np.float64), p['ih']['kernel'],
                    p['ih']['bias'], p['step']['hh']['kernel'],
                    p['step']['hh']['bias'])
  np.testing.assert_allclose(rnn.apply(params, x), want, atol=1e-5)


def test_affine_has_dense_values_and_gradients():
  x = jax.random.normal(jax.random.key(0), (3, 5, 4))
  dense, fast = nn.Dense(7), layers.Affine(7)
  params = fast.init(jax.random.key(1), x)
  g = jax.random.normal(jax.random.key(2), (3, 5, 7))

  def grads(layer):
    f = lambda p, x: jnp.sum(layer.apply(p, x) * g)
    return layer.apply(params, x), jax.grad(f, argnums=(0, 1))(params, x)

  (y_fast, g_fast), (y_dense, g_dense) = grads(fast), grads(dense)
  np.testing.assert_allclose(y_fast, y_dense, rtol=1e-5, atol=1e-6)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
      g_fast, g_dense)
