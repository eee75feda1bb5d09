"""Where a run's sentences come from: text files or the synthetic corpus.

The vocabulary is built from the training split only, saved in the workdir,
and reused from there by every later run (resume, evaluation), so ids never
change under a checkpoint.
"""

import dataclasses
import os

from absl import logging
import jax
import ml_collections
import numpy as np

from twr_jax.core import text
from twr_jax.lm import input_pipeline
from twr_jax.lm import synthetic

SPLITS = ('train', 'valid', 'test')
VOCAB_FILE = 'vocab.txt'


@dataclasses.dataclass
class LMData:
  """Encoded splits of a language-modelling corpus.

  Attributes:
    vocab: the training vocabulary.
    splits: split name -> list of <i32>[L] sentences, BOS ... EOS.
  """

  vocab: text.Vocab
  splits: dict[str, list[np.ndarray]]


def read_lines(config: ml_collections.ConfigDict,
               splits=SPLITS) -> dict[str, list[str]]:
  """The raw lines of each split, from `config.data`."""
  d = config.data
  if d.source == 'synthetic':
    s = d.synthetic
    lines = synthetic.make_splits(
        seed=s.seed, num_train=s.num_train, num_valid=s.num_valid,
        num_test=s.num_test,
    )
    return {k: lines[k] for k in splits}
  if d.source == 'tfds':
    # Imported here: TFDS takes ~0.5 s to import and only this source needs it.
    from twr_jax import tfds_data  # pylint: disable=g-import-not-at-top
    return tfds_data.load_lm_lines(
        d.tfds_name, d.tfds_dir or None, tuple(splits),
        manual_dir=d.dir or None, strip_label=d.strip_label,
    )
  return text.read_corpus(
      d.dir, file_pattern=d.file_pattern, splits=tuple(splits),
      strip_label=d.strip_label,
  )


def load(config: ml_collections.ConfigDict, workdir: str | None = None,
         splits=SPLITS) -> LMData:
  """Reads, tokenises and encodes the splits; builds or reloads the vocab.

  Args:
    config: the run config.
    workdir: where the vocab is saved / reused (None: build, don't save).
    splits: which splits to encode ('train' is read whenever the vocab has to
      be built).
  """
  vocab_path = os.path.join(workdir, VOCAB_FILE) if workdir else None
  have_vocab = vocab_path is not None and os.path.exists(vocab_path)
  needed = tuple(splits) if have_vocab else tuple(dict.fromkeys(('train',) + tuple(splits)))
  lines = read_lines(config, needed)
  keep_empty = config.data.keep_empty_tokens
  if have_vocab:
    vocab = text.Vocab.load(vocab_path)
    logging.info('Reusing vocabulary %s (%d entries)', vocab_path, len(vocab))
  else:
    vocab = text.Vocab.build(
        [text.split(l, keep_empty=keep_empty) for l in lines['train']],
        min_count=config.data.min_count,
    )
    logging.info('Built vocabulary: %d entries', len(vocab))
    if vocab_path and jax.process_index() == 0:
      vocab.save(vocab_path)
  encoded = {
      s: input_pipeline.encode_lines(lines[s], vocab, keep_empty=keep_empty)
      for s in splits
  }
  for s, seqs in encoded.items():
    logging.info('%s: %d sentences, %d tokens (excl. BOS/EOS)', s, len(seqs),
                 sum(len(x) - 2 for x in seqs))
  return LMData(vocab=vocab, splits=encoded)
