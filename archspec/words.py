"""Numbers in messages: ``1 channel``, ``3 channels``, ``1,024 images``."""

from __future__ import annotations


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``n`` with thousands separators and ``noun``, or its plural (``noun + 's'`` unless ``many`` is given)."""
    return f"{n:,} {noun if n == 1 else (many or noun + 's')}"
