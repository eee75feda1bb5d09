"""DailyDialog response generation (paper Table 5, DD columns).

  python -m launch.train --config=configs/dailydialog.py \
      --config.data.dir=../shared/data/dailydialog --workdir=/tmp/dd
  python -m launch.evaluate --workdir=/tmp/dd --split=test

Expects `train.utts.txt`, `valid.utts.txt`, `test.utts.txt` (one dialogue per
line, turns ended by `__eou__`) in `data.dir`. The KL weight anneals from 0.1
to 1 over 9 epochs as in the original (SPEC B.4). The original trains up to
500 epochs; on a CPU set `--config.train.num_steps`.
"""

try:  # An installed twr_jax carries this folder as twr_jax.configs.
  from twr_jax.configs import dialogue
except ImportError:  # A checkout on sys.path without installing.
  from configs import dialogue


def get_config(variant: str = 'twr'):
  c = dialogue.get_config()
  c.data.format = 'dailydialog'
  c.data.dir = '../shared/data/dailydialog'
  c.data.file_pattern = '{split}.utts.txt'
  # beta = min(1, 0.1 + (s + 1) / (10 num_batches)): 0.1 -> 1 in 9 epochs.
  c.train.kl_schedule.kind = 'linear'
  c.train.kl_schedule.start = 0.1
  c.train.kl_schedule.warmup_epochs = 9.0
  return dialogue.apply_variant(c, variant)
