"""host_memory.keep_freed_memory: repeated XLA:CPU calls stop page-faulting.

Each case runs in a fresh interpreter: the malloc setting is process-wide and
must precede the first JAX computation.
"""

import json
import os
import subprocess
import sys

import pytest

from twr_jax.core import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# Median minor page faults per call of a jitted function whose 64 MiB
# intermediate tanh(a @ b) is allocated, written and freed by XLA each call.
_SCRIPT = """
import json, resource, sys
from twr_jax.core import host_memory
applied = host_memory.keep_freed_memory() if sys.argv[1] == 'keep' else None
import jax, jax.numpy as jnp
a = jnp.ones((2048, 64), jnp.float32)
b = jnp.ones((64, 8192), jnp.float32)
f = jax.jit(lambda a, b: jnp.tanh(a @ b) @ b.T)  # tanh(a @ b): [2048, 8192].
for _ in range(10):  # The heap grows for the first few calls.
  f(a, b).block_until_ready()
faults = []
for _ in range(10):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(a, b).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
# The median: a later call may still grow the heap once.
faults = sorted(faults)[5]
print(json.dumps(dict(applied=applied, faults_per_call=faults)))
"""


def _faults_per_call(mode: str) -> dict:
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  env.pop('GLIBC_TUNABLES', None)
  if mode == 'tunables':  # How the benchmarks start torch.
    env['GLIBC_TUNABLES'] = host_memory.GLIBC_TUNABLES
  out = subprocess.run([sys.executable, '-c', _SCRIPT, mode], check=True,
                       capture_output=True, text=True, env=env, cwd=ROOT)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def default_faults():
  default = _faults_per_call('default')['faults_per_call']
  if default < 4096:  # 64 MiB is 16,384 4-KiB pages.
    pytest.skip('this machine does not fault freed buffers in again '
                f'({default} faults per call)')
  return default


def test_keep_freed_memory_stops_page_faults_per_call(default_faults):
  keep = _faults_per_call('keep')
  assert keep['applied'] is True
  assert keep['faults_per_call'] < default_faults / 20, (default_faults, keep)


def test_glibc_tunables_give_a_new_process_the_same_setting(default_faults):
  tunables = _faults_per_call('tunables')
  assert tunables['faults_per_call'] < default_faults / 20, (
      default_faults, tunables)
