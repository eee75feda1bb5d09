"""Yelp 2015 language model (paper Tables 2-3, Yelp15 column).

  python -m launch.train --config=configs/yelp.py:twr \
      --config.data.dir=/data/yelp --workdir=/tmp/yelp_twr

Expects He et al.'s (2019) split: `yelp.train.txt`, `yelp.valid.txt`,
`yelp.test.txt` (100k/10k/10k), one review per line. Their files start each
line with a rating label, which `data.strip_label` removes (the original TWR
code kept it as the first token); set `--config.data.strip_label=False` for
label-free copies.
"""

try:  # An installed twr_jax carries this folder as twr_jax.configs.
  from twr_jax.configs import default
except ImportError:  # A checkout on sys.path without installing.
  from configs import default


def get_config(variant: str = 'twr'):
  c = default.get_config()
  c.data.dir = 'data/yelp'
  c.data.file_pattern = 'yelp.{split}.txt'
  c.data.strip_label = True
  return default.apply_variant(c, variant)
