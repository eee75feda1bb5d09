"""The dialogue evaluation of a trained run (SPEC B.6-B.8).

For every test context: 10 responses from the prior p(z | c), greedy, 40
steps, decoded for many contexts at once (one jitted call per
`eval.sample_batch_size` contexts; the context turns are encoded beforehand,
packed by length, `pack_utterances`): `sample_responses`, which stops once
every response has ended, or, when the BOW metrics are computed,
`decode_responses`, which keeps the tokens after `</s>` that the paper BOW
reads (`paper_tail`); then BLEU-R/P/F1, BOW embedding Average/Extrema/Greedy
and distinct-n in two labelled sections:

  paper     the original's arithmetic (DialogWAE's Metrics with NLTK 3.5,
            SPEC B.7), to compare with the paper's Table 5;
  standard  the corrections of SPEC B.8 (no free `</s>` unigram, masked
            extrema, greedy over real words, corpus-level distinct).

`launch/evaluate.py` calls `evaluate_run` on a dialogue workdir; it writes
`eval_<split>.json` and `samples_<split>.jsonl` (context, reference, the
responses) next to the checkpoints.
"""

import os
import time
from typing import Any

from twr_jax import errors
from twr_jax.core import decoding
from twr_jax.core import files
from twr_jax.core import prng
from twr_jax.core import workdir as workdir_lib
from twr_jax.dialogue import data as dialogue_data
from twr_jax.dialogue import decoding as dialogue_decoding
from twr_jax.dialogue import metrics as dialogue_metrics
from twr_jax.dialogue import task as dialogue_task


def evaluate_run(
    workdir: str, split: str = 'test', step: int | str = 'best', *,
    word_vectors: str | None = None, references: str | None = None,
    data_dir: str | None = None, num_samples: int | None = None,
    max_len: int | None = None, batch_size: int | None = None,
    max_contexts: int | None = None, compute_dtype: str | None = None,
    paper_tail: bool = True,
) -> dict[str, Any]:
  """Samples and scores responses for a split's contexts.

  What each metric receives (the audit in BUILD_NOTES.md, "Dialogue
  metrics audit"): the hypotheses are the full decodes as token strings,
  `<pad>`, `<s>` and `</s>` included, and with `paper_tail` the tokens the
  decoder produced after `</s>` (the original decodes all `max_len` steps);
  the references are the response words (`<s>`, `</s>` stripped; OOV
  words are `<unk>` as in the original). `score_responses` then cuts each
  metric's input as SPEC B.7 / B.8 say.

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
      num_samples, max_len and sample_batch_size; each >= 1 (else
      errors.ConfigError, before anything is loaded).
    max_contexts: score only the first this many contexts (smoke runs),
      each with its own line of `references`, which still needs a line per
      context of the whole split.
    compute_dtype: overrides the run's `train.compute_dtype` (None: the
      run's).
    paper_tail: when the BOW metrics are computed (word vectors given),
      decode every response `max_len` steps, keeping what the decoder
      produces after `</s>` (SPEC B.6), which the paper section's BOW
      Extrema and Greedy read (SPEC B.7). False stops each response at
      `</s>` (faster); the paper BOW then sees `<pad>` there instead and no
      longer equals the original's. No other metric reads the tail, so
      without word vectors responses always stop at `</s>` (the result's
      'paper_tail' says which was decoded).

  Returns:
    A JSON-ready dict: 'paper' and 'standard' sections, 'notes', timings
    ('sample_seconds', 'metric_seconds', 'contexts_per_s' of the whole
    evaluation) and the samples under '_samples' (written to the samples
    file, not to eval_<split>.json).
  """
  # Before any work; None takes the config's value.
  decoding.check_options(num=num_samples, max_len=max_len)
  for name, value in (('num_samples', num_samples),
                      ('sample_batch_size', batch_size)):
    if value is not None and (not isinstance(value, int) or value < 1):
      raise errors.ConfigError(f'{name}={value!r}: must be an integer >= 1.')
  run = workdir_lib.load_run(workdir, dialogue_task.load_model, step,
                            compute_dtype)
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
      dialogue_data.read_split(config, split), vocab, config.data.window,
      config.data.max_utt_len)
  multi = None
  if references:
    # The file has a line per context of the whole split: check it against
    # the split before cutting both to the first `max_contexts`.
    multi = dialogue_metrics.read_references(references, len(examples))
  if max_contexts:
    examples = examples[:max_contexts]
    multi = multi[:max_contexts] if multi is not None else None

  # Only the paper BOW reads the tokens after </s>; decoding them costs
  # every row all `max_len` steps (no early stop, no row compaction).
  paper_tail = paper_tail and bool(word_vectors)
  start = time.time()
  key = prng.run_key(config.seed, prng.SAMPLE)
  tokens, _ = dialogue_decoding.sample_examples(
      run.model, run.params, examples, vocab, key, num_samples=num_samples,
      max_len=max_len, batch_size=batch_size, window=config.data.window,
      max_utt_len=config.data.max_utt_len, keep_tail=paper_tail)
  sample_seconds = time.time() - start

  start = time.time()
  # The full decodes: paper BLEU keeps </s> (and <s>, dropping only
  # <pad>), paper distinct and avg_len count <pad>s before </s>, and paper
  # BOW reads every position (SPEC B.7). `vocab.decode` would cut them.
  hypotheses = [[[vocab.tokens[i] for i in s] for s in samples]
                for samples in tokens]
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
           responses=[' '.join(vocab.decode(s)) for s in ids])
      for i, (ex, r, ids) in enumerate(zip(examples, refs, tokens))
  ]
  return dict(
      workdir=os.path.abspath(workdir), split=split, step=run.step,
      checkpoint=step, variant=config.get('variant'),
      corpus=config.data.format, num_samples=num_samples, max_len=max_len,
      word_vectors=word_vectors or None, references=references or None,
      paper_tail=paper_tail,
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
  files.write_jsonl(samples_path, result['_samples'])
  files.write_json(metrics_path, body)
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


def evaluate_command(workdir: str, step: int | str,
                     options: dict[str, Any]) -> str:
  """`launch.evaluate` for a dialogue run: `evaluate_run` with the
  launcher's options, written by `write_result`; returns the text to print."""
  result = evaluate_run(
      workdir, options['split'], step, word_vectors=options['word_vectors'],
      references=options['references'], data_dir=options['data_dir'],
      num_samples=options['num_samples'],
      batch_size=options['sample_batch_size'],
      max_contexts=options['max_contexts'],
      compute_dtype=options['compute_dtype'])
  paths = write_result(result, workdir)
  return format_result(result) + '\nwrote ' + ', '.join(paths)
