"""The trainer's one user-facing error type."""

from __future__ import annotations


class RunError(Exception):
    """A problem with the user's input or environment, reported as one line (no traceback) and exit code 1."""


def error_summary(err: BaseException) -> str:
    """One line for ``err``: its message's first line, and the first detail line when that first line only
    introduces a list (torch's ``Error(s) in loading state_dict for Sequential:`` followed by one tab-indented
    line per problem), so that the line says what is wrong, not only that something is."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    head = lines[0]
    if not head.endswith(":") or len(lines) == 1:
        return head
    more = len(lines) - 2
    return f"{head} {lines[1].rstrip('.')}" + (f" ({more} more)" if more else "")
