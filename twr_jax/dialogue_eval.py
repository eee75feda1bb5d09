"""The dialogue evaluation of a trained run (SPEC B.6-B.8).

For every test context: 10 responses from the prior p(z | c), greedy, up to
40 tokens, decoded for many contexts at once (one jitted `sample_responses`
call per `eval.sample_batch_size` contexts, which stops once every response
has ended; the context turns are encoded beforehand, packed by length,
`pack_utterances`); then BLEU-R/P/F1, BOW embedding
Average/Extrema/Greedy and distinct-n in two labelled sections:

  paper     the original's arithmetic (DialogWAE's Metrics with NLTK 3.5,
            SPEC B.7), to compare with the paper's Table 5;
  standard  the corrections of SPEC B.8 (no free `</s>` unigram, masked
            extrema, greedy over real words, corpus-level distinct).

`launch/evaluate.py` calls `evaluate_run` on a dialogue workdir; it writes
`eval_<split>.json` and `samples_<split>.jsonl` (context, reference, the
responses) next to the checkpoints.
"""

import json
import os
import time
from typing import Any

import jax
import numpy as np

from twr_jax import dialogue_data
from twr_jax import dialogue_metrics
from twr_jax import dialogue_model
from twr_jax import dialogue_train
from twr_jax import workdir as workdir_lib


def pack_utterances(
    model: dialogue_model.DialogTWRVAE, params,
    batches: list[dialogue_data.Batch], *, chunk: int = 2048,
    bucket: int = 8,
) -> list[np.ndarray]:
  """Encodes the real context turns of `batches`, packed by length.

  A static [B, N, U-1] batch is mostly padding for the utterance encoder
  (DailyDialog test: 51 % of the turns and 16 % of the tokens are real).
  Here every real turn (a weight-1 row's turns < num_turns) is encoded once,
  `chunk` turns a call in length order, each call trimmed to its longest
  turn rounded up to `bucket` tokens (a handful of compiled shapes). The
  encoder reads each turn's valid prefix only, so the encodings equal the
  padded ones up to float rounding.

  Returns:
    Per batch, <f32>[B, N, 2 H_u]: the encodings, zeros at padding turns
    (which the context GRU never reads).
  """
  real = [(np.arange(b['context'].shape[1])[None] < b['num_turns'][:, None])
          & (b['weights'] > 0)[:, None] for b in batches]
  tokens = np.concatenate([b['context'][m] for b, m in zip(batches, real)])
  lengths = np.concatenate([b['context_lens'][m]
                            for b, m in zip(batches, real)])
  width = tokens.shape[1]
  u = np.zeros((len(tokens), 2 * model.utt_hidden), np.float32)
  order = np.argsort(lengths, kind='stable')
  for start in range(0, len(order), chunk):
    rows = order[start:start + chunk]
    t = min(width, -(-int(lengths[rows].max()) // bucket) * bucket)
    tok = np.full((chunk, t), dialogue_data.PAD, np.int32)
    tok[:len(rows)] = tokens[rows, :t]
    lens = np.ones((chunk,), np.int32)
    lens[:len(rows)] = lengths[rows]
    u[rows] = np.asarray(dialogue_model.encode_utterances(
        model, params, tok, lens))[:len(rows)]
  out, start = [], 0
  for m in real:
    packed = np.zeros(m.shape + (u.shape[1],), np.float32)
    end = start + int(m.sum())
    packed[m], start = u[start:end], end
    out.append(packed)
  return out


def sample_examples(
    model: dialogue_model.DialogTWRVAE, params,
    examples: list[dialogue_data.Example], vocab: dialogue_data.DialogVocab,
    key: jax.Array, *, num_samples: int = 10, max_len: int = 40,
    batch_size: int = 256, window: int = 10, max_utt_len: int = 40,
    pack: bool = True, compact: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
  """Greedy prior samples for every example, `batch_size` contexts a call.

  Every call has the same static shapes (the last batch is padded), so the
  decoder compiles once. Sample k of example i depends on (key, i) only.
  With `pack`, the context turns are encoded beforehand by
  `pack_utterances` (same samples up to float rounding, much less encoder
  work); without it, each call encodes its padded batch. `compact`: see
  `dialogue_model.sample_responses`.

  Returns:
    (tokens <int32>[C, K, max_len], lengths <int32>[C, K]), see
    `dialogue_model.sample_responses`.
  """
  batches = list(dialogue_data.eval_batches(
      examples, vocab, batch_size, window=window, max_utt_len=max_utt_len))
  if pack:
    for batch, u in zip(batches, pack_utterances(model, params, batches)):
      # The encodings replace the tokens: nothing left to send per call.
      del batch['context'], batch['context_lens']
      batch['utterances'] = u
  tokens, lengths = [], []
  for batch in batches:
    out = dialogue_model.sample_responses(
        model, params, batch, key, num_samples, max_len,
        bos_id=vocab.bos_id, eos_id=vocab.eos_id, compact=compact)
    keep = batch['weights'] > 0
    t, n = jax.device_get(out)
    tokens.append(t[keep])
    lengths.append(n[keep])
  return np.concatenate(tokens), np.concatenate(lengths)


def evaluate_run(
    workdir: str, split: str = 'test', step: int | str = 'best', *,
    word_vectors: str | None = None, references: str | None = None,
    data_dir: str | None = None, num_samples: int | None = None,
    max_len: int | None = None, batch_size: int | None = None,
    max_contexts: int | None = None,
) -> dict[str, Any]:
  """Samples and scores responses for a split's contexts.

  Args:
    workdir: a dialogue training workdir.
    split: 'valid' or 'test' (the file `config.data.splits[split]`).
    step: 'best', 'last' or a step number.
    word_vectors: GloVe / word2vec text file for the BOW metrics; default
      `config.eval.word_vectors`; without one the BOW metrics are skipped
      (and the result says so).
    references: multi-reference file (JSON lines, see
      `dialogue_metrics.read_references`); default `config.eval.references`.
    data_dir: overrides `config.data.dir`.
    num_samples, max_len, batch_size: override `config.eval`'s
      num_samples, max_len and sample_batch_size.
    max_contexts: score only the first this many contexts (smoke runs),
      each with its own line of `references`, which still needs a line per
      context of the whole split.

  Returns:
    A JSON-ready dict: 'paper' and 'standard' sections, 'notes', timings
    ('sample_seconds', 'metric_seconds', 'contexts_per_s' of the whole
    evaluation) and the samples under '_samples' (written to the samples
    file, not to eval_<split>.json).
  """
  run = workdir_lib.load_run(workdir, step)
  config = run.config
  if data_dir:
    config.data.dir = data_dir
  e = config.eval
  num_samples = num_samples or e.num_samples
  max_len = max_len or e.max_len
  batch_size = batch_size or e.sample_batch_size
  word_vectors = e.word_vectors if word_vectors is None else word_vectors
  references = e.references if references is None else references
  vocab = run.vocab
  examples = dialogue_data.eval_examples(
      dialogue_train.read_split(config, split), vocab, config.data.window,
      config.data.max_utt_len)
  multi = None
  if references:
    # The file has a line per context of the whole split: check it against
    # the split before cutting both to the first `max_contexts`.
    multi = dialogue_metrics.read_references(references, len(examples))
  if max_contexts:
    examples = examples[:max_contexts]
    multi = multi[:max_contexts] if multi is not None else None

  start = time.time()
  key = jax.random.fold_in(jax.random.key(config.seed), 3)
  tokens, lengths = sample_examples(
      run.model, run.params, examples, vocab, key, num_samples=num_samples,
      max_len=max_len, batch_size=batch_size, window=config.data.window,
      max_utt_len=config.data.max_utt_len)
  sample_seconds = time.time() - start

  start = time.time()
  hypotheses = [[vocab.decode(s) for s in samples] for samples in tokens]
  refs = [vocab.decode(ex.response) for ex in examples]
  embedding = None
  if word_vectors:
    embedding = dialogue_metrics.load_word_vectors(word_vectors, vocab.tokens)
  scores = dialogue_metrics.score_responses(
      hypotheses, refs, embedding, vocab.tokens, multi_references=multi)
  metric_seconds = time.time() - start

  total = sample_seconds + metric_seconds
  samples = [
      dict(index=i, dialogue=ex.dialogue, turn=ex.turn,
           context=[' '.join(vocab.decode(t[:n])) for t, n in
                    zip(ex.context, ex.context_lens)],
           reference=' '.join(dialogue_metrics.reference_words(r)),
           responses=[' '.join(h[:n]) for h, n in zip(hyps, lens)])
      for i, (ex, r, hyps, lens) in enumerate(
          zip(examples, refs, hypotheses, lengths))
  ]
  return dict(
      workdir=os.path.abspath(workdir), split=split, step=run.step,
      checkpoint=step, variant=config.get('variant'),
      corpus=config.data.format, num_samples=num_samples, max_len=max_len,
      word_vectors=word_vectors or None, references=references or None,
      sample_seconds=sample_seconds, metric_seconds=metric_seconds,
      contexts_per_s=len(examples) / total,
      **scores, _samples=samples,
  )


def write_result(result: dict[str, Any], workdir: str) -> tuple[str, str]:
  """Writes eval_<split>.json and samples_<split>.jsonl atomically.

  Returns:
    The two paths.
  """
  split = result['split']
  metrics_path = os.path.join(workdir, f'eval_{split}.json')
  samples_path = os.path.join(workdir, f'samples_{split}.jsonl')
  body = {k: v for k, v in result.items() if k != '_samples'}
  with open(metrics_path + '.tmp', 'w') as f:
    json.dump(body, f, indent=2)
  with open(samples_path + '.tmp', 'w') as f:
    for row in result['_samples']:
      f.write(json.dumps(row) + '\n')
  os.replace(samples_path + '.tmp', samples_path)
  os.replace(metrics_path + '.tmp', metrics_path)
  return metrics_path, samples_path


_ROWS = (
    ('BLEU-R / P / F1', ('bleu_recall', 'bleu_precision', 'bleu_f1')),
    ('multi-ref BLEU-R / P / F1',
     ('bleu_multi_recall', 'bleu_multi_precision', 'bleu_multi_f1')),
    ('BOW A / E / G', ('bow_average', 'bow_extrema', 'bow_greedy')),
    ('intra-dist-1 / 2', ('intra_dist1', 'intra_dist2')),
    ('inter-dist-1 / 2', ('inter_dist1', 'inter_dist2')),
    ('distinct-1 / 2', ('distinct1', 'distinct2')),
    ('avg_len', ('avg_len',)),
)


def format_result(r: dict[str, Any]) -> str:
  """A short labelled text table of an `evaluate_run` result."""
  lines = [
      f"{r['workdir']} ({r['corpus']}, {r['variant']}), {r['split']}, step"
      f" {r['step']}: {r['num_contexts']} contexts x {r['num_samples']}"
      f" samples in {r['sample_seconds'] + r['metric_seconds']:.0f} s"
      f" ({r['contexts_per_s']:.1f} contexts/s; sampling"
      f" {r['sample_seconds']:.0f} s, metrics {r['metric_seconds']:.0f} s)"]
  for mode, title in (('paper', 'paper (SPEC B.7, the original arithmetic)'),
                      ('standard', 'standard (SPEC B.8 corrections)')):
    section = r[mode]
    lines.append(title + ':')
    for label, keys in _ROWS:
      if all(k in section for k in keys):
        values = ' / '.join(f'{section[k]:.4f}' for k in keys)
        lines.append(f'  {label:<26} {values}')
    if isinstance(section.get('bow'), str):
      lines.append(f"  BOW: {section['bow']}")
  return '\n'.join(lines)
