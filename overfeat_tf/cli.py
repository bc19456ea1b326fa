"""What every binary shares: a bad flag or input ends the program with one line."""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app


class FlagError(ValueError):
    """A flag value that cannot work; reported as `<program>: --flag=value: why`."""


def run(main: Callable[[list[str]], int | None], program: str,
        errors: tuple[type[Exception], ...] = ()) -> None:
    """Runs an absl `main`; `FlagError` and `errors` exit with one line naming `program`."""
    try:
        app.run(main)
    except (FlagError, *errors) as e:
        sys.exit(f"{program}: {e}")
