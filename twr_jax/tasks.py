"""The task registry: the one module that names both tasks.

`config.task` ('lm', the default, or 'dialogue') picks an entry; the loop
(`train.py`), run loading and the launchers ask the registry instead of
testing the task's name themselves.
"""

import dataclasses
from typing import Any, Callable

import jax
import ml_collections

from twr_jax import errors
from twr_jax.core import parallel
from twr_jax.core import task as task_lib
from twr_jax.core import workdir as workdir_lib
from twr_jax.dialogue import generate as dialogue_generate
from twr_jax.dialogue import report as dialogue_report
from twr_jax.dialogue import task as dialogue_task
from twr_jax.lm import generate as lm_generate
from twr_jax.lm import interpolate as lm_interpolate
from twr_jax.lm import report as lm_report
from twr_jax.lm import task as lm_task

# A launcher command: (workdir, step, the launcher's options) -> text to print.
Command = Callable[[str, int | str, dict[str, Any]], str]


@dataclasses.dataclass(frozen=True)
class Entry:
  """What the rest of the package needs to know about a task.

  Attributes:
    make: (config, workdir, layout, eval_key) -> the loop's `core.task.Task`.
    validate: config -> None; raises errors.ConfigError naming the field.
    load_model: (config, workdir) -> (vocab, model, parameter template,
      optimiser) of a saved run (`core.workdir.load_run`).
    commands: launcher name ('evaluate', 'generate', 'interpolate') ->
      `Command`; a task without one of them has no entry for it.
  """

  make: Callable[..., task_lib.Task]
  validate: Callable[[ml_collections.ConfigDict], None]
  load_model: Callable[..., tuple[Any, Any, Any, Any]]
  commands: dict[str, Command]


TASKS = {
    'lm': Entry(
        make=lm_task.LMTask, validate=lm_task.validate,
        load_model=lm_task.load_model,
        commands=dict(evaluate=lm_report.evaluate_command,
                      generate=lm_generate.generate_command,
                      interpolate=lm_interpolate.interpolate_command)),
    'dialogue': Entry(
        make=dialogue_task.DialogueTask, validate=dialogue_task.validate,
        load_model=dialogue_task.load_model,
        commands=dict(evaluate=dialogue_report.evaluate_command,
                      generate=dialogue_generate.generate_command)),
}


def name(config: ml_collections.ConfigDict) -> str:
  """`config.task` ('lm' when absent, as in configs saved before it existed).

  Raises:
    errors.ConfigError: not a registered task.
  """
  task = config.get('task', 'lm')
  if task not in TASKS:
    raise errors.ConfigError(
        f'config.task = {task!r}: choose '
        + ' or '.join(repr(t) for t in TASKS))
  return task


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks a run config before anything is built (the task's `validate`)."""
  TASKS[name(config)].validate(config)


def make_task(config: ml_collections.ConfigDict, workdir: str,
              layout: parallel.Layout, eval_key: jax.Array) -> task_lib.Task:
  """The training loop's task for `config` (see `core/task.py`)."""
  return TASKS[name(config)].make(config, workdir, layout, eval_key)


def load_run(workdir: str, step: int | str = 'best',
             compute_dtype: str | None = None) -> workdir_lib.Run:
  """A trained run of either task (`core.workdir.load_run`)."""
  config = workdir_lib.load_config(workdir)
  return workdir_lib.load_run(workdir, TASKS[name(config)].load_model, step,
                              compute_dtype)


def command(workdir: str, which: str) -> Command:
  """The launcher command `which` for the run in `workdir`.

  Raises:
    errors.RunError: `workdir` is not a training run.
    errors.ConfigError: the run's task has no such command.
  """
  task = name(workdir_lib.load_config(workdir))
  commands = TASKS[task].commands
  if which not in commands:
    offered = ', '.join(_TITLES[t] for t, e in TASKS.items()
                        if which in e.commands)
    raise errors.ConfigError(
        f'{workdir} is a {_TITLES[task]} run: {_NOUNS[which]} is offered for'
        f' {offered} runs only.')
  return commands[which]


_TITLES = {'lm': 'language-model', 'dialogue': 'dialogue'}
_NOUNS = {'evaluate': 'evaluation', 'generate': 'generation',
          'interpolate': 'interpolation'}
