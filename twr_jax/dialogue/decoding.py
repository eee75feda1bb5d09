"""Decoding responses of the dialogue model (SPEC B.6).

z_k ~ p(z | c) for k = 1..K (`prior_samples`), then greedy or temperature
decoding from each z_k. `sample_examples` is what the evaluator
(`dialogue/report.py`) and `dialogue/generate.py` call: with `pack`, the
context turns are encoded beforehand, packed by length (`pack_utterances`);
`sample_responses` stops once every response has ended (row compaction),
`decode_responses` runs all `max_len` steps and keeps the tokens after
`</s>` that the paper BOW reads. Every example's noise comes from
fold_in(key, index), so a context's responses do not depend on its batch.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from twr_jax.core import decoding
from twr_jax.core import prng
from twr_jax.dialogue import data as dialogue_data
from twr_jax.dialogue import model as dialogue_model

Array = jax.Array
PRNGKey = jax.Array


def prior_samples(keys: PRNGKey, mu: Array, logvar: Array,
                  num_samples: int) -> Array:
  """z_k = mu + sigma eps_k, eps from each example's key.

  Args:
    keys: typed PRNG keys [B].
    mu, logvar: <f32>[B, Z] of p(z | c).
    num_samples: K.

  Returns:
    <f32>[B, K, Z].
  """
  eps = jax.vmap(
      lambda k: jax.random.normal(k, (num_samples, mu.shape[-1]))
  )(keys)
  return mu[:, None] + jnp.exp(0.5 * logvar)[:, None] * eps


def _initial_carry(model: dialogue_model.DialogTWRVAE, variables,
                   batch: dict[str, Array], key: PRNGKey,
                   num_samples: int) -> tuple[Array, PRNGKey]:
  """The decoder's start from K prior samples per context (SPEC B.6).

  c from the context turns (or their encodings, batch['utterances']), then
  z_k ~ p(z | c) from each example's key (`prior_samples`), then the
  decoder's initial carry from [z_k; c].

  Returns:
    (carry <f32>[B * K, H_d], row b * K + k for sample k of context b;
    the examples' keys [B], `fold_in(key, index)`).
  """
  if 'utterances' in batch:  # Encoded beforehand (`encode_utterances`).
    c, _ = model.apply(
        variables, batch['utterances'], batch['floors'], batch['num_turns'],
        method=dialogue_model.DialogTWRVAE.context_states)
  else:
    c, _ = model.apply(
        variables, batch['context'], batch['context_lens'], batch['floors'],
        batch['num_turns'], method=dialogue_model.DialogTWRVAE.encode_context)
  mu, logvar = model.apply(variables, c,
                           method=dialogue_model.DialogTWRVAE.prior)
  keys = prng.example_keys(key, batch['index'])
  z = prior_samples(keys, mu, logvar, num_samples)
  b, k = z.shape[:2]
  carry = model.apply(variables, z.reshape(b * k, -1),
                      jnp.repeat(c, k, axis=0),
                      method=dialogue_model.DialogTWRVAE.decode_init)
  return carry, keys


@functools.partial(jax.jit, static_argnames=('model',))
def encode_utterances(model: dialogue_model.DialogTWRVAE, params, tokens: Array,
                      lengths: Array) -> Array:
  """Utterance encodings in eval mode (no dropout).

  Args:
    model: the model (static).
    params: its parameters.
    tokens: <i32>[M, T] utterances, PAD-padded; any T >= the longest.
    lengths: <i32>[M] tokens per utterance, 1..T.

  Returns:
    <f32>[M, 2 H_u], independent of T (the encoder reads each utterance's
    valid prefix only).
  """
  return model.apply({'params': params}, tokens, lengths,
                     method=dialogue_model.DialogTWRVAE.encode_utterances)


def sample_responses(
    model: dialogue_model.DialogTWRVAE, params, batch: dict[str, Array],
    key: PRNGKey, num_samples: int = 10, max_len: int = 40, *,
    bos_id: int | Array, eos_id: int | Array,
) -> tuple[Array, Array]:
  """Greedy responses from K prior samples per context (SPEC B.6).

  Eval mode. For each context, z_k ~ p(z | c) with noise from
  `fold_in(key, index)`, so a context's samples do not depend on the other
  rows of its batch; then argmax decoding from `<s>` with the hidden state
  [z_k; c], at most `max_len` steps. As in the original, nothing is masked
  out of the argmax. The original always runs `max_len` steps and keeps the
  tokens after `</s>`, which every metric drops; here they are PAD, and the
  loop stops as soon as every row of the batch has produced `</s>`, and
  (`compact`) each step decodes only a prefix of rows holding every
  unfinished one (same responses, fewer row-steps).

  Args:
    model: the model (static).
    params: its parameters.
    batch: a `dialogue_data` batch (context, context_lens, floors,
      num_turns, index are read); with 'utterances' <f32>[B, N, 2 H_u]
      from `encode_utterances`, those replace context and context_lens.
    key: a typed PRNG key.
    num_samples: K.
    max_len: decoding steps at most.
    bos_id, eos_id: the ids of `<s>` and `</s>` (`DialogVocab`).

  Returns:
    (tokens <i32>[B, K, max_len], the greedy tokens up to and including the
    first `</s>`, then PAD; lengths <i32>[B, K], the tokens before the first
    `</s>`, max_len if there is none).
  """
  return _sample_responses(model, params, batch, key, num_samples, max_len,
                           bos_id=bos_id, eos_id=eos_id, compact=True)


@functools.partial(
    jax.jit, static_argnames=('model', 'num_samples', 'max_len', 'compact')
)
def _sample_responses(
    model: dialogue_model.DialogTWRVAE, params, batch: dict[str, Array],
    key: PRNGKey, num_samples: int, max_len: int, *, bos_id: int | Array,
    eos_id: int | Array, compact: bool,
) -> tuple[Array, Array]:
  # `sample_responses`; compact=False (every row every step) is for the
  # tests and bench/dialogue_eval_throughput.py, which measure what it buys.
  variables = {'params': params}
  carry, _ = _initial_carry(model, variables, batch, key, num_samples)
  b, k = batch['num_turns'].shape[0], num_samples
  rows = b * k
  # Row compaction: rows that have ended move to the back after every step,
  # and a step decodes only the smallest prefix (all rows, 1/2, 1/4 or 1/8
  # of them) that holds every unfinished row. On a trained DailyDialog model
  # this skips ~1/3 of the row-steps; each row's computation is unchanged.
  sizes = sorted({-(-rows // 2**i) for i in range(4)} if compact else {rows},
                 reverse=True)

  def decode_prefix(n):
    def run(carry, prev):
      head = jax.tree_util.tree_map(lambda x: x[:n], carry)
      head, logits = model.apply(variables, head, prev[:n],
                                 method=dialogue_model.DialogTWRVAE.decode_step)
      carry = jax.tree_util.tree_map(lambda x, h: x.at[:n].set(h), carry,
                                     head)
      nxt = jnp.full((rows,), dialogue_data.PAD, jnp.int32)
      return carry, nxt.at[:n].set(decoding.argmax(logits))
    return run

  branches = [decode_prefix(n) for n in sizes]
  # (step, carry, previous tokens, ended, tokens <i32>[max_len, rows] by
  # original row, the original row at each position).
  state = (0, carry, jnp.full((rows,), bos_id, jnp.int32),
           jnp.zeros((rows,), bool),
           jnp.full((max_len, rows), dialogue_data.PAD, jnp.int32),
           jnp.arange(rows))

  def unfinished(state):
    t, _, _, ended, _, _ = state
    return (t < max_len) & ~jnp.all(ended)

  def to_back(rows_state):  # (carry, next ids, ended, order): unfinished first.
    back = jnp.argsort(rows_state[2], stable=True)
    return jax.tree_util.tree_map(lambda x: x[back], rows_state)

  def step(state):
    t, carry, prev, ended, tokens, order = state
    active = rows - jnp.sum(ended)  # The unfinished rows come first.
    branch = sum((active <= n).astype(jnp.int32) for n in sizes[1:])
    carry, nxt = jax.lax.switch(branch, branches, carry, prev)
    nxt = jnp.where(ended, dialogue_data.PAD, nxt)
    tokens = tokens.at[t, order].set(nxt)
    now_ended = ended | (nxt == eos_id)
    if compact:  # Only when a row has just ended (random init: never).
      carry, nxt, now_ended, order = jax.lax.cond(
          jnp.any(now_ended != ended), to_back, lambda x: x,
          (carry, nxt, now_ended, order))
    return t + 1, carry, nxt, now_ended, tokens, order

  tokens = jax.lax.while_loop(unfinished, step, state)[-2]
  tokens = tokens.T.reshape(b, k, max_len)
  lengths = jnp.sum(jnp.cumsum(tokens == eos_id, axis=-1) == 0, axis=-1)
  return tokens, lengths.astype(jnp.int32)


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
    u[rows] = np.asarray(encode_utterances(
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

  The same z_k as `sample_responses` (noise from
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
      `sample_responses`).
    key: a typed PRNG key.
    num_samples: K.
    max_len: decoder steps.
    bos_id, eos_id: the ids of `<s>` and `</s>`.
    temperature: >= 0, static (one compile per value; callers check it,
      `decoding.check_options`).
    keep_tail: keep the tokens after the first `</s>`.

  Returns:
    (tokens <i32>[B, K, max_len], lengths <i32>[B, K]: tokens before the
    first `</s>`, max_len if none).
  """
  variables = {'params': params}
  carry, keys = _initial_carry(model, variables, batch, key, num_samples)
  b, k = batch['num_turns'].shape[0], num_samples
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
      nxt = decoding.argmax(logits)
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
    pack: bool = True, temperature: float = 0.0,
    keep_tail: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
  """Prior samples for every example, `batch_size` contexts a call.

  Every call has the same static shapes (the last batch is padded), so the
  decoder compiles once. Sample k of example i depends on (key, i) only.
  With `pack`, the context turns are encoded beforehand by
  `pack_utterances` (same samples up to float rounding, much less encoder
  work); without it, each call encodes its padded batch.

  Greedy without `keep_tail` runs `sample_responses` (early
  stop, row compaction); a temperature > 0 or `keep_tail` runs
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
      out = sample_responses(
          model, params, batch, key, num_samples, max_len,
          bos_id=vocab.bos_id, eos_id=vocab.eos_id)
    keep = batch['weights'] > 0
    t, n = jax.device_get(out)
    tokens.append(t[keep])
    lengths.append(n[keep])
  return np.concatenate(tokens), np.concatenate(lengths)
