"""The trainer's one user-facing error type."""

from __future__ import annotations


class RunError(Exception):
    """A problem with the user's input or environment, reported as one line (no traceback) and exit code 1."""
