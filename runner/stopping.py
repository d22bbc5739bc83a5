"""Stopping a run on a signal: SIGINT (Ctrl-C), SIGTERM (what torchrun, Slurm and Kubernetes send) and SIGHUP (a
closed terminal) all ask the run to stop after the current step and save; a second one stops at once.

The first signal only sets a flag that the training loop reads after each step, and that the final writes
(the last sample grid, ``last.pt``, loss.png) ignore, so they always complete. A second signal raises ``StopNow``
from wherever the process is: a write in progress loses only its temporary file.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopNow(KeyboardInterrupt):
    """A second stop signal: leave at once, saving nothing more."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequest:
    """Which stop signal arrived first, if any."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str | None:
        """``SIGTERM``: the signal's name, for run.json and messages."""
        return signal.Signals(self.signum).name if self.signum is not None else None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, SIGINT, SIGTERM and SIGHUP set the request (the first) or raise StopNow (any later one).

    Off the main thread (where Python cannot install handlers) the request never fires and signals act as usual.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if request.requested:
            raise StopNow(signum)
        request.signum = signum

    previous = {signum: signal.signal(signum, handle) for signum in STOP_SIGNALS}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
