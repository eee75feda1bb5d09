"""Runs notebooks/colab_tpu.ipynb top to bottom in its TINY mode.

The notebook executes in a separate Jupyter kernel (this venv's `python3`),
configured through the environment variables its parameters cell reads. That
kernel is a new process, so it sees one CPU device, not conftest's four.
"""

import json
import os
import pathlib

from jupyter_client import kernelspec
import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / 'notebooks' / 'colab_tpu.ipynb'
PTB_DIR = ROOT.parent / 'shared' / 'data' / 'ptb'
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def test_committed_notebook_has_no_outputs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert [c for c in code if c.outputs or c.execution_count] == []
  assert 'parameters' in code[0].metadata.get('tags', [])


def assert_png(path: pathlib.Path):
  assert path.is_file(), f'{path} not written'
  assert path.read_bytes()[:8] == PNG_MAGIC, f'{path} is not a PNG'


def assert_eval_json(path: pathlib.Path, iw_samples: int):
  result = json.loads(path.read_text())
  assert set(result) >= {'standard', 'paper', 'step', 'split'}
  standard = result['standard']
  assert standard['iw_samples'] == iw_samples
  for key in ('iw_nll', 'nll_elbo', 'kl', 'mi', 'ppl'):
    assert isinstance(standard[key], float), key
  assert len(standard['kl_profile']['bins']) == len(
      standard['kl_profile']['kl'])
  assert isinstance(result['paper']['nll'], float)


def test_notebook_runs_in_tiny_mode(tmp_path, monkeypatch):
  assert 'python3' in kernelspec.find_kernel_specs()
  has_ptb = (PTB_DIR / 'train.txt').is_file()
  for name, value in {
      'TWR_JAX_TINY': '1',
      'TWR_JAX_REPO': str(ROOT),
      'TWR_JAX_WORKDIR': str(tmp_path),
      'TWR_JAX_PTB_DIR': str(PTB_DIR) if has_ptb else '',
      'JAX_PLATFORMS': 'cpu',
  }.items():
    monkeypatch.setenv(name, value)

  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
      nb, kernel_name='python3', timeout=600,
      resources={'metadata': {'path': str(NOTEBOOK.parent)}})
  client.execute()  # Raises CellExecutionError if a cell fails.

  errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs
            if o.output_type == 'error']
  assert errors == []
  images = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs
            if 'image/png' in o.get('data', {})]
  assert len(images) >= 3

  syn = tmp_path / 'synthetic_twr_tiny'
  for name in ('training_curves.png', 'kl_profile.png', 'interpolation.png'):
    assert_png(syn / name)
  assert_eval_json(syn / 'eval_test.json', iw_samples=5)
  interp = json.loads((syn / 'interpolation.json').read_text())
  assert interp['pairs'] == 3 and len(interp['examples']) == 3

  if not has_ptb:
    pytest.skip(f'{PTB_DIR} not found: the PTB section was skipped')
  ptb = tmp_path / 'ptb_twr_tiny'
  assert_eval_json(ptb / 'eval_test.json', iw_samples=5)
  assert_png(ptb / 'training_curves.png')
  assert_png(ptb / 'kl_profile_test.png')
