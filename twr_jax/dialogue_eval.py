"""The dialogue evaluation of a trained run (SPEC B.6-B.8).

For every test context: 10 responses from the prior p(z | c), greedy, 40
steps, decoded for many contexts at once (one jitted `decode_responses` call
per `eval.sample_batch_size` contexts, keeping the tokens after `</s>` that
the paper BOW reads; with `paper_tail=False`, `sample_responses`, which
stops once every response has ended; the context turns are encoded
beforehand, packed by length, `pack_utterances`); then BLEU-R/P/F1, BOW
embedding
Average/Extrema/Greedy and distinct-n in two labelled sections:

  paper     the original's arithmetic (DialogWAE's Metrics with NLTK 3.5,
            SPEC B.7), to compare with the paper's Table 5;
  standard  the corrections of SPEC B.8 (no free `</s>` unigram, masked
            extrema, greedy over real words, corpus-level distinct).

`launch/evaluate.py` calls `evaluate_run` on a dialogue workdir; it writes
`eval_<split>.json` and `samples_<split>.jsonl` (context, reference, the
responses) next to the checkpoints.
"""

import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from twr_jax import decode
from twr_jax import dialogue_data
from twr_jax import dialogue_metrics
from twr_jax import dialogue_model
from twr_jax import dialogue_train
from twr_jax import errors
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


@functools.partial(
    jax.jit, static_argnames=('model', 'num_samples', 'max_len',
                              'temperature', 'keep_tail'))
def decode_responses(
    model: dialogue_model.DialogTWRVAE, params, batch: dict[str, jax.Array],
    key: jax.Array, num_samples: int = 10, max_len: int = 40, *,
    bos_id: int | jax.Array, eos_id: int | jax.Array,
    temperature: float = 0.0, keep_tail: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """Responses from K prior samples per context, every row `max_len` steps.

  The same z_k as `dialogue_model.sample_responses` (noise from
  `fold_in(key, index)`), then `max_len` decoder steps for every row
  (SPEC B.6), each feeding back the token it chose:

    * temperature 0: argmax over every token, as the original's greedy
      decoding; the tokens up to the first `</s>` are those of
      `sample_responses`;
    * temperature > 0: a draw from softmax(logits / temperature) with
      `<pad>` and `<s>` never drawn (neither is a next word), keyed by
      `fold_in(fold_in(key, index), step)` so that a context's responses do
      not depend on its batch.

  With `keep_tail`, the tokens after the first `</s>` are kept as decoded:
  the original keeps decoding after `</s>`, and its paper-mode BOW Extrema
  and Greedy read those tokens (SPEC B.7). Without it they are PAD.

  Args:
    model, params: the model (static) and its parameters.
    batch: a `dialogue_data` batch, optionally with 'utterances' (see
      `dialogue_model.sample_responses`).
    key: a typed PRNG key.
    num_samples: K.
    max_len: decoder steps.
    bos_id, eos_id: the ids of `<s>` and `</s>`.
    temperature: >= 0, static (one compile per value; callers check it,
      `decode.check_options`).
    keep_tail: keep the tokens after the first `</s>`.

  Returns:
    (tokens <i32>[B, K, max_len], lengths <i32>[B, K]: tokens before the
    first `</s>`, max_len if none).
  """
  variables = {'params': params}
  if 'utterances' in batch:
    c, _ = model.apply(
        variables, batch['utterances'], batch['floors'], batch['num_turns'],
        method=dialogue_model.DialogTWRVAE.context_states)
  else:
    c, _ = model.apply(
        variables, batch['context'], batch['context_lens'], batch['floors'],
        batch['num_turns'], method=dialogue_model.DialogTWRVAE.encode_context)
  mu, logvar = model.apply(variables, c,
                           method=dialogue_model.DialogTWRVAE.prior)
  keys = dialogue_model.example_keys(key, batch['index'])
  z = dialogue_model.prior_samples(keys, mu, logvar, num_samples)
  b, k = z.shape[:2]
  z = z.reshape(b * k, -1)
  carry = model.apply(variables, z, jnp.repeat(c, k, axis=0),
                      method=dialogue_model.DialogTWRVAE.decode_init)
  # One sampling key per row (context, sample), independent of the batch.
  row_keys = jax.vmap(lambda kk: jax.random.split(kk, k))(
      jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 1)).reshape(-1)

  def step(state, t):
    carry, prev = state
    carry, logits = model.apply(
        variables, carry, prev, method=dialogue_model.DialogTWRVAE.decode_step)
    if temperature > 0:
      logits = logits.at[:, jnp.array([dialogue_data.PAD, bos_id])].set(
          -jnp.inf)
      nxt = jax.vmap(lambda kk, x: jax.random.categorical(
          jax.random.fold_in(kk, t), x))(row_keys, logits / temperature)
    else:
      nxt = decode.argmax(logits)
    nxt = nxt.astype(jnp.int32)
    return (carry, nxt), nxt

  bos = jnp.full((b * k,), bos_id, jnp.int32)
  _, tokens = jax.lax.scan(step, (carry, bos), jnp.arange(max_len))
  tokens = tokens.T.reshape(b, k, max_len)
  before = jnp.cumsum(tokens == eos_id, axis=-1) == 0
  lengths = jnp.sum(before, axis=-1).astype(jnp.int32)
  if not keep_tail:
    # PAD after the first </s>, as `sample_responses`.
    ended = jnp.cumsum(jnp.cumsum(tokens == eos_id, axis=-1), axis=-1) > 1
    tokens = jnp.where(ended, dialogue_data.PAD, tokens)
  return tokens, lengths


def sample_examples(
    model: dialogue_model.DialogTWRVAE, params,
    examples: list[dialogue_data.Example], vocab: dialogue_data.DialogVocab,
    key: jax.Array, *, num_samples: int = 10, max_len: int = 40,
    batch_size: int = 256, window: int = 10, max_utt_len: int = 40,
    pack: bool = True, compact: bool = True, temperature: float = 0.0,
    keep_tail: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
  """Prior samples for every example, `batch_size` contexts a call.

  Every call has the same static shapes (the last batch is padded), so the
  decoder compiles once. Sample k of example i depends on (key, i) only.
  With `pack`, the context turns are encoded beforehand by
  `pack_utterances` (same samples up to float rounding, much less encoder
  work); without it, each call encodes its padded batch.

  Greedy without `keep_tail` runs `dialogue_model.sample_responses` (early
  stop, `compact` rows); a temperature > 0 or `keep_tail` runs
  `decode_responses` (every row max_len steps). Both give the same greedy
  tokens up to the first `</s>`.

  Returns:
    (tokens <int32>[C, K, max_len], lengths <int32>[C, K]), see
    `decode_responses`.
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
    if temperature > 0 or keep_tail:
      out = decode_responses(
          model, params, batch, key, num_samples, max_len,
          bos_id=vocab.bos_id, eos_id=vocab.eos_id, temperature=temperature,
          keep_tail=keep_tail)
    else:
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
    paper_tail: decode every response `max_len` steps, keeping what the
      decoder produces after `</s>` (SPEC B.6), which the paper section's
      BOW Extrema and Greedy read (SPEC B.7). False stops each response at
      `</s>` (faster); the paper BOW then sees `<pad>` there instead and no
      longer equals the original's. No other number changes.

  Returns:
    A JSON-ready dict: 'paper' and 'standard' sections, 'notes', timings
    ('sample_seconds', 'metric_seconds', 'contexts_per_s' of the whole
    evaluation) and the samples under '_samples' (written to the samples
    file, not to eval_<split>.json).
  """
  # Before any work; None takes the config's value.
  decode.check_options(num=num_samples, max_len=max_len)
  for name, value in (('num_samples', num_samples),
                      ('sample_batch_size', batch_size)):
    if value is not None and (not isinstance(value, int) or value < 1):
      raise errors.ConfigError(f'{name}={value!r}: must be an integer >= 1.')
  run = workdir_lib.load_run(workdir, step, compute_dtype)
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
  tokens, _ = sample_examples(
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
