"""Device layout: the one module that knows about devices and processes.

Step functions elsewhere are written for one device; the only parallel-aware
thing they do is a collective over `AXIS` when given an axis name. This module
compiles them either with `jax.pmap` over all local devices (the batch split
into [devices, per_device, ...], parameters replicated, collectives over every
device of every process) or, on a single device, with plain `jax.jit`, which
skips pmap's per-call overhead (measured in bench/pmap_vs_jit.py).

Multi-host: every process runs the same program on its own rows of each global
batch (`process_rows`); pmap's collectives then span all processes.
"""

import dataclasses
from typing import Any, Callable

import flax.jax_utils
import jax
import numpy as np

AXIS = 'batch'
MODES = ('auto', 'pmap', 'jit')


@dataclasses.dataclass(frozen=True)
class Layout:
  """How arrays are laid out over the local devices.

  Attributes:
    mode: 'pmap' (leading device axis everywhere) or 'jit' (one device).
    num_devices: local devices used.
  """

  mode: str
  num_devices: int

  @property
  def axis_name(self) -> str | None:
    """The collective axis the step functions reduce over (None under jit)."""
    return AXIS if self.mode == 'pmap' else None

  def compile(self, fn: Callable, num_args: int, *, broadcast_argnums=(),
              donate_argnums=()) -> Callable:
    """Compiles `fn(*args, axis_name=...)` for this layout.

    Args:
      fn: a step function taking `num_args` positional arguments and
        `axis_name` as a keyword.
      num_args: how many positional arguments it takes.
      broadcast_argnums: arguments that are the same on every device (keys,
        scalars) and are not replicated by the caller.
      donate_argnums: arguments whose buffers may be reused (the train state).
    """
    bound = lambda *args: fn(*args, axis_name=self.axis_name)
    if self.mode == 'jit':
      return jax.jit(bound, donate_argnums=donate_argnums)
    in_axes = tuple(
        None if i in broadcast_argnums else 0 for i in range(num_args)
    )
    return jax.pmap(bound, axis_name=AXIS, in_axes=in_axes,
                    donate_argnums=donate_argnums)

  def replicate(self, tree: Any) -> Any:
    """Puts a host pytree on the devices (one copy each under pmap)."""
    if self.mode == 'jit':
      return jax.device_put(tree)
    devices = jax.local_devices()[: self.num_devices]
    tree = flax.jax_utils.replicate(tree, devices)
    # Newer JAX runs pmap through shard_map: its outputs' sharding names the
    # pmap axis, and a step fed inputs with another sharding (replicate's) is
    # compiled again on its second call. Passing the state through an
    # identity pmap once gives it the outputs' sharding: one compile per
    # shape instead of two (at paper size, tens of seconds per run). No
    # `devices`: like the steps `compile` builds (and valid multi-host).
    return jax.pmap(lambda x: x, axis_name=AXIS)(tree)

  def unreplicate(self, tree: Any) -> Any:
    """Fetches one copy of a replicated pytree to host NumPy arrays."""
    if self.mode == 'jit':
      return jax.device_get(tree)
    # This process's first device holds a full copy. Indexing x[0] instead
    # would address global device 0, which on other hosts is a cross-process
    # read that can deadlock against the next collective.
    return jax.tree_util.tree_map(
        lambda x: _local_blocks(x)[0].reshape(x.shape[1:]), tree)

  def shard(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Splits a process's batch [B, ...] into [devices, B / devices, ...]."""
    if self.mode == 'jit':
      return batch
    n = self.num_devices

    def split(x):
      if x.shape[0] % n:
        raise ValueError(
            f'batch of {x.shape[0]} rows cannot be split over {n} devices;'
            ' choose a batch size divisible by the device count'
        )
      return x.reshape((n, x.shape[0] // n) + x.shape[1:])

    return jax.tree_util.tree_map(split, batch)

  def unshard(self, tree: Any) -> Any:
    """Inverse of `shard`: this process's per-example outputs, on the host."""
    if self.mode == 'jit':
      return jax.device_get(tree)
    return jax.tree_util.tree_map(
        lambda x: np.concatenate(
            [b.reshape((-1,) + x.shape[2:]) for b in _local_blocks(x)]), tree)

  def first(self, tree: Any) -> Any:
    """Fetches reduced (identical on all devices) step outputs to the host."""
    return self.unreplicate(tree)


def _local_blocks(x: jax.Array) -> list[np.ndarray]:
  """This process's per-device blocks of a pmap output, in local order."""
  if not isinstance(x, jax.Array):
    return list(np.asarray(x))
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  return [np.asarray(s.data) for s in shards]


def make_layout(mode: str = 'auto') -> Layout:
  """Chooses the layout: pmap over several local devices, jit on one.

  Args:
    mode: 'auto' (pmap when there is more than one local device or more than
      one process, jit otherwise), 'pmap' or 'jit' (single device only).
  """
  if mode not in MODES:
    raise ValueError(f'parallel mode must be one of {MODES}, got {mode!r}')
  n = jax.local_device_count()
  if mode == 'auto':
    mode = 'pmap' if n > 1 or jax.process_count() > 1 else 'jit'
  if mode == 'jit':
    if jax.process_count() > 1:
      raise ValueError('parallel=jit runs on one device; use pmap for multi-host')
    n = 1
  return Layout(mode=mode, num_devices=n)


def process_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """This process's contiguous share of a global batch (multi-host input)."""
  p, count = jax.process_index(), jax.process_count()
  if count == 1:
    return batch

  def take(x):
    if x.shape[0] % count:
      raise ValueError(
          f'global batch of {x.shape[0]} rows cannot be split over {count}'
          ' processes'
      )
    per = x.shape[0] // count
    return x[p * per : (p + 1) * per]

  return jax.tree_util.tree_map(take, batch)
