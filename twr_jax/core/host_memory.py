"""Host memory: keep freed malloc blocks mapped, so XLA:CPU steps reuse them.

Why: XLA:CPU allocates each execution's buffers with malloc and frees them when
the step ends (the logits <f32>[B, T, V] alone are 79 MB at paper size). glibc
serves blocks above its mmap threshold with fresh `mmap`s and gives them back
with `munmap`, so every step first-touches its whole working set again: a PTB
train step at paper size took ~84,000 page faults (~340 MB of new zeroed
pages), about a quarter of its time. With one malloc arena, no mmap for large
blocks and no trimming, freed buffers are reused in place: after the heap has
grown over the first few steps, 0 faults per step and ~1.35x the sentences/s
(bench/train_throughput.py, BUILD_NOTES "Speed").
PyTorch's CPU tensors come from the same malloc and gain as much from the same
setting, so the benchmarks apply it to both sides (`GLIBC_TUNABLES` below).

The cost: the process keeps its peak host memory until it exits (a PTB run:
2.25 instead of 1.72 GB peak RSS). Only glibc
has `mallopt`; elsewhere (macOS, musl) nothing changes. Accelerator (GPU/TPU)
buffers do not use malloc and are unaffected.
"""

import ctypes
import ctypes.util

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# mallopt takes a C int: freed memory at the top of the heap is returned to
# the system only beyond 2 GiB.
_TRIM_THRESHOLD = 2**31 - 1

# The same setting for a process started from a shell (read by glibc at start).
GLIBC_TUNABLES = ('glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:'
                  f'glibc.malloc.trim_threshold={_TRIM_THRESHOLD}')


def keep_freed_memory() -> bool:
  """Makes malloc keep and reuse freed memory (see the module docstring).

  Call it before the first JAX computation: threads that already own a malloc
  arena keep it (the launchers call it first thing in `main`). Process-wide
  and irreversible.

  Returns:
    True if glibc accepted all three settings, False where there is no glibc
    `mallopt` (nothing changed).
  """
  name = ctypes.util.find_library('c')
  try:
    mallopt = ctypes.CDLL(name).mallopt
  except (OSError, AttributeError, TypeError):
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  return all(mallopt(param, value) == 1 for param, value in (
      (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0),
      (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)))
