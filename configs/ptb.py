"""Penn Treebank language model (paper Table 2, PTB column).

  python -m launch.train --config=configs/ptb.py:twr \
      --config.data.dir=../shared/data/ptb --workdir=/tmp/ptb_twr

Expects `train.txt`, `valid.txt`, `test.txt` (Mikolov's split, one sentence per
line) in `data.dir`. The paper trains 1000 epochs; on a CPU set
`--config.train.num_steps`.
"""

try:  # An installed twr_jax carries this folder as twr_jax.configs.
  from twr_jax.configs import default
except ImportError:  # A checkout on sys.path without installing.
  from configs import default


def get_config(variant: str = 'twr'):
  c = default.get_config()
  c.data.dir = '../shared/data/ptb'
  return default.apply_variant(c, variant)
