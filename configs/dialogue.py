"""Base configuration of the TWR-VAE dialogue model, and its variants.

`configs/switchboard.py` and `configs/dailydialog.py` start from `get_config()`
here and set the corpus; then a variant is applied by name:

  python -m launch.train --config=configs/dailydialog.py:twr \
      --config.data.dir=../shared/data/dailydialog --workdir=/tmp/dd

Defaults are the released code's (SPEC B.3-B.6): shared embedding 200,
bidirectional utterance GRU 300, context GRU 300, latent 200, decoder GRU 500
from [z; c], dropout 0.5 (words) / 0.25 (context input), Adam lr 1e-4 eps 1e-6
with coupled L2 1e-5, batch 96, loss summed over the batch, seed 1111; 10
greedy prior samples of 40 tokens per test context.

Variants:
  twr     the model with the standard KL mask (each example's KL averaged over
          its own context turns).
  compat  the original's arithmetic: KL over the batch's longest context with
          padded turns included (SPEC B.4) and the shared embedding updated
          twice per step (SPEC B.5).
  tiny    small sizes for tests and smoke runs (any corpus).
"""

import ml_collections

try:  # An installed twr_jax carries this folder as twr_jax.configs.
  from twr_jax.configs import default
except ImportError:  # A checkout on sys.path without installing.
  from configs import default

_TINY = {
    'data.vocab_size': 300, 'model.emb_dim': 16, 'model.utt_hidden': 16,
    'model.ctx_hidden': 16, 'model.latent': 8, 'train.batch_size': 8,
    'train.learning_rate': 1e-3, 'train.log_every_steps': 10,
    'eval.batch_size': 32, 'eval.sample_batch_size': 32,
}
VARIANTS = {
    'twr': {},
    'compat': {'model.kl_mask': 'padded',
               'train.double_update_embedding': True},
    'tiny': _TINY,
}


def get_config() -> ml_collections.ConfigDict:
  """The base dialogue config (paper sizes; no corpus chosen)."""
  c = ml_collections.ConfigDict()
  c.task = 'dialogue'
  c.seed = 1111
  c.variant = 'twr'

  c.data = ml_collections.ConfigDict()
  c.data.format = ''  # 'switchboard' (*.jsonl) or 'dailydialog' (*.utts.txt).
  # 'files': read data.dir's files; 'tfds': the corpus's TFDS dataset
  # (twr_jax/tfds_data.py, no TensorFlow), kept in tfds_dir ('' = TFDS's
  # default) and prepared from the standard files in data.dir (DailyDialog:
  # downloaded when data.dir is empty). The same dialogues either way.
  c.data.source = 'files'
  c.data.tfds_dir = ''
  c.data.dir = ''
  c.data.file_pattern = ''  # e.g. '{split}.jsonl'; {split} is a file name.
  # Which file each split reads: e.g. --config.data.splits.train=valid
  # trains on the valid file when the train file is not available.
  c.data.splits = ml_collections.ConfigDict(
      dict(train='train', valid='valid', test='test'))
  c.data.vocab_size = 10000  # Most frequent training tokens kept (+ specials).
  c.data.window = 10  # Context window W: up to W - 1 context turns.
  c.data.max_utt_len = 40  # Turns are truncated to this many tokens.

  c.model = ml_collections.ConfigDict()
  c.model.emb_dim = 200
  c.model.utt_hidden = 300
  c.model.ctx_hidden = 300
  c.model.latent = 200
  c.model.emb_dropout = 0.5
  c.model.ctx_dropout = 0.25
  c.model.kl_mask = 'valid'  # 'valid' or the original's 'padded'.
  # GloVe / word2vec text file to initialise the embedding from ('' = N(0, 1)
  # init, as the released TWR-VAE code does by default, SPEC B.3).
  c.model.word_vectors = ''

  c.train = default.train_section(batch_size=96, num_epochs=500)
  # True: the original's two Adam updates per step of the shared embedding,
  # which its optimiser lists twice (SPEC B.5).
  c.train.double_update_embedding = False
  # True: training batches hold only real tokens, context turns and responses
  # laid end to end (dialogue_data.pack_batch): the same losses and gradients
  # as the padded batches up to float rounding, ~3x less work on DailyDialog.
  c.train.pack_batches = True
  # An "epoch" of the KL schedule is the batches of one epoch (see
  # DialogueTask.kl_steps_per_epoch); dailydialog.py sets the warm-up.

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 256  # Contexts per batch of the loss evaluation.
  c.eval.num_samples = 10  # Prior samples (responses) per context.
  c.eval.max_len = 40  # Greedy decoding steps.
  c.eval.sample_batch_size = 256  # Contexts decoded together.
  c.eval.word_vectors = ''  # Vectors for the BOW metrics ('' skips them).
  c.eval.references = ''  # Multi-reference file (JSON lines), optional.
  return c


def apply_variant(config: ml_collections.ConfigDict,
                  variant: str) -> ml_collections.ConfigDict:
  """Applies a named dialogue variant's overrides in place."""
  return default.apply_variant(config, variant, VARIANTS)
