"""bench/device_check.py in its smoke budget on CPU: every section runs and
the JSON holds what the lead's accelerator run needs."""

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = [f'w{i}' for i in range(30)]


def _load():
  path = os.path.join(ROOT, 'bench', 'device_check.py')
  spec = importlib.util.spec_from_file_location('device_check', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _write_corpora(tmp_path):
  """Tiny PTB-style and DailyDialog-style corpora (deterministic)."""
  ptb, dd = tmp_path / 'ptb', tmp_path / 'dd'
  ptb.mkdir()
  dd.mkdir()
  word = lambda i, j: WORDS[(7 * i + 3 * j) % len(WORDS)]
  for split, n in (('train', 40), ('valid', 4), ('test', 8)):
    (ptb / f'{split}.txt').write_text(''.join(
        ' '.join(word(i, j) for j in range(3 + i % 14)) + '\n'
        for i in range(n)))
    (dd / f'{split}.utts.txt').write_text(''.join(
        ''.join(' '.join(word(i, t * 5 + j) for j in range(2 + (i + t) % 6))
                + ' __eou__ ' for t in range(2 + i % 3)) + '\n'
        for i in range(n)))
  return str(ptb), str(dd)


def test_smoke_budget_runs_every_section_and_writes_the_json(tmp_path):
  ptb, dd = _write_corpora(tmp_path)
  out = str(tmp_path / 'out' / 'device_check.json')
  result = _load().main([f'--ptb_dir={ptb}', f'--dd_dir={dd}', f'--out={out}',
                         '--budget=smoke'])
  with open(out) as f:
    written = json.load(f)
  assert written == json.loads(json.dumps(result))
  env = written['env']
  assert env['backend'] == 'cpu' and env['budget'] == 'smoke'
  assert {'jax', 'devices', 'default_matmul_precision'} <= set(env)
  sections = written['sections']
  assert list(sections) == [
      'matmul_peak', 'train/jit/float32/b8', 'train/jit/bfloat16/b8',
      'train/pmap/float32/b8', 'train/jit/float32/b8/other_output_layer',
      'iwnll/float32', 'dialogue/float32',
      'iwnll/bfloat16', 'dialogue/bfloat16']
  errors = {k: v['error'] for k, v in sections.items() if 'error' in v}
  assert not errors, errors
  for name, r in sections.items():
    if name.startswith('train/'):
      assert r['timed_steps'] == 2 and r['step_ms'] > 0
      assert r['sentences_per_s'] > 0 and r['warmup_s'] > 0
    if name.startswith('iwnll/'):
      assert r['sentences'] == 6 and r['samples'] == 8
      assert r['nll_per_sentence'] > 0
    if name.startswith('dialogue/'):
      assert r['contexts'] == 6 and r['contexts_per_s'] > 0
  assert sections['train/pmap/float32/b8']['devices'] == 4  # conftest's.
  # On CPU the default output layer is the fused one; the check also times
  # the other path.
  assert sections['train/jit/float32/b8']['output_layer'] == 'affine (fused)'
  assert (sections['train/jit/float32/b8/other_output_layer']['output_layer']
          == 'x @ W + b')


def test_failing_section_is_recorded_and_the_rest_still_run(tmp_path):
  ptb, _ = _write_corpora(tmp_path)
  out = str(tmp_path / 'device_check.json')
  result = _load().main([f'--ptb_dir={ptb}', f'--dd_dir={tmp_path}/missing',
                         f'--out={out}', '--budget=smoke',
                         '--sections=matmul_peak,dialogue/float32'])
  sections = result['sections']
  assert list(sections) == ['matmul_peak', 'dialogue/float32']
  assert 'error' not in sections['matmul_peak']
  assert 'missing' in sections['dialogue/float32']['error']
  with open(out) as f:
    assert json.load(f)['sections'].keys() == sections.keys()
