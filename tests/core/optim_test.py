"""Adam with coupled L2 equals torch.optim.Adam(weight_decay=...)'s update."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from twr_jax.core import optim


def numpy_torch_adam(params, grads_seq, lr, b1, b2, eps, wd, clip=None):
  """torch.optim.Adam's algorithm, written out (coupled L2: g += wd * p)."""
  p = {k: v.astype(np.float64).copy() for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v = {k: np.zeros_like(x) for k, x in p.items()}
  for t, grads in enumerate(grads_seq, start=1):
    g = {k: x.astype(np.float64) for k, x in grads.items()}
    if clip is not None:
      norm = np.sqrt(sum(np.sum(x**2) for x in g.values()))
      g = {k: x * min(1.0, clip / norm) for k, x in g.items()}
    for k in p:
      gk = g[k] + wd * p[k]
      m[k] = b1 * m[k] + (1 - b1) * gk
      v[k] = b2 * v[k] + (1 - b2) * gk**2
      denom = np.sqrt(v[k]) / np.sqrt(1 - b2**t) + eps
      p[k] = p[k] - lr / (1 - b1**t) * m[k] / denom
  return p


@pytest.mark.parametrize('clip', [None, 0.5])
def test_matches_numpy_torch_adam(clip):
  rng = np.random.default_rng(0)
  params = {'w': rng.normal(size=(3, 4)).astype(np.float32),
            'b': rng.normal(size=(4,)).astype(np.float32)}
  grads_seq = [{k: rng.normal(size=v.shape).astype(np.float32)
                for k, v in params.items()} for _ in range(6)]
  # A large decay and lr make the coupled term visible in float32.
  kw = dict(learning_rate=1e-2, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.1)
  tx = optim.make_optimizer(**kw, grad_clip_norm=clip)
  p = jax.tree_util.tree_map(jnp.asarray, params)
  state = tx.init(p)
  for g in grads_seq:
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
  want = numpy_torch_adam(params, grads_seq, 1e-2, 0.9, 0.999, 1e-6, 0.1, clip)
  for k in params:
    np.testing.assert_allclose(p[k], want[k], rtol=1e-5, atol=1e-6)


def test_differs_from_decoupled_adamw():
  # Guard against someone "simplifying" to optax.adamw: the updates differ.
  params = {'w': jnp.ones((2,))}
  grads = {'w': jnp.array([0.1, -0.2])}
  ours = optim.make_optimizer(learning_rate=0.1, weight_decay=0.5)
  adamw = optax.adamw(0.1, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.5)
  u1, _ = ours.update(grads, ours.init(params), params)
  u2, _ = adamw.update(grads, adamw.init(params), params)
  assert not np.allclose(u1['w'], u2['w'])
