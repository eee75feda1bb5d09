"""The embedded default: a tiny TWR-VAE on the built-in synthetic corpus.

  python -m launch.train --config=configs/synthetic.py --workdir=/tmp/twr_syn

No files or downloads: sentences come from `twr_jax.lm.synthetic`, whose words
depend on a hidden topic and style. A model that puts them into z shows it in
its mutual information, active units and reconstruction from z, which is what
this corpus demonstrates (`:twr` against the collapsed `:vae`; README has the
expected numbers). It does NOT show a lower NLL: the latent holds at most
log(8 x 4) = 3.47 nats per sentence, an autoregressive decoder recovers the
topic from the first content word anyway, and the TWR objective is not an
ELBO (SPEC A.9), so the collapsed VAE's IW-NLL is slightly better here. Sizes
are small so that it trains in a few minutes on 2 CPU cores; the learning
rate is 10x the paper's because the run is short.
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
