"""JAX's persistent compilation cache, switched on by the launchers.

Every padded length compiles the train step once (tens of seconds each at
paper size), and every resumed or evaluating process used to pay that again.
With the cache, XLA executables are stored on disk keyed by the program, the
backend and the JAX version, and a later process with the same shapes loads
them instead of compiling.

Where (first that applies):
  * `JAX_COMPILATION_CACHE_DIR` (JAX's own variable) if set: left to JAX;
  * `$TWR_JAX_CACHE_DIR`; empty or 'off' disables the cache (the test suite
    does this, so that tests never write to the home folder);
  * the default `~/.cache/twr_jax/jax_cache`.
"""

import os

import jax

ENV = 'TWR_JAX_CACHE_DIR'
DEFAULT_DIR = os.path.join('~', '.cache', 'twr_jax', 'jax_cache')
# Programs that compile faster than this are not worth a disk round trip.
MIN_COMPILE_SECONDS = 1.0


def enable(path: str | None = None) -> str | None:
  """Turns on the persistent compilation cache (see the module docstring).

  Call it before the first compilation (the launchers do, first thing).

  Args:
    path: the cache folder; None: `$TWR_JAX_CACHE_DIR`, else the default.
      '' or 'off' disables it.

  Returns:
    The folder in use, or None when the cache stays off.
  """
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return os.environ['JAX_COMPILATION_CACHE_DIR']
  if path is None:
    path = os.environ.get(ENV, DEFAULT_DIR)
  if path in ('', 'off'):
    return None
  path = os.path.expanduser(path)
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs',
                    MIN_COMPILE_SECONDS)
  return path
