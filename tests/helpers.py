"""Small helpers for tests that edit spec text and find positions in it."""

from __future__ import annotations


def edit(text: str, old: str, new: str) -> str:
    """``text`` with the one occurrence of ``old`` replaced by ``new``."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


def where(text: str, snippet: str) -> tuple[int, int]:
    """1-based line and column of the first occurrence of ``snippet``, or of its ``|`` if it has one."""
    offset = max(snippet.find("|"), 0)
    before = text[: text.index(snippet.replace("|", "")) + offset]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
