"""Run configurations (ml_collections), one file per dataset.

In a checkout this folder is the top-level package `configs`; an installed
twr_jax carries it as `twr_jax.configs`. `config_path` maps a short name such
as `ptb:twr_mean` to the file path that `--config` expects, for the console
entry points (`twr-train --config=ptb:twr_mean`).
"""

import os

NAMES = ('synthetic', 'ptb', 'yahoo', 'yelp', 'switchboard', 'dailydialog')


def config_path(spec: str) -> str:
  """'ptb:twr' -> '/path/to/configs/ptb.py:twr'; other specs unchanged."""
  name, sep, variant = spec.partition(':')
  if name in NAMES and not os.path.exists(name):
    return os.path.join(os.path.dirname(__file__), f'{name}.py') + sep + variant
  return spec


def resolve_config_flags(argv: list[str]) -> list[str]:
  """Rewrites `--config=NAME[:VARIANT]` (and `--config NAME`) in argv."""
  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith('--config='):
      out[i] = '--config=' + config_path(arg[len('--config='):])
    elif arg == '--config' and i + 1 < len(out):
      out[i + 1] = config_path(out[i + 1])
  return out
