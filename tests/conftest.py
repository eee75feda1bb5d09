"""Test setup: 4 fake CPU devices, so that pmap code runs in every CI run.

The device count must be set before JAX initialises its backend, i.e. before
any test module touches a device; conftest is imported first.

Compilation dominates the suite's time (a tiny model's end-to-end run compiles
about 60 programs, 2-5 s each on XLA:CPU), and many tests compile the same
programs again. So the session shares one JAX persistent compilation cache
(in a temporary folder, removed at the end; xdist workers and the launcher
subprocesses inherit it through the environment), and XLA:CPU compiles with
LLVM's optimisation level 0 (2-3x faster compiles; the tiny test programs run
no slower to matter). Level 0 may round differently in the last bit from the
default level; tests that compare two runs bitwise run both under this one
setting, and no test compares against numbers from another setting bitwise.
"""

import os
import shutil
import sys
import tempfile

# Set before JAX is imported: JAX reads these variables at import, and the
# launcher subprocesses of the tests inherit them.
_CACHE_ENV = 'TWR_JAX_TEST_SESSION_CACHE'
_OWNS_CACHE = _CACHE_ENV not in os.environ  # False in an xdist worker.
if _OWNS_CACHE:
  os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix='twr_jax_test_cache_')
os.environ['JAX_COMPILATION_CACHE_DIR'] = os.environ[_CACHE_ENV]
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
os.environ['XLA_FLAGS'] = ' '.join(filter(None, [
    os.environ.get('XLA_FLAGS'), '--xla_backend_optimization_level=0']))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update('jax_num_cpu_devices', 4)
jax.config.update('jax_platforms', 'cpu')
# twr_jax/compile_cache.py's own cache stays off (its default is in the home
# folder); the launchers find JAX's variable above and leave it to JAX.
os.environ['TWR_JAX_CACHE_DIR'] = ''

# The repository root, so that tests can import `configs` and `launch`.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def pytest_unconfigure(config):
  """Removes the session's compilation cache (in the process that made it)."""
  del config  # Unused.
  if _OWNS_CACHE:
    shutil.rmtree(os.environ[_CACHE_ENV], ignore_errors=True)
