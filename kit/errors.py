"""The kit's one exception type for problems a competitor can act on.

The CLI prints these as a single clear message (what was wrong, which file and row, what to do)
and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class KitError(Exception):
    """A problem with the user's input or environment, with a message that says what to do."""

    exit_code = 2


class InputError(KitError):
    """A file the kit reads is missing, malformed or inconsistent."""
