"""Writes results/<dataset>.md from a trained and evaluated dialogue workdir.

  python bench/dialogue_report.py --workdir=DD_RUN [--dataset=dailydialog]
      [--split=test] [--run_info=info.json] [--examples=12]
  python bench/dialogue_report.py --workdir=SW_RUN --dataset=switchboard

Reads W/eval_<split>.json and W/samples_<split>.jsonl (`launch.evaluate`),
W/metrics.jsonl and W/config.json (`launch.train`) and puts, in one Markdown
file: both metric modes (SPEC B.7 `paper`, B.8 `standard`) beside the paper's
Table 5 TWR-VAE column (SPEC E), the training budget (steps, epochs, KL weight,
the last losses), commands and wall times, and `--examples` sampled
responses with their contexts (evenly spaced over the split, so the choice
is reproducible).

--run_info names a small JSON file that the person who ran the training
writes, all keys optional:

  {"commands": ["python -m launch.train ...", "python -m launch.evaluate ..."],
   "wall_seconds": {"train": 7260, "evaluate": 410},
   "machine": "2-core CPU, load 2.1",
   "notes": "stopped after 3 epochs (time budget)"}

Without it, the commands are rebuilt from the workdir's config, the training
time is summed from metrics.jsonl's logged windows (train steps only) and the
evaluation's from eval_<split>.json.
"""

import json
import os
import sys

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# SPEC E, Table 5, TWR-VAE columns (test, 10 responses per context).
PAPER_TABLE5 = {
    'switchboard': {
        'bleu_recall': 0.395, 'bleu_precision': 0.258, 'bleu_f1': 0.312,
        'bow_average': 0.921, 'bow_extrema': 0.654, 'bow_greedy': 0.900,
        'intra_dist1': 0.860, 'intra_dist2': 0.849, 'inter_dist1': 0.470,
        'inter_dist2': 0.766},
    'dailydialog': {
        'bleu_recall': 0.407, 'bleu_precision': 0.281, 'bleu_f1': 0.333,
        'bow_average': 0.952, 'bow_extrema': 0.603, 'bow_greedy': 0.865,
        'intra_dist1': 0.921, 'intra_dist2': 0.990, 'inter_dist1': 0.497,
        'inter_dist2': 0.817},
}
DATASETS = tuple(PAPER_TABLE5)

# (label, paper-section key, standard-section key or None).
ROWS = (
    ('BLEU-R', 'bleu_recall', 'bleu_recall'),
    ('BLEU-P', 'bleu_precision', 'bleu_precision'),
    ('BLEU-F1', 'bleu_f1', 'bleu_f1'),
    ('BOW-A', 'bow_average', 'bow_average'),
    ('BOW-E', 'bow_extrema', 'bow_extrema'),
    ('BOW-G', 'bow_greedy', 'bow_greedy'),
    ('Intra-dist1', 'intra_dist1', None),
    ('Intra-dist2', 'intra_dist2', None),
    ('Inter-dist1', 'inter_dist1', 'distinct1'),
    ('Inter-dist2', 'inter_dist2', 'distinct2'),
    ('multi-ref BLEU-R', 'bleu_multi_recall', 'bleu_multi_recall'),
    ('multi-ref BLEU-P', 'bleu_multi_precision', 'bleu_multi_precision'),
    ('multi-ref BLEU-F1', 'bleu_multi_f1', 'bleu_multi_f1'),
    ('avg_len', 'avg_len', 'avg_len'),
)

flags.DEFINE_string('workdir', None, 'Trained and evaluated dialogue workdir.')
flags.DEFINE_enum('dataset', 'dailydialog', list(DATASETS),
                  'Which Table 5 column; names results/<dataset>.md.')
flags.DEFINE_string('split', 'test', 'Evaluated split (eval_<split>.json).')
flags.DEFINE_string('run_info', None, 'JSON with commands and wall times.')
flags.DEFINE_integer('examples', 12, 'Sampled contexts to show (>= 0).')
flags.DEFINE_string('out', None, 'Output file; default results/<dataset>.md.')


class ReportError(ValueError):
  """A file the report needs is missing or malformed."""


def _read_json(path: str):
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except FileNotFoundError:
    raise ReportError(f'{path}: not found') from None
  except json.JSONDecodeError as e:
    raise ReportError(f'{path}: invalid JSON ({e})') from None


def _read_jsonl(path: str) -> list:
  rows = []
  try:
    with open(path, encoding='utf-8') as f:
      for number, line in enumerate(f, start=1):
        if line.strip():
          try:
            rows.append(json.loads(line))
          except json.JSONDecodeError as e:
            raise ReportError(f'{path}:{number}: invalid JSON ({e})') from None
  except FileNotFoundError:
    raise ReportError(f'{path}: not found') from None
  return rows


def _fmt(value) -> str:
  return f'{value:.3f}' if isinstance(value, (int, float)) else '—'


def _duration(seconds) -> str:
  if not isinstance(seconds, (int, float)):
    return str(seconds)
  m, s = divmod(int(round(seconds)), 60)
  h, m = divmod(m, 60)
  return f'{h}h {m:02d}m {s:02d}s' if h else f'{m}m {s:02d}s'


def train_seconds(train: list[dict]) -> float | None:
  """Training time from metrics.jsonl: the sum over the logged windows of
  contexts / contexts-per-second, i.e. time spent in train steps (compiles
  included; evaluations and checkpoints excluded, as the loop times them).
  A step logged twice (a resumed run redoing steps after its last
  checkpoint) counts once, its last record."""
  windows = {r['step']: r for r in train
             if r.get('sentences') and r.get('sentences_per_s')}
  if not windows:
    return None
  return sum(r['sentences'] / r['sentences_per_s'] for r in windows.values())


def budget(config: dict, metrics: list[dict]) -> dict:
  """Steps, epochs, training time and the last logged losses from
  metrics.jsonl."""
  train = [r for r in metrics if r.get('split') == 'train']
  last = train[-1] if train else {}
  evals = {r['split']: r for r in metrics if r.get('split') in ('valid',
                                                               'test')}
  return dict(
      steps=last.get('step'), epochs=last.get('epoch'),
      batch_size=config.get('train', {}).get('batch_size'),
      beta=last.get('beta'), train_loss=last.get('loss'),
      train_contexts_per_s=last.get('sentences_per_s'),
      train_seconds=train_seconds(train),
      valid=evals.get('valid'), test=evals.get('test'))


def pick_examples(samples: list[dict], count: int) -> list[dict]:
  """`count` rows evenly spaced over the split (all if fewer)."""
  if count <= 0 or not samples:
    return []
  if count >= len(samples):
    return samples
  step = len(samples) / count
  return [samples[int(i * step)] for i in range(count)]


def render(workdir: str, dataset: str, split: str, result: dict,
           samples: list[dict], config: dict, metrics: list[dict],
           info: dict, num_examples: int) -> str:
  """The Markdown report."""
  paper_numbers = PAPER_TABLE5[dataset]
  b = budget(config, metrics)
  name = {'dailydialog': 'DailyDialog', 'switchboard': 'Switchboard'}[dataset]
  variant = result.get('variant') or config.get('variant')
  lines = [f'# {name}: TWR-VAE response generation (paper Table 5)', '']
  epochs = b['epochs']
  lines.append(
      f"Budget: **{b['steps']} steps** of batch {b['batch_size']}"
      + (f' (**{epochs:.2f} epochs**)' if isinstance(epochs, (int, float))
         else '')
      + f", variant `:{variant}`, checkpoint `{result.get('checkpoint')}`"
      f" (step {result.get('step')}). The original trains up to 500 epochs and"
      ' reports (probably) the best of its per-epoch test evaluations (SPEC'
      ' B.8), so these numbers are from a much shorter budget.')
  if b['beta'] is not None:
    lines[-1] += f" KL weight at the last step: {b['beta']:.3f}."
  lines += ['', (
      f"Evaluated on the {split} set: {result.get('num_contexts')} contexts x"
      f" {result.get('num_samples')} responses (greedy from prior samples,"
      f" at most {result.get('max_len')} tokens, SPEC B.6). Word vectors for"
      f" BOW: `{result.get('word_vectors')}`."), '']
  lines += [
      '`paper` (SPEC B.7): the original arithmetic (DialogWAE `Metrics`,'
      ' NLTK 3.5 BLEU with `</s>` on both sides, BOW with the extrema bug and'
      ' unmasked greedy, per-context inter-dist) — the mode to set beside'
      ' Table 5.',
      '`standard` (SPEC B.8): the same quantities with those quirks fixed;'
      ' Inter-dist is corpus-level distinct-n there.', '']
  lines += ['## Metrics', '',
            '| metric | paper Table 5 (TWR-VAE) | ours, `paper` mode |'
            ' ours, `standard` mode |', '|---|---|---|---|']
  paper, standard = result.get('paper', {}), result.get('standard', {})
  for label, pkey, skey in ROWS:
    if pkey not in paper and (skey is None or skey not in standard):
      continue
    std = _fmt(standard.get(skey)) if skey else '—'
    if skey and skey.startswith('distinct'):
      std += ' (corpus)'
    lines.append(f'| {label} | {_fmt(paper_numbers.get(pkey))} |'
                 f' {_fmt(paper.get(pkey))} | {std} |')
  if isinstance(paper.get('bow'), str):
    lines += ['', f"BOW: {paper['bow']}."]
  if b['valid'] or b['test']:
    lines += ['', '## Losses at the end of training', '',
              '| split | loss | rec | KL | PPL |',
              '|---|---|---|---|---|']
    for split_name in ('valid', 'test'):
      r = b[split_name]
      if r:
        lines.append(f"| {split_name} | {_fmt(r.get('loss'))} |"
                     f" {_fmt(r.get('rec'))} | {_fmt(r.get('kl'))} |"
                     f" {_fmt(r.get('ppl'))} |")

  lines += ['', '## Commands and wall times', '']
  commands = info.get('commands') or [
      f"python -m launch.train --config=configs/{dataset}.py:{variant}"
      f" --config.data.dir={config.get('data', {}).get('dir')}"
      f' --workdir={workdir}',
      f'python -m launch.evaluate --workdir={workdir} --split={split}',
      f'python bench/dialogue_report.py --workdir={workdir}'
      f' --dataset={dataset}']
  lines += ['```'] + list(commands) + ['```', '']
  walls = dict(info.get('wall_seconds') or {})
  if 'train' not in walls and b['train_seconds']:
    walls['train (train steps summed from metrics.jsonl; evaluations and'
          ' checkpoints excluded)'] = b['train_seconds']
  if 'evaluate' not in walls and 'sample_seconds' in result:
    walls['evaluate (from eval json: sampling + metrics)'] = (
        result['sample_seconds'] + result.get('metric_seconds', 0.0))
  for label, seconds in walls.items():
    lines.append(f'- {label}: {_duration(seconds)}')
  if b['train_contexts_per_s']:
    lines.append(f"- training speed at the last log: "
                 f"{b['train_contexts_per_s']:.1f} contexts/s")
  if info.get('machine'):
    lines.append(f"- machine: {info['machine']}")
  if info.get('notes'):
    lines += ['', str(info['notes'])]

  chosen = pick_examples(samples, num_examples)
  if chosen:
    lines += ['', f'## {len(chosen)} sampled contexts', '',
              f'Evenly spaced over the {len(samples)} {split} contexts;'
              ' context turns oldest first (`<d>`: the start of the'
              ' dialogue), then the true response and the sampled ones.']
    for row in chosen:
      lines += ['', f"**context {row.get('index')}** (dialogue"
                f" {row.get('dialogue')}, turn {row.get('turn')})", '']
      lines += [f'> {turn}  ' for turn in row.get('context', [])]
      lines += ['', f"- reference: {row.get('reference')}"]
      lines += [f'- sample {k}: {text or "(empty)"}'
                for k, text in enumerate(row.get('responses', []), start=1)]
  return '\n'.join(lines) + '\n'


def write_report(workdir: str, dataset: str = 'dailydialog',
                 split: str = 'test', run_info: str | None = None,
                 examples: int = 12, out: str | None = None) -> str:
  """Reads the workdir's files, writes the report; returns its path."""
  if dataset not in PAPER_TABLE5:
    raise ReportError(f'dataset={dataset!r}: must be one of'
                      f' {", ".join(DATASETS)}')
  if examples < 0:
    raise ReportError(f'examples={examples}: must be >= 0')
  result = _read_json(os.path.join(workdir, f'eval_{split}.json'))
  if 'paper' not in result:
    raise ReportError(f'{workdir}/eval_{split}.json: not a dialogue'
                      ' evaluation (no paper section)')
  samples = _read_jsonl(os.path.join(workdir, f'samples_{split}.jsonl'))
  config = _read_json(os.path.join(workdir, 'config.json'))
  metrics = _read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  info = _read_json(run_info) if run_info else {}
  if not isinstance(info, dict):
    raise ReportError(f'{run_info}: expected a JSON object')
  text = render(workdir, dataset, split, result, samples, config, metrics,
                info, examples)
  out = out or os.path.join(ROOT, 'results', f'{dataset}.md')
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out + '.tmp', 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(out + '.tmp', out)
  return out


def main(argv):
  del argv
  f = flags.FLAGS
  try:
    path = write_report(f.workdir, f.dataset, f.split, f.run_info, f.examples,
                        f.out)
  except ReportError as e:
    sys.exit(f'dialogue_report: {e}')
  print('wrote', path)


if __name__ == '__main__':
  flags.mark_flag_as_required('workdir')
  app.run(main)
