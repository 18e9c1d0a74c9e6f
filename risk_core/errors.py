"""The one exception type that user-facing layers turn into a one-line message and an exit code."""

import sys
from collections.abc import Callable


class PttrustError(Exception):
    """A failure the user can act on: printed as one line, never as a traceback.

    ``exit_code`` follows the CLI convention: 2 for usage errors (bad flags, unknown names,
    unreadable input), 1 for everything else that stops a run.
    """

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(PttrustError):
    """Bad input from the user (an unknown model, a layer out of range, a malformed file)."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=2)


def exit_on_error(main: Callable[[], None]) -> None:
    """Run a script's ``main``: a PttrustError ends it with one line on stderr and the error's exit code."""
    try:
        main()
    except PttrustError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
