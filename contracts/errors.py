"""The error every layer raises for a user's mistake."""

from __future__ import annotations


class UserError(Exception):
    """A one-line error about the user's input (file, flag, bundle): exit 1, no traceback."""
