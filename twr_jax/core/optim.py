"""The optimiser: Adam with coupled L2 weight decay (SPEC A.6).

torch.optim.Adam(weight_decay=wd) adds wd * param to the gradient *before* the
moment estimates, for every parameter (biases and embeddings too). That is
`add_decayed_weights` ahead of `scale_by_adam`, not optax.adamw (which decouples
the decay). Optional gradient clipping comes first, as with
torch.nn.utils.clip_grad_norm_ before optimizer.step().
"""

import jax
import optax



def make_optimizer(
    learning_rate: float = 1e-4,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: float = 1e-5,
    grad_clip_norm: float | None = None,
) -> optax.GradientTransformation:
  """Returns Adam with coupled L2 decay, equal to torch.optim.Adam's update.

  Args:
    learning_rate, b1, b2, eps: Adam's hyper-parameters (paper: 1e-4, 0.9,
      0.999, 1e-6).
    weight_decay: coupled L2 coefficient (paper 1e-5).
    grad_clip_norm: clip the global gradient norm to this value; None (the
      paper's setting) disables clipping.
  """
  parts = []
  if grad_clip_norm is not None:
    parts.append(optax.clip_by_global_norm(grad_clip_norm))
  if weight_decay:
    parts.append(optax.add_decayed_weights(weight_decay))
  parts += [optax.scale_by_adam(b1=b1, b2=b2, eps=eps), optax.scale(-learning_rate)]
  return optax.chain(*parts)


def applied_twice(
    tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx` applied two times in a row with the same gradient.

  What torch.optim does to a parameter listed twice in its parameter groups:
  the second update sees the parameter after the first (so the coupled L2
  term differs), the same gradient, and Adam's moments and step count
  advanced once more.
  """

  def update(grads, state, params=None):
    first, state = tx.update(grads, state, params)
    if params is not None:
      params = optax.apply_updates(params, first)
    second, state = tx.update(grads, state, params)
    return jax.tree_util.tree_map(lambda a, b: a + b, first, second), state

  return optax.GradientTransformation(tx.init, update)


def double_update(tx: optax.GradientTransformation,
                  twice: str) -> optax.GradientTransformation:
  """`tx`, but applied twice per step to the top-level parameter `twice`.

  The released dialogue code hands its shared embedding to Adam twice (SPEC
  B.5); this reproduces that for the compat variant.
  """
  labels = lambda params: {k: 'twice' if k == twice else 'once' for k in params}
  return optax.multi_transform(
      {'once': tx, 'twice': applied_twice(tx)}, labels)


def optimizer_from_config(config) -> optax.GradientTransformation:
  """Builds the optimiser from `config.train` (a task may wrap it: the
  lagging baseline, `lm.task.optimizer`)."""
  t = config.train
  tx = make_optimizer(t.learning_rate, t.b1, t.b2, t.eps, t.weight_decay,
                      t.grad_clip_norm)
  if t.get('double_update_embedding', False):
    tx = double_update(tx, 'embed')
  return tx
