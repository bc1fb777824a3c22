"""The error every layer raises for a user's mistake."""

from __future__ import annotations


class UserError(Exception):
    """A one-line error about the user's input (file, flag, bundle): exit 1, no traceback."""


class OsCallError(Exception):
    """A kernel or library call failed: a one-line message naming the object, and the positive errno."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno
