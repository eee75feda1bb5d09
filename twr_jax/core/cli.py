"""The launchers' `absl.app.run`: a user error is one block, not a traceback.

Every `launch/*.py` entry point calls `cli.run(main)` instead of
`app.run(main)`. A `errors.UserError` (a bad data file, config field,
workdir or flag value; issue 13) raised by `main`, or while the flags are
parsed (ml_collections loads `--config=FILE:VARIANT` then, so an unknown
variant surfaces before `main`), prints its message to stderr, which says
what is wrong, where (file:line, the field or the flag) and how to fix it,
and exits with status `EXIT_USER_ERROR` (2). `--verbose`, or the environment
variable `TWR_JAX_VERBOSE=1`, shows the traceback instead. Anything else is a
bug and keeps absl's behaviour: the traceback.
"""

from collections.abc import Callable, Sequence
import functools
import os
import sys
from typing import Any

from absl import app
from absl import flags

from twr_jax import errors

EXIT_USER_ERROR = 2
VERBOSE_ENV = 'TWR_JAX_VERBOSE'

flags.DEFINE_bool(
    'verbose', False,
    'Show the traceback of a user error (bad data file, config field, workdir'
    f' or flag value) instead of one message; also {VERBOSE_ENV}=1.')
FLAGS = flags.FLAGS

_HINT = f'(for the traceback: --verbose or {VERBOSE_ENV}=1)'


def run(main: Callable[[list[str]], Any],
        argv: Sequence[str] | None = None) -> None:
  """`app.run(main)`, with user errors reported as one block (exit 2)."""
  app.run(_guarded(main), argv=None if argv is None else list(argv),
          flags_parser=_parse_flags)


def verbose(argv: Sequence[str] = ()) -> bool:
  """Whether tracebacks of user errors were asked for.

  Args:
    argv: the command line, read when the flags could not be parsed.
  """
  if os.environ.get(VERBOSE_ENV, '').lower() not in ('', '0', 'false', 'no'):
    return True
  if FLAGS.is_parsed():
    return FLAGS.verbose
  # Parsing stopped at a bad flag, maybe before --verbose: look for it.
  return any(a in ('--verbose', '--verbose=true', '--verbose=1')
             for a in argv)


def format_error(error: errors.UserError, where: str = '') -> str:
  """The block printed for `error`: its type, `where` and its message."""
  return f'{type(error).__name__}: {where}{error}\n{_HINT}\n'


def user_error(error: BaseException | None) -> errors.UserError | None:
  """The innermost `UserError` in `error`'s chain of causes, or None.

  ml_collections re-raises an error of `get_config` as a new exception of
  the same type holding the traceback text, and absl re-raises that as an
  `IllegalFlagValueError`; the innermost one holds the plain message.
  """
  found, seen = None, set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, errors.UserError):
      found = error
    error = error.__cause__ or error.__context__
  return found


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return FLAGS(argv)
  except flags.Error as e:
    user = user_error(e)
    if user is not None and not verbose(argv):
      # absl's message starts 'flag --config=FILE:VARIANT: ...'.
      message = str(e)
      where = message.split(': ', 1)[0] + ': ' if message.startswith(
          'flag --') else ''
      sys.stderr.write(format_error(user, where))
      sys.exit(EXIT_USER_ERROR)
    # absl's own report (app.parse_flags_with_usage), which holds the
    # traceback text that ml_collections put in the message.
    sys.stderr.write(f'FATAL Flags parsing error: {e}\n'
                     'Pass --helpshort or --helpfull to see help on flags.\n')
    sys.exit(1)


def _guarded(main: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
  @functools.wraps(main)
  def guarded(argv):
    try:
      return main(argv)
    except errors.UserError as e:
      if verbose(argv):
        raise
      sys.stderr.write(format_error(e))
      sys.exit(EXIT_USER_ERROR)

  return guarded
