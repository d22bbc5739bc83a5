"""A run folder's safety: one process at a time (an advisory lock), no stale temporary files, and no surprises
in what it holds.

The lock is ``fcntl.flock`` on ``RUN/.lock``, which holds the PID of the process that took it; the kernel
releases it when that process ends, however it ends (kill -9 included), so a stale lock never blocks a resume.
Temporary files (``.NAME.tmp-PID``) are what a write killed between its start and its rename leaves behind;
whoever holds the lock is the only writer, so it may sweep them.
"""

from __future__ import annotations

import fcntl
import os
import re
import stat
from pathlib import Path

from runner.errors import RunError

LOCK_NAME = ".lock"
_TEMPORARY = re.compile(r"^\..+\.tmp-\d+(\.png)?$")
# What a run folder may hold, and of which kind: anything else of these names was put there by hand.
_FILES = ("spec.yaml", "run.json", "metrics.jsonl", "loss.png")
_FOLDERS = ("checkpoints", "samples")


class RunLock:
    """The advisory lock of one run folder, held until ``release`` (or the end of the process)."""

    def __init__(self, run_dir: Path) -> None:
        """Take the lock of ``run_dir``; RunError naming the holder's PID if another process has it."""
        self.path = run_dir / LOCK_NAME
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            raise RunError(f"{self.path}: cannot open the run folder's lock: {err.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(self._fd)
            self.release()
            raise RunError(
                f"{run_dir}: in use by another archspec train (process {holder}); wait for it to end, or "
                "stop it, before resuming this run"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Let go of the lock (closing its file; the file itself stays, holding no one's PID)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def sweep_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files an interrupted write left in ``run_dir`` (the lock holder alone may)."""
    swept = []
    for folder in (run_dir, *(run_dir / name for name in _FOLDERS)):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if _TEMPORARY.match(path.name) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                swept.append(path)
    return swept


def check_layout(run_dir: Path) -> None:
    """RunError if an entry the trainer writes exists as something else (a folder named metrics.jsonl, a file
    named checkpoints, a link): the run would fail at its first write, after training."""
    for name, want in [(n, stat.S_ISREG) for n in _FILES] + [(n, stat.S_ISDIR) for n in _FOLDERS]:
        path = run_dir / name
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as err:
            raise RunError(f"{path}: cannot inspect the run folder: {err.strerror}") from None
        if not want(mode):
            wanted = "a file" if want is stat.S_ISREG else "a folder"
            raise RunError(
                f"{path}: is not {wanted}, as archspec train writes it; move it away to resume this run"
            )


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
