"""Base configuration of the TWR-VAE language model, and its variants.

Every dataset config (`configs/ptb.py`, ...) starts from `get_config()` here,
changes only what differs, and then applies a variant by name:

  python -m launch.train --config=configs/ptb.py:twr_mean --workdir=/tmp/w

Defaults are the paper's / released code's (SPEC A.3-A.6): emb 512, hidden 256,
latent 32, LSTM, dropout 0.5, Adam lr 1e-4 eps 1e-6 with coupled L2 1e-5, batch
64, loss summed over the batch, seed 999.
"""

import ml_collections
from ml_collections import config_dict

from twr_jax import errors

# Variant name -> overrides (dotted field -> value). `vae*` are the paper's
# VAE-LSTM / GRU / RNN baselines: KL on the last step only, with He et al.'s
# linear KL annealing (0.1 -> 1 over 10 epochs). The other baselines of the
# paper's Table 2 are VAE-LSTMs too (BUILD_NOTES.md, "Baselines"):
#   vae_cyclical  Fu et al.'s (2019) cyclical annealing (4 cycles, ratio 0.5)
#                 instead of the linear one;
#   vae_freebits  + Kingma et al.'s (2016) free bits, 0.5 nats per dimension;
#   bn_vae        + Zhu et al.'s (2020) BN on mu with fixed scale 0.7;
#   lagging_vae   + He et al.'s (2019) aggressive encoder training.
_VAE = {'model.kl_window': 'last', 'train.kl_schedule.kind': 'linear'}
VARIANTS = {
    'twr': {},
    'twr_mean': {'model.z_mode': 'mean'},
    'twr_sum': {'model.z_mode': 'sum'},
    'twr_gru': {'model.cell': 'gru'},
    'twr_rnn': {'model.cell': 'rnn'},
    'twr_last25': {'model.kl_window': 'last25'},
    'twr_last50': {'model.kl_window': 'last50'},
    'twr_last75': {'model.kl_window': 'last75'},
    'vae': _VAE,
    'vae_gru': {**_VAE, 'model.cell': 'gru'},
    'vae_rnn': {**_VAE, 'model.cell': 'rnn'},
    'vae_cyclical': {**_VAE, 'train.kl_schedule.kind': 'cyclical'},
    'vae_freebits': {**_VAE, 'model.free_bits': 0.5},
    'bn_vae': {**_VAE, 'model.bn_gamma': 0.7},
    'lagging_vae': {**_VAE, 'train.lagging.enabled': True},
    # The original code's own VAE baseline (`-par --partial_type last1`): KL on
    # the last step only, constant beta = 1, no annealing (SPEC A.5).
    'vae_no_anneal': {'model.kl_window': 'last'},
    # TWR-VAE with all of the original's training arithmetic (SPEC A.2/A.4):
    # length-sorted fixed batches, KL over the padded length, z at the padded
    # last position. Each factor alone is one of these three fields.
    'twr_compat': {'data.train_order': 'sorted', 'model.kl_length': 'padded',
                   'model.z_length': 'padded'},
}


def train_section(batch_size: int,
                  num_epochs: int) -> ml_collections.ConfigDict:
  """`config.train` fields shared by the language-model and dialogue configs:
  the optimiser (Adam lr 1e-4, eps 1e-6, coupled L2 1e-5: SPEC A.6 / B.5), the
  KL schedule and the loop's cadence."""
  t = ml_collections.ConfigDict()
  t.batch_size = batch_size  # Global, over all devices and processes.
  t.num_epochs = num_epochs
  t.num_steps = config_dict.placeholder(int)  # Overrides num_epochs.
  t.learning_rate = 1e-4
  t.b1 = 0.9
  t.b2 = 0.999
  t.eps = 1e-6
  t.weight_decay = 1e-5  # Coupled L2, like torch.optim.Adam.
  t.grad_clip_norm = config_dict.placeholder(float)  # None: no clip.
  t.loss_reduction = 'sum'  # 'sum' over the batch (paper) or 'mean'.
  t.kl_schedule = ml_collections.ConfigDict(
      dict(kind='constant', beta=1.0, start=0.1, warmup_epochs=10.0,
           logistic_k=0.0025, logistic_x0=2500, cycles=4, ratio=0.5)
  )
  t.parallel = 'auto'  # 'auto' | 'pmap' | 'jit' (see parallel.py).
  # Mixed precision: 'float32' or 'bfloat16' for the matmuls (embeddings'
  # outputs, RNNs, output layer); parameters, optimiser state, RNN states
  # and the losses stay float32 (models.TWRVAE.dtype). Evaluation follows.
  t.compute_dtype = 'float32'
  t.log_every_steps = 50
  t.eval_every_steps = config_dict.placeholder(int)  # None: per epoch.
  t.checkpoint_every_steps = config_dict.placeholder(int)  # None: evals.
  t.keep_checkpoints = 3
  # Resume a workdir even though its config.json differs (recorded in
  # config_changes.jsonl; see twr_jax/core/run_config.py).
  t.allow_config_change = False
  return t


def get_config() -> ml_collections.ConfigDict:
  """The base config (paper sizes; no data source chosen)."""
  c = ml_collections.ConfigDict()
  c.seed = 999
  c.variant = 'twr'

  c.data = ml_collections.ConfigDict()
  # 'text' (files in data.dir), 'synthetic' or 'tfds' (data.tfds_name).
  c.data.source = 'text'
  c.data.dir = ''
  c.data.file_pattern = '{split}.txt'
  c.data.strip_label = False  # He et al.'s Yelp files start with a label.
  # Source 'tfds' (twr_jax/tfds_data.py): the TFDS dataset ('ptb', 'yahoo' or
  # 'yelp'), prepared from the files in data.dir, or downloaded if that is
  # empty and the corpus has public copies; tfds_dir is where TFDS keeps
  # prepared datasets ('': its default, ~/tensorflow_datasets).
  c.data.tfds_name = ''
  c.data.tfds_dir = ''
  c.data.keep_empty_tokens = False  # True: the original's '' tokens (A.1).
  c.data.min_count = 1
  c.data.bucket_size = 8  # Batches are padded to a multiple of this.
  # Training order: 'shuffled' (bucketed by length, reshuffled every epoch)
  # or 'sorted' (the original's, SPEC A.2: the split stable-sorted by length
  # and cut into consecutive batches, visited in the same order every epoch).
  c.data.train_order = 'shuffled'
  # > 1: padded lengths grow geometrically (input_pipeline.bucket_boundaries),
  # e.g. 1.5 for long documents (Yahoo, Yelp: 8 compiled shapes up to 200
  # tokens instead of 26). 1: every multiple of bucket_size (PTB, the paper).
  c.data.bucket_growth = 1.0
  c.data.synthetic = ml_collections.ConfigDict(
      dict(num_train=20000, num_valid=1000, num_test=1000, seed=0)
  )

  c.model = ml_collections.ConfigDict()
  c.model.cell = 'lstm'
  c.model.emb_dim = 512
  c.model.hidden = 256
  c.model.latent = 32
  c.model.z_mode = 'last'
  c.model.kl_window = 'all'
  c.model.dropout = 0.5
  # Which length the objective uses for each sentence (SPEC A.4):
  # 'sentence' (its own, principled) or 'padded' (the original's: the batch's
  # padded length T_b, so pad steps enter). kl_length: the steps the
  # timestep-wise KL averages over; z_length: where z is taken ('last': step
  # T_b) or what it pools ('mean' / 'sum'). Training only: evaluation always
  # uses each sentence's own length (the `paper` protocol, SPEC A.7, applies
  # the original's padding itself).
  c.model.kl_length = 'sentence'
  c.model.z_length = 'sentence'
  # Free bits (Kingma et al. 2016): lambda in nats per latent dimension; the
  # KL term becomes sum_j max(lambda, batch-mean KL_j). 0: off.
  c.model.free_bits = 0.0
  # BN-VAE (Zhu et al. 2020): batch-normalise mu with this fixed scale gamma
  # and a learnt shift (E[KL] >= latent * gamma^2 / 2). None: off.
  c.model.bn_gamma = config_dict.placeholder(float)

  c.train = train_section(batch_size=64, num_epochs=1000)
  # He et al. (2019) aggressive encoder training (twr_jax/lm/lagging.py): before
  # each step, up to max_inner encoder-only steps, stopped when the loss per
  # token of a window of `window` steps is above the previous window's; off
  # for good once the validation MI decreases.
  c.train.lagging = ml_collections.ConfigDict(
      dict(enabled=False, max_inner=100, window=15)
  )

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 64
  c.eval.mi_group_size = 32  # Sentences per MI group (He et al.: 32).
  c.eval.au_threshold = 0.01
  # Greedy reconstruction from the posterior mean (recon_bleu, recon_acc;
  # twr_jax/lm/reconstruction.py): at the 'final' evaluation, at 'every' one
  # (a greedy decode of the valid split each time), or 'off'.
  c.eval.reconstruction = 'final'
  return c


def set_fields(config: ml_collections.ConfigDict,
               overrides: dict[str, object]) -> ml_collections.ConfigDict:
  """Sets dotted fields in place: {'model.cell': 'gru'} -> config.model.cell."""
  for field, value in overrides.items():
    *path, leaf = field.split('.')
    node = config
    for part in path:
      node = node[part]
    node[leaf] = value
  return config


def apply_variant(config: ml_collections.ConfigDict, variant: str,
                  variants=None) -> ml_collections.ConfigDict:
  """Applies a named variant's overrides in place and records its name.

  Args:
    config: the config.
    variant: a key of `variants` ('' means 'twr').
    variants: name -> overrides; default this file's `VARIANTS`.

  Raises:
    errors.ConfigError: `variant` is not a key of `variants`; the message
      lists them on a line of its own.
  """
  variants = VARIANTS if variants is None else variants
  variant = variant or 'twr'
  if variant not in variants:
    # The allowed list on a line of its own, to copy from (issue 13).
    raise errors.ConfigError(
        f'unknown variant {variant!r}; the variants (--config=FILE:VARIANT)'
        f' are:\n{", ".join(variants)}'
    )
  set_fields(config, variants[variant])
  config.variant = variant
  return config
