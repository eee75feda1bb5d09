"""Switchboard response generation (paper Table 5, SW columns).

  python -m launch.train --config=configs/switchboard.py \
      --config.data.dir=DIR --workdir=/tmp/sw
  python -m launch.evaluate --workdir=/tmp/sw --split=test

Expects NeuralDialog-CVAE's `train.jsonl`, `valid.jsonl`, `test.jsonl` in
`data.dir`. ../shared/data/switchboard has only valid and test; train on the
valid file there with `--config.data.splits.train=valid`. No KL annealing
(SPEC B.4).
"""

try:  # An installed twr_jax carries this folder as twr_jax.configs.
  from twr_jax.configs import dialogue
except ImportError:  # A checkout on sys.path without installing.
  from configs import dialogue


def get_config(variant: str = 'twr'):
  c = dialogue.get_config()
  c.data.format = 'switchboard'
  c.data.dir = '../shared/data/switchboard'
  c.data.file_pattern = '{split}.jsonl'
  return dialogue.apply_variant(c, variant)
