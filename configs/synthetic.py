"""The embedded default: a tiny TWR-VAE on the built-in synthetic corpus.

  python -m launch.train --config=configs/synthetic.py --workdir=/tmp/twr_syn

No files or downloads: sentences come from `twr_jax.synthetic`, whose words
depend on a hidden topic and style, so a model that uses z has a lower NLL and
a high mutual information. Sizes are small so that it trains in a few minutes
on 2 CPU cores; the learning rate is 10x the paper's because the run is short.
Variants are the same as for PTB (e.g. configs/synthetic.py:vae).
"""

try:  # An installed twr_jax carries this folder as twr_jax.configs.
  from twr_jax.configs import default
except ImportError:  # A checkout on sys.path without installing.
  from configs import default


def get_config(variant: str = 'twr'):
  c = default.get_config()
  c.seed = 0
  c.data.source = 'synthetic'
  c.data.synthetic.num_train = 20000
  c.model.emb_dim = 64
  c.model.hidden = 128
  c.model.latent = 16
  c.train.learning_rate = 1e-3
  c.train.num_epochs = 10
  c.train.log_every_steps = 100
  c = default.apply_variant(c, variant)
  # He et al.'s 10-epoch warm-up is longer than this whole run.
  c.train.kl_schedule.warmup_epochs = 1.0
  return c
