"""Sentences from a trained run: from the prior, reconstructions, responses.

Language-model runs: `generate` decodes sentences from the prior or
reconstructs the first sentences of a split or of a file of your own
(`read_sentences`). Dialogue runs: `respond` answers contexts of your own
(`read_contexts`, JSON lines) with sampled responses, as the evaluator does
(SPEC B.6) or by temperature sampling. `launch/generate.py` and the notebook
call these.
"""

import json
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from twr_jax import datasets
from twr_jax import decode
from twr_jax import dialogue_data
from twr_jax import errors
from twr_jax import input_pipeline
from twr_jax import models
from twr_jax import text
from twr_jax import workdir as workdir_lib

MODES = ('prior', 'reconstruct')
# Dialogue runs: greedy from prior samples (the evaluator's decoding) or
# temperature sampling; no beam search.
DIALOGUE_DECODERS = ('greedy', 'sample')
STDIN = '-'


def is_dialogue(run: workdir_lib.Run) -> bool:
  return run.config.get('task', 'lm') == 'dialogue'


def _read_text(path: str) -> tuple[str, list[str]]:
  """(name for messages, lines) of a UTF-8 file, or of stdin for '-'."""
  if path == STDIN:
    return '<stdin>', sys.stdin.read().splitlines()
  try:
    with open(path, encoding='utf-8') as f:
      return path, f.read().splitlines()
  except FileNotFoundError:
    raise errors.DataError(f'{path}: file not found') from None
  except IsADirectoryError:
    raise errors.DataError(f'{path}: is a directory, expected a file') from None
  except UnicodeDecodeError as e:
    raise errors.DataError(f'{path}: not UTF-8 ({e.reason} at byte'
                           f' {e.start})') from None


def read_sentences(path: str) -> list[str]:
  """Sentences to reconstruct, one per line ('-' reads standard input).

  Raises:
    errors.DataError: the file is missing, not UTF-8, empty, or has a blank
      line (naming file:line).
  """
  if path != STDIN:
    return text.read_lines(path)
  name, lines = _read_text(path)
  if not lines:
    raise errors.DataError(f'{name}: no sentence')
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      raise errors.DataError(f'{name}:{number}: line is blank (one sentence'
                             ' per line)')
  return lines


def encode_sentences(run: workdir_lib.Run,
                     sentences: list[str]) -> list[np.ndarray]:
  """Tokenises sentences like the run's data (SPEC A.1): BOS ids EOS each.

  Words outside the vocabulary become `<unk>`.
  """
  return input_pipeline.encode_lines(
      sentences, run.vocab, keep_empty=run.config.data.keep_empty_tokens)


def generate(run: workdir_lib.Run, workdir: str, mode: str = 'prior',
             decoder: str = 'greedy', num: int = 10, max_len: int = 40,
             temperature: float = 1.0, beam_size: int = 5,
             split: str = 'test', sample_posterior: bool = False,
             seed: int = 0,
             sentences: list[str] | None = None) -> list[str]:
  """Decodes `num` sentences of a language-model run.

  Args:
    run: the restored run (`workdir.load_run`).
    workdir: its workdir (for the data of 'reconstruct').
    mode: 'prior' (z ~ N(0, I)) or 'reconstruct' (z from the posterior of the
      first `num` sentences of `sentences`, or of `split` without them: its
      mean, or a sample with `sample_posterior`).
    decoder: 'greedy', 'sample' (softmax at `temperature`) or 'beam'.
    num: sentences, >= 0 (0: an empty list); at most the number of
      `sentences` or of the split's sentences.
    max_len: decoding steps, >= 1; temperature >= 0 (0 = greedy);
      beam_size >= 1 (1 = greedy); split, seed: as named.
    sentences: raw sentences to reconstruct (see `read_sentences`).

  Returns:
    One line per sentence; for 'reconstruct', 'input<TAB>output'.

  Raises:
    errors.ConfigError: an option outside its range (`decode.check_options`),
      an unknown mode, `sentences` with mode 'prior', or a dialogue run.
  """
  decode.check_options(decoder=decoder, num=num, max_len=max_len,
                       temperature=temperature, beam_size=beam_size)
  if mode not in MODES:
    raise errors.ConfigError(f'mode={mode!r}: must be one of'
                             f' {", ".join(MODES)}.')
  if sentences is not None and mode != 'reconstruct':
    raise errors.ConfigError('sentences_file: only with mode=reconstruct.')
  if is_dialogue(run):
    raise errors.ConfigError(
        'generate: a dialogue run answers contexts (contexts_file, `respond`)'
        ' and has no prior or reconstruct mode.')
  if num == 0:
    return []
  key_z, key_dec = jax.random.split(jax.random.key(seed))
  inputs = None
  if mode == 'prior':
    z = jax.random.normal(key_z, (num, run.config.model.latent))
  else:
    if sentences is not None:
      seqs = encode_sentences(run, sentences)
    else:
      seqs = datasets.load(run.config, workdir, splits=(split,)).splits[split]
    seqs = seqs[:num]
    tokens = np.zeros((len(seqs), max(len(s) for s in seqs)), np.int32)
    for i, s in enumerate(seqs):
      tokens[i, : len(s)] = s
    lengths = jnp.asarray([len(s) for s in seqs], jnp.int32)
    mu, logvar = run.model.apply({'params': run.params}, jnp.asarray(tokens),
                                 method=models.TWRVAE.encode)
    z, z_logvar = models.pool_posterior(mu, logvar, lengths, run.model.z_mode)
    if sample_posterior:
      z = z + jnp.exp(0.5 * z_logvar) * jax.random.normal(key_z, z.shape)
    inputs = [' '.join(run.vocab.decode(s)) for s in seqs]
  if decoder == 'greedy':
    out, _ = decode.greedy(run.model, run.params, z, max_len)
  elif decoder == 'sample':
    out, _ = decode.sample(run.model, run.params, z, max_len, key_dec,
                           temperature)
  else:
    out, _ = decode.beam_search(run.model, run.params, z, max_len, beam_size)
  lines = [' '.join(run.vocab.decode(ids)) for ids in np.asarray(out)]
  if inputs is not None:
    lines = [f'{x}\t{y}' for x, y in zip(inputs, lines)]
  return lines


# ----------------------------------------------------------------------------
# Dialogue runs


Context = list[tuple[str, int | None]]


def _turn(item: Any, where: str, i: int) -> tuple[str, int | None]:
  if isinstance(item, str):
    return item, None
  if isinstance(item, dict):
    unknown = set(item) - {'text', 'floor'}
    if unknown:
      raise errors.DataError(f'{where}: turn {i} has unknown keys'
                             f' {sorted(unknown)} (allowed: text, floor)')
    if not isinstance(item.get('text'), str):
      raise errors.DataError(f'{where}: turn {i} needs a string "text"')
    floor = item.get('floor')
    if floor is not None and (isinstance(floor, bool) or floor not in (0, 1)):
      raise errors.DataError(f'{where}: turn {i} has floor {floor!r}; a floor'
                             ' is 0 or 1 (the speaker)')
    return item['text'], floor
  raise errors.DataError(f'{where}: turn {i} is a {type(item).__name__};'
                         ' a turn is a string or {"text": ..., "floor": 0|1}')


def read_contexts(path: str) -> list[Context]:
  """Reads dialogue contexts: JSON lines, '-' reads standard input.

  Each non-blank line is a JSON list of turns, oldest first; a turn is a
  string or {"text": string, "floor": 0 or 1}. Floors name the speaker:
  give them for every turn of a line or for none (then the speakers
  alternate, and the response is by the speaker of the turn before last).
  Example line: `["hi , how are you ?", "fine , and you ?"]`.

  Returns:
    Per context, (text, floor or None) per turn.

  Raises:
    errors.DataError: naming file:line for invalid JSON, a line that is not a
      non-empty list, a bad turn or floor, or floors on some turns only; or
      if the file has no context.
  """
  name, lines = _read_text(path)
  contexts = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    where = f'{name}:{number}'
    try:
      item = json.loads(line)
    except json.JSONDecodeError as e:
      raise errors.DataError(f'{where}: invalid JSON ({e.msg} at column'
                             f' {e.colno}); each line is a JSON list of'
                             ' turns') from None
    if not isinstance(item, list) or not item:
      raise errors.DataError(f'{where}: expected a non-empty JSON list of'
                             f' turns, got {line.strip()[:60]!r}')
    turns = [_turn(t, where, i) for i, t in enumerate(item)]
    given = [f is not None for _, f in turns]
    if any(given) and not all(given):
      raise errors.DataError(f'{where}: floors on some turns only; give a'
                             ' floor for every turn of the line or for none')
    contexts.append(turns)
  if not contexts:
    raise errors.DataError(f'{name}: no context (one JSON list of turns per'
                           ' line)')
  return contexts


def context_examples(contexts: list[Context], vocab: dialogue_data.DialogVocab,
                     window: int, max_utt_len: int
                     ) -> list[dialogue_data.Example]:
  """Contexts as evaluation examples, built like the data's (SPEC B.1-B.2).

  Each context is the start of a dialogue: the bod turn (floor 0) comes
  first, the turns are tokenised (lower-cased WordPunct, OOV -> `<unk>`) and
  truncated like the data, and the last `window - 1` turns are kept. The
  response's speaker is the other one of the last turn: 1 - its floor, or
  with no floors given, the floors alternate 1, 0, 1, ... as in DailyDialog
  and the response continues the alternation. Each turn's floor input is
  1 where its speaker is the response's.
  """
  dialogues = []
  for i, turns in enumerate(contexts):
    texts = [t for t, _ in turns]
    if not turns or turns[0][1] is None:  # No turn: answer the bod turn.
      floors = [(j + 1) % 2 for j in range(len(turns) + 1)]
    else:
      floors = [f for _, f in turns]
      floors.append(1 - floors[-1])
    # The response slot holds an empty turn (`<s> </s>`), never read.
    dialogues.append(dialogue_data.Dialogue(
        tuple(texts) + ('',), tuple(floors), source=f'context {i + 1}'))
  encoded = dialogue_data.EncodedDialogues.encode(dialogues, vocab,
                                                  max_utt_len)
  lengths = encoded.lengths
  ends = lengths  # The response is the last turn.
  starts = np.maximum(0, lengths - window)
  rows = encoded.rows(np.arange(len(dialogues)), starts, ends, window)
  examples = []
  for i in range(len(dialogues)):
    n = rows['num_turns'][i]
    examples.append(dialogue_data.Example(
        context=rows['context'][i, :n], context_lens=rows['context_lens'][i, :n],
        floors=rows['floors'][i, :n],
        response=rows['response'][i, :rows['response_len'][i]],
        dialogue=i, turn=int(lengths[i]) - 1))
  return examples


def respond(run: workdir_lib.Run, contexts: list[Context], num: int = 10,
            decoder: str = 'greedy', max_len: int = 40,
            temperature: float = 1.0, seed: int = 0) -> list[dict[str, Any]]:
  """Sampled responses of a dialogue run to contexts of your own.

  z_k ~ p(z | c) for k = 1..num, then for 'greedy' argmax decoding from each
  z_k (the evaluator's decoding, SPEC B.6: the responses differ through
  z_k), for 'sample' a draw from softmax(logits / temperature) at every step
  (`<pad>`, `<s>` never drawn; temperature 0 = greedy). Up to `max_len`
  tokens, `</s>` included. A context's responses depend only on (seed, its
  position in `contexts`).

  Args:
    run: a restored dialogue run.
    contexts: from `read_contexts`.
    num: responses per context, >= 0 (0: an empty list).
    decoder: 'greedy' or 'sample'.
    max_len: >= 1; temperature: >= 0; seed: the PRNG seed.

  Returns:
    Per context {'context': its turns as the model reads them (tokenised,
    `<unk>` for unknown words; the bod turn as '<d>'), 'responses': num
    strings}.

  Raises:
    errors.ConfigError: an option outside its range, 'beam', or a language
      model run.
  """
  decode.check_options(decoder=decoder, num=num, max_len=max_len,
                       temperature=temperature, decoders=DIALOGUE_DECODERS)
  if not is_dialogue(run):
    raise errors.ConfigError('contexts_file: only a dialogue run answers'
                             ' contexts; this is a language-model run.')
  if num == 0:
    return []
  # Imported here: the dialogue modules are not needed for LM runs.
  from twr_jax import dialogue_eval  # pylint: disable=g-import-not-at-top
  d = run.config.data
  vocab = run.vocab
  examples = context_examples(contexts, vocab, d.window, d.max_utt_len)
  if decoder == 'greedy':
    temperature = 0.0
  # One padded batch shape for small inputs, the evaluator's for large.
  batch_size = min(len(examples), run.config.eval.sample_batch_size)
  tokens, _ = dialogue_eval.sample_examples(
      run.model, run.params, examples, vocab, jax.random.key(seed),
      num_samples=num, max_len=max_len, batch_size=batch_size,
      window=d.window, max_utt_len=d.max_utt_len, pack=False,
      temperature=float(temperature))
  return [dict(context=[' '.join(vocab.decode(t[:n]))
                        for t, n in zip(ex.context, ex.context_lens)],
               responses=[' '.join(vocab.decode(s)) for s in samples])
          for ex, samples in zip(examples, tokens)]


def format_responses(results: list[dict[str, Any]]) -> str:
  """Readable text: each context's turns ('> '), then numbered responses."""
  blocks = []
  for i, r in enumerate(results, start=1):
    lines = [f'context {i}:'] + [f'  > {t}' for t in r['context']]
    lines += [f'  {k}. {s}' for k, s in enumerate(r['responses'], start=1)]
    blocks.append('\n'.join(lines))
  return '\n\n'.join(blocks)
