"""Multi-host training: 2 processes x 2 CPU devices equal 1 process x 4.

Starts two worker processes that join a JAX cluster on 127.0.0.1 through
`jax.distributed.initialize` (gloo CPU collectives) and train the tiny config;
each feeds its own rows of every global batch. Both must end with the
parameters of the single-process 4-device run, and the multi-host
`train_and_evaluate` must write the checkpoint the 4-device run writes.
"""

import os
import socket
import subprocess
import sys

import chex
import jax
import numpy as np

from tests import train_test

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config():
  """The tiny config with one padded length. Both processes compile every
  program at once and find nothing cached, so each extra shape costs twice."""
  return train_test.tiny_config(**train_test.ONE_BUCKET)


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_equal_one_process_with_four_devices(tmp_path):
  port = _free_port()
  shared = str(tmp_path / 'multihost')
  outs = [str(tmp_path / f'params{i}.npz') for i in range(2)]
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  # Each worker sets its own device count; other flags (conftest's) stay.
  env['XLA_FLAGS'] = ' '.join(
      f for f in env.get('XLA_FLAGS', '').split()
      if not f.startswith('--xla_force_host_platform_device_count'))
  procs = [subprocess.Popen(
      [sys.executable, os.path.join(ROOT, 'tests', 'multihost_worker.py'),
       str(port), str(i), '2', shared, outs[i]],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(2)]
  logs = []
  for p in procs:
    try:
      logs.append(p.communicate(timeout=600)[0])
    finally:
      p.kill()
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-4000:]

  # (1) The hand-run steps: both processes hold the 4-device parameters.
  want = train_test.run_steps(config(), num_steps=3)
  flat = {jax.tree_util.keystr(k): v
          for k, v in jax.tree_util.tree_flatten_with_path(want)[0]}
  for out in outs:
    got = dict(np.load(out))
    assert got.keys() == flat.keys()
    chex.assert_trees_all_close(got, flat, atol=1e-5, rtol=1e-5)

  # (2) train_and_evaluate across hosts writes the 4-device run's checkpoint.
  single = str(tmp_path / 'single')
  c = config()
  from twr_jax import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(c, single)
  (p_multi, s_multi), (p_single, s_single) = (
      train_test.final_params(c, w) for w in (shared, single))
  assert s_multi == s_single == c.train.num_steps
  chex.assert_trees_all_close(p_multi, p_single, atol=1e-5, rtol=1e-5)
