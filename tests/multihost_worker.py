"""One process of the multi-host test (tests/multihost_test.py).

  python tests/multihost_worker.py PORT PROCESS_ID NUM_PROCESSES WORKDIR OUT

Joins a JAX cluster on 127.0.0.1 with 2 CPU devices per process (gloo
collectives), then (1) runs 3 pmap-ed train steps by hand, each process
feeding its own rows of every global batch, and saves its parameters to OUT;
(2) runs `train_and_evaluate` on the shared WORKDIR, as a multi-host launch
would.
"""

import os
import sys

import jax

jax.config.update('jax_num_cpu_devices', 2)
jax.config.update('jax_cpu_collectives_implementation', 'gloo')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # pylint: disable=g-import-not-at-top

from tests import multihost_test  # pylint: disable=g-import-not-at-top
from tests import train_test  # pylint: disable=g-import-not-at-top
from twr_jax import train  # pylint: disable=g-import-not-at-top
from twr_jax.core import parallel  # pylint: disable=g-import-not-at-top


def main(port, process_id, num_processes, workdir, out):
  jax.distributed.initialize(
      coordinator_address=f'127.0.0.1:{port}', num_processes=num_processes,
      process_id=process_id)
  assert jax.device_count() == 2 * num_processes
  params = train_test.run_steps(multihost_test.config(), num_steps=3)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  np.savez(out, **{jax.tree_util.keystr(k): v for k, v in flat})
  train.train_and_evaluate(multihost_test.config(), workdir)
  assert parallel.make_layout('auto').mode == 'pmap'
  jax.distributed.shutdown()


if __name__ == '__main__':
  main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
       sys.argv[5])
