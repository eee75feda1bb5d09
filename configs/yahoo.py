"""Yahoo Answers language model (paper Tables 2-3, Yahoo column).

  python -m launch.train --config=configs/yahoo.py:twr \
      --config.data.dir=/data/yahoo --workdir=/tmp/yahoo_twr

Expects He et al.'s (2019) split, one document per line with `_UNK` tokens:
`yahoo.train.txt`, `yahoo.valid.txt`, `yahoo.test.txt` (100k/10k/10k).
"""

try:  # An installed twr_jax carries this folder as twr_jax.configs.
  from twr_jax.configs import default
except ImportError:  # A checkout on sys.path without installing.
  from configs import default


def get_config(variant: str = 'twr'):
  c = default.get_config()
  c.data.dir = 'data/yahoo'
  c.data.file_pattern = 'yahoo.{split}.txt'
  return default.apply_variant(c, variant)
