"""The error boundary every binary shares.

A user error (a flag, a missing or unwritable path, a bad image in strict mode, an
incompatible run, nothing to evaluate) ends the program with one line,
`<program>: <what and where>`, and a non-zero exit status; `--verbose` or the
environment variable OVERFEAT_TRACEBACK=1 adds the traceback. Any other exception is a
bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

from absl import app, flags

TRACEBACK_ENV = "OVERFEAT_TRACEBACK"
VERBOSE_FLAG = "verbose"  # Defined by `run` for every binary.


class UserError(Exception):
    """Something the user asked for cannot work; reported in one line."""


class FlagError(UserError, ValueError):
    """A flag value that cannot work; reported as `<program>: --flag=value: why`."""


# OS errors about a path the user named: missing, unwritable, a file for a directory.
_PATH_ERRORS = (
    FileNotFoundError,
    PermissionError,
    NotADirectoryError,
    IsADirectoryError,
    FileExistsError,
)


def user_error_line(error: BaseException, errors: tuple[type[Exception], ...] = ()) -> str | None:
    """The one line that reports `error` to the user; None when it is unexpected (a bug)."""
    import tensorflow as tf  # After overfeat_tf's oneDNN set-up, like every binary.

    from pipelines import dataset as pipelines_dataset

    if isinstance(error, (UserError, *_PATH_ERRORS, *errors)):
        return _first_line(str(error))
    if isinstance(error, (tf.errors.NotFoundError, tf.errors.PermissionDeniedError)):
        return _first_line(error.message)
    if isinstance(error, tf.errors.InvalidArgumentError):
        return pipelines_dataset.data_error_line(error.message)
    return None


def _first_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if lines else message


def _show_traceback() -> bool:
    verbose = flags.FLAGS[VERBOSE_FLAG].value if VERBOSE_FLAG in flags.FLAGS else False
    return bool(verbose) or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def run(
    main: Callable[[list[str]], int | None], program: str, errors: tuple[type[Exception], ...] = ()
) -> None:
    """Runs an absl `main` inside the error boundary; `errors` are further user errors."""
    if VERBOSE_FLAG not in flags.FLAGS:
        flags.DEFINE_bool(VERBOSE_FLAG, False, "Show the traceback of a user error too.")
    try:
        app.run(main)
    except Exception as e:  # Sorted into user errors and bugs below.
        line = user_error_line(e, errors)
        if line is None:
            raise
        if _show_traceback():
            traceback.print_exc()
        sys.exit(f"{program}: {line}")
