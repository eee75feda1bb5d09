"""Test setup: 4 fake CPU devices, so that pmap code runs in every CI run.

The device count must be set before JAX initialises its backend, i.e. before
any test module touches a device; conftest is imported first.
"""

import os
import sys

import jax

jax.config.update('jax_num_cpu_devices', 4)
jax.config.update('jax_platforms', 'cpu')
# No persistent compilation cache in tests (twr_jax/compile_cache.py): the
# launchers and the notebook they start must not write to the home folder.
os.environ['TWR_JAX_CACHE_DIR'] = ''

# The repository root, so that tests can import `configs` and `launch`.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
