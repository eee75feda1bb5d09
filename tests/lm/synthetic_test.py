"""Tests for twr_jax.lm.synthetic: determinism and a latent that shapes text."""

import collections

import numpy as np

from twr_jax.core import text
from twr_jax.lm import synthetic


def _entropy_bits(counts: collections.Counter) -> float:
  p = np.array(list(counts.values()), np.float64)
  p /= p.sum()
  return float(-(p * np.log2(p)).sum())


def test_generate_is_deterministic():
  lines, latents = synthetic.generate(300, seed=7)
  again, latents_again = synthetic.generate(300, seed=7)
  assert lines == again
  np.testing.assert_array_equal(latents, latents_again)
  other, _ = synthetic.generate(300, seed=8)
  assert sum(a != b for a, b in zip(lines, other)) > 200


def test_generate_is_the_same_on_every_machine():
  # Pins the exact output: changes to the templates or to NumPy's generator
  # streams would silently change every corpus built from it.
  lines, latents = synthetic.generate(3, seed=0)
  assert lines == [
      'which calm harbour crashed the rough boat ?',
      'who deleted the new program , the network ?',
      'a guitar recorded a piano .',
  ]
  np.testing.assert_array_equal(latents, [[6, 1], [5, 1], [4, 0]])


def test_make_splits():
  splits = synthetic.make_splits(
      seed=3, num_train=200, num_valid=50, num_test=60
  )
  assert {k: len(v) for k, v in splits.items()} == {
      'train': 200, 'valid': 50, 'test': 60
  }
  for k, name in enumerate(synthetic.SPLITS):
    assert splits[name] == synthetic.generate(len(splits[name]), (3, k))[0]
  assert splits['valid'] != splits['test'][:50]
  other = synthetic.make_splits(seed=4, num_train=200)
  assert splits['train'] != other['train']


def test_lines_are_clean_tokens_of_bounded_length():
  lines, latents = synthetic.generate(2000, seed=1)
  assert latents.shape == (2000, 2)
  assert set(latents[:, 0]) == set(range(synthetic.NUM_TOPICS))
  assert set(latents[:, 1]) == set(range(synthetic.NUM_STYLES))
  lengths = []
  for line in lines:
    tokens = text.split(line, keep_empty=True)
    # Lines are already tokenised: lowercase words joined by single spaces.
    assert tokens == line.split(' ') and all(tokens), line
    lengths.append(len(tokens))
  assert 5 <= min(lengths) and max(lengths) <= 20
  vocab = {t for line in lines for t in line.split()}
  assert 100 <= len(vocab) <= 200


def test_topic_words_are_disjoint():
  words = [
      set(w for group in topic for w in group) for topic in synthetic._TOPICS
  ]
  assert len(set().union(*words)) == sum(len(w) for w in words)


def test_latent_is_recoverable_from_bag_of_words():
  train, train_latents = synthetic.generate(4000, seed=0)
  test, test_latents = synthetic.generate(1000, seed=1)
  vocab = text.Vocab.build(l.split() for l in train)

  def bags(lines):
    x = np.zeros((len(lines), len(vocab)))
    for i, line in enumerate(lines):
      np.add.at(x[i], vocab.encode(line.split()), 1.0)
    return x / np.linalg.norm(x, axis=1, keepdims=True)

  x_train, x_test = bags(train), bags(test)
  # Nearest centroid by cosine similarity, for topic and style separately
  # (chance: 1/8 and 1/4). Measured: 0.99 and 0.88; content words, which
  # carry no style, blur the style centroids.
  for column, num_classes, min_accuracy in ((0, 8, 0.9), (1, 4, 0.8)):
    centroids = np.stack([
        x_train[train_latents[:, column] == c].mean(0)
        for c in range(num_classes)
    ])
    predicted = np.argmax(x_test @ centroids.T, axis=1)
    accuracy = np.mean(predicted == test_latents[:, column])
    assert accuracy > min_accuracy, (column, accuracy)


def test_topic_reduces_word_entropy():
  lines, latents = synthetic.generate(5000, seed=2)
  words = collections.Counter(w for l in lines for w in l.split())
  conditional = 0.0
  for topic in range(synthetic.NUM_TOPICS):
    counts = collections.Counter(
        w for l, t in zip(lines, latents[:, 0]) if t == topic for w in l.split()
    )
    conditional += sum(counts.values()) / words.total() * _entropy_bits(counts)
  # Measured: about 6.2 bits without and 5.2 bits with the topic.
  assert _entropy_bits(words) - conditional > 0.8
