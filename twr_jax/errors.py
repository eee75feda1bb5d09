"""The project's error types: faults a user can fix, as opposed to bugs.

A `UserError` is raised for a bad data file, config field, workdir or flag
value. Its message is complete on its own (what is wrong, where: file:line or
the field, and how to fix it), so the launchers print it as one block and
exit non-zero without a traceback. Everything else is a bug and keeps its
traceback.

Each is also a `ValueError`, so code written against the earlier ValueErrors
keeps working.
"""


class UserError(ValueError):
  """Something the user can fix; the message says what, where and how."""


class DataError(UserError):
  """A data file is missing or malformed; the message names file and line."""


class ConfigError(UserError):
  """A config field or flag value is not allowed; the message names it."""


class RunError(UserError):
  """A workdir cannot be used as asked (not a run, incompatible config,
  no such checkpoint); the message names the workdir."""
