"""Reading a run back from its workdir: config, vocabulary, model, parameters.

Used by the evaluation, generation and interpolation launchers, so that they
see exactly the model that training saved. Needs no trainer: the task
supplies the model and its parameter template (`tasks.load_run`).
"""

import dataclasses
import json
import os
from typing import Any, Callable

from flax.training import train_state
import ml_collections

from twr_jax import errors
from twr_jax.core import checkpoint
from twr_jax.core import run_config
from twr_jax.core import text


@dataclasses.dataclass
class Run:
  """A trained run.

  Attributes:
    config: the run's resolved config (from config.json).
    vocab: its vocabulary (vocab.txt; a `DialogVocab` for dialogue runs).
    model: the model built from the config (`TWRVAE` or `DialogTWRVAE`).
    params: host parameters of the restored checkpoint.
    step: the checkpoint's step.
  """

  config: ml_collections.ConfigDict
  vocab: text.Vocab
  model: Any
  params: Any
  step: int


def parse_step(value: str) -> int | str:
  """A `--step` flag value: 'best', 'last' or a step number."""
  if value in ('best', 'last'):
    return value
  try:
    return int(value)
  except ValueError:
    raise errors.ConfigError(f"--step must be 'best', 'last' or a number,"
                             f' got {value!r}') from None


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run config a training workdir saved (its config.json).

  Raises:
    errors.RunError: `workdir` is a file, or a folder without config.json
      (not a training run).
  """
  resolved = run_config.resolve_workdir(workdir)
  path = os.path.join(resolved, run_config.CONFIG_FILE)
  if not os.path.exists(path):
    raise errors.RunError(
        f'{workdir}: not a training run (no {run_config.CONFIG_FILE});'
        ' --workdir must be the folder a training run wrote'
        ' (python -m launch.train --workdir=...).')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_run(workdir: str, load_model: Callable, step: int | str = 'best',
             compute_dtype: str | None = None) -> Run:
  """Restores a checkpoint of a training workdir (`tasks.load_run` picks the
  run's task for you).

  Args:
    workdir: the training workdir (relative to the current directory, or
      absolute).
    load_model: the task's `(config, workdir) -> (vocab, model, parameter
      template, optimiser)` (`lm.task.load_model`, `dialogue.task.load_model`).
    step: 'best' (lowest validation loss), 'last', or an int step of the
      kept last-N checkpoints.
    compute_dtype: 'float32' or 'bfloat16' overrides the run's
      `train.compute_dtype` for the model built here (None: the run's).

  Raises:
    errors.RunError: not a training workdir, no such checkpoint (the message
      lists the kept steps), or a checkpoint that does not fit the config.
  """
  config = load_config(workdir)
  workdir = run_config.resolve_workdir(workdir)
  if compute_dtype:
    config.train.compute_dtype = compute_dtype
  vocab, model, params, tx = load_model(config, workdir)
  state = train_state.TrainState.create(apply_fn=model.apply, params=params,
                                        tx=tx)
  ckpt = checkpoint.Checkpointer(workdir, config.train.keep_checkpoints)
  which = None if step == 'last' else step
  restored, found = ckpt.restore(checkpoint.saveable(state), which)
  ckpt.close()
  if restored is None:
    raise errors.RunError(
        f'{workdir}/checkpoints: no {step!r} checkpoint to restore; has the'
        ' run saved one yet?')
  return Run(config=config, vocab=vocab, model=model,
             params=restored['params'], step=int(found))
