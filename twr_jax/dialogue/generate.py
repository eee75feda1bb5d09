"""Responses of a trained dialogue run to contexts of your own.

`respond` answers contexts (`read_contexts`, JSON lines) with sampled
responses, as the evaluator does (SPEC B.6) or by temperature sampling.
`launch/generate.py` (through `twr_jax.tasks`) and the notebook call these.
"""

import json
import os
from typing import Any

import jax
import numpy as np

from twr_jax import errors
from twr_jax.core import decoding
from twr_jax.core import files
from twr_jax.core import text
from twr_jax.core import workdir as workdir_lib
from twr_jax.dialogue import data as dialogue_data
from twr_jax.dialogue import decoding as dialogue_decoding
from twr_jax.dialogue import task as dialogue_task

# Greedy from prior samples (the evaluator's decoding) or temperature
# sampling; no beam search.
DECODERS = ('greedy', 'sample')


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
  name, lines = text.read_input(path)
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
  decoding.check_options(decoder=decoder, num=num, max_len=max_len,
                       temperature=temperature, decoders=DECODERS)
  if run.config.get('task', 'lm') != 'dialogue':
    raise errors.ConfigError('contexts_file: only a dialogue run answers'
                             ' contexts; this is a language-model run.')
  if num == 0:
    return []
  d = run.config.data
  vocab = run.vocab
  examples = context_examples(contexts, vocab, d.window, d.max_utt_len)
  if decoder == 'greedy':
    temperature = 0.0
  # One padded batch shape for small inputs, the evaluator's for large.
  batch_size = min(len(examples), run.config.eval.sample_batch_size)
  tokens, _ = dialogue_decoding.sample_examples(
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


def generate_command(workdir: str, step: int | str,
                     options: dict[str, Any]) -> str:
  """`launch.generate` for a dialogue run: checks the options, answers
  --contexts_file, writes workdir/responses_<decode>.jsonl; returns the text
  to print ('' for --num=0)."""
  if options['contexts_file'] is None:
    raise errors.ConfigError(
        f'{workdir} is a dialogue run: give it contexts with'
        ' --contexts_file=FILE (JSON lines of turns, - for standard input).')
  if options['mode'] != 'prior':
    raise errors.ConfigError(
        f"--mode={options['mode']} is not offered for dialogue runs: they"
        ' answer --contexts_file.')
  decoding.check_options(
      decoder=options['decode'], num=options['num'],
      max_len=options['max_len'], temperature=options['temperature'],
      beam_size=options['beam_size'], decoders=DECODERS)
  if options['num'] == 0:
    return ''  # Nothing to decode: print nothing.
  contexts = read_contexts(options['contexts_file'])
  run = workdir_lib.load_run(workdir, dialogue_task.load_model, step)
  results = respond(run, contexts, options['num'], options['decode'],
                    options['max_len'], options['temperature'],
                    options['seed'])
  path = os.path.join(workdir, f"responses_{options['decode']}.jsonl")
  files.write_jsonl(path, results)
  return format_responses(results)
