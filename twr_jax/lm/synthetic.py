"""A small English-like corpus generated from a hidden latent, built in.

Each sentence has a latent `(topic, style)`. The topic (8 values) picks the
nouns, verbs and adjectives of every content slot; the style (4 values) picks
the sentence template, its function words and its length. A text VAE that puts
the latent into z shows it in its mutual information, active units and
reconstruction from z, with no data files and in seconds. It need not have a
lower NLL than a model that ignores z: the latent carries at most
log(8 * 4) = 3.47 nats, and an autoregressive decoder infers the topic from
the first content word by itself.
"""

from collections.abc import Sequence

import numpy as np

NUM_TOPICS = 8
NUM_STYLES = 4
SPLITS = ('train', 'valid', 'test')

# Per topic: (nouns, past-tense verbs, adjectives). No word is shared between
# topics, so the topic is fully determined by any content word.
_TOPICS = (
    (
        ('dog', 'cat', 'horse', 'rabbit', 'fox', 'owl'),
        ('chased', 'bit', 'fed', 'hunted'),
        ('furry', 'wild', 'tame', 'hungry'),
    ),
    (
        ('bread', 'soup', 'cheese', 'apple', 'cake', 'pie'),
        ('baked', 'cooked', 'tasted', 'ate'),
        ('sweet', 'salty', 'fresh', 'warm'),
    ),
    (
        ('team', 'ball', 'goal', 'coach', 'match', 'player'),
        ('kicked', 'won', 'scored', 'trained'),
        ('fast', 'strong', 'tired', 'proud'),
    ),
    (
        ('rain', 'storm', 'cloud', 'wind', 'snow', 'sky'),
        ('soaked', 'froze', 'covered', 'shook'),
        ('cold', 'wet', 'grey', 'dark'),
    ),
    (
        ('song', 'band', 'drum', 'piano', 'guitar', 'singer'),
        ('played', 'sang', 'tuned', 'recorded'),
        ('loud', 'soft', 'catchy', 'slow'),
    ),
    (
        ('computer', 'screen', 'program', 'server', 'code', 'network'),
        ('crashed', 'booted', 'compiled', 'deleted'),
        ('digital', 'broken', 'remote', 'new'),
    ),
    (
        ('ship', 'boat', 'sailor', 'wave', 'harbour', 'island'),
        ('sailed', 'sank', 'anchored', 'rowed'),
        ('blue', 'deep', 'calm', 'rough'),
    ),
    (
        ('farmer', 'field', 'tractor', 'wheat', 'barn', 'cow'),
        ('ploughed', 'harvested', 'planted', 'watered'),
        ('green', 'dry', 'golden', 'muddy'),
    ),
)

# Per style: templates whose slots are N (noun), V (verb), A (adjective) and
# A? (an adjective in half of the sentences). Other words are literal, so each
# style has its own function words and length range.
_STYLES = (
    # Short plain statements, 6-7 tokens.
    (
        'the A? N V the N .',
        'a A? N V a N .',
    ),
    # Questions, 6-9 tokens.
    (
        'which A? N V the A? N ?',
        'who V the A N , the N ?',
    ),
    # Long narrative, 17-19 tokens.
    (
        'yesterday the A? N V a A? N , and then the N V it near the N .',
        'after the A N V the N , my A? N V every A? N at the N .',
    ),
    # Exclamations, 10-13 tokens.
    (
        'wow , what a A N ! it V our A? N !',
        'oh no , the A? N V your N again !',
    ),
)

# Probability that a content slot takes its word from a random other topic,
# so that the topic is likely, not certain, given a single word.
_NOISE = 0.1
# Upper bound on the random numbers one sentence consumes.
_DRAWS_PER_SENTENCE = 64


def _fill(template: str, topic: int, u: list[float]) -> str:
  """Fills the slots of `template` with words of `topic`, consuming `u`."""
  u = iter(u)
  words = []
  for slot in template.split():
    if slot == 'A?':
      if next(u) < 0.5:
        continue
      slot = 'A'
    if slot in ('N', 'V', 'A'):
      t = topic
      if next(u) < _NOISE:
        # One of the other NUM_TOPICS - 1 topics, uniformly.
        t = (topic + 1 + int(next(u) * (NUM_TOPICS - 1))) % NUM_TOPICS
      choices = _TOPICS[t]['NVA'.index(slot)]
      words.append(choices[int(next(u) * len(choices))])
    else:
      words.append(slot)
  return ' '.join(words)


def generate(
    num_sentences: int, seed: int | Sequence[int]
) -> tuple[list[str], np.ndarray]:
  """Generates sentences and their latents.

  The output depends only on the arguments: it uses only `random()` and
  `integers()` of `numpy.random.default_rng(seed)`.

  Args:
    num_sentences: how many sentences.
    seed: seed of `numpy.random.default_rng` (an int or a sequence of ints).

  Returns:
    `(lines, latents)`: `num_sentences` lines of space-separated lowercase
    words (unchanged by `text.split`), and `<int64>[num_sentences, 2]` holding
    each line's `(topic, style)`.
  """
  if num_sentences < 0:
    raise ValueError(f'num_sentences must be >= 0, got {num_sentences}')
  rng = np.random.default_rng(seed)
  latents = np.stack(
      [
          rng.integers(NUM_TOPICS, size=num_sentences),
          rng.integers(NUM_STYLES, size=num_sentences),
      ],
      axis=1,
  )
  template_u = rng.random(num_sentences).tolist()
  slot_u = rng.random((num_sentences, _DRAWS_PER_SENTENCE)).tolist()
  lines = []
  for (topic, style), tu, su in zip(latents.tolist(), template_u, slot_u):
    templates = _STYLES[style]
    lines.append(_fill(templates[int(tu * len(templates))], topic, su))
  return lines, latents


def make_splits(
    seed: int = 0,
    num_train: int = 20_000,
    num_valid: int = 1_000,
    num_test: int = 1_000,
) -> dict[str, list[str]]:
  """Generates train/valid/test splits.

  Split k of `SPLITS` is `generate(num, (seed, k))`, so the latents of a split
  can be recovered by calling `generate` with the same arguments.

  Args:
    seed: corpus seed; each split uses its own stream derived from it.
    num_train: training sentences.
    num_valid: validation sentences.
    num_test: test sentences.

  Returns:
    A dict from split name to its lines.
  """
  sizes = (num_train, num_valid, num_test)
  return {
      name: generate(num, (seed, k))[0]
      for k, (name, num) in enumerate(zip(SPLITS, sizes))
  }
