"""Sub-commands the trainer adds to ``archspec`` (train, sample, data, bench).

``archspec.cli`` finds ``register`` through the ``archspec.commands`` entry point, so the compiler never imports
the runner. This module must stay light: argparse only; torch is imported inside the commands.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the runner's sub-commands; each sets ``func(args) -> exit code``."""
