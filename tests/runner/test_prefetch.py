"""The prefetch thread: order kept, errors passed on, and stopped at once when the consumer leaves early.
(Pinning and the copy to a GPU are checked in tests/test_cuda.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import torch

from runner.prefetch import ahead, prefetched


def _numbered(n: int) -> Iterator[torch.Tensor]:
    for i in range(n):
        yield torch.full((2,), i)


def _wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the prefetch thread did not get there in time"
        time.sleep(0.005)


def _threads() -> int:
    return sum(t.name == "archspec-prefetch" for t in threading.enumerate())


def test_batches_arrive_in_order_prepared_by_the_thread() -> None:
    seen: list[str] = []

    def prepare(batch: torch.Tensor) -> torch.Tensor:
        seen.append(threading.current_thread().name)
        return batch * 10

    got = [int(b[0]) for b in ahead(_numbered(7), prepare)]
    assert got == [0, 10, 20, 30, 40, 50, 60]
    assert set(seen) == {"archspec-prefetch"}
    assert _threads() == 0


def test_an_error_in_the_thread_is_raised_to_the_consumer() -> None:
    def broken() -> Iterator[torch.Tensor]:
        yield torch.zeros(1)
        raise IndexError("index 99 is out of bounds")

    stream = ahead(broken())
    assert next(stream).shape == (1,)
    with pytest.raises(IndexError, match="out of bounds"):
        next(stream)
    assert _threads() == 0


def test_leaving_early_stops_the_thread_without_reading_on() -> None:
    read: list[int] = []

    def endless() -> Iterator[torch.Tensor]:
        i = 0
        while True:
            read.append(i)
            yield torch.tensor([i])
            i += 1

    stream = ahead(endless(), depth=2)
    for batch in stream:
        if int(batch) == 3:
            # Let the thread fill the queue and block on the batch in hand: the cleanup's drain then frees room
            # for that put, which used to let the thread read one batch more.
            _wait_until(lambda: len(read) == 3 + 1 + 2 + 1)
            time.sleep(0.1)
            break
    stream.close()
    assert _threads() == 0
    settled = len(read)
    time.sleep(0.1)
    assert len(read) == settled == 4 + 2 + 1  # what was consumed (0 to 3), the queue, and one in hand


def test_on_the_cpu_batches_pass_through_untouched() -> None:
    batches = list(_numbered(3))
    got = list(prefetched(iter(batches), torch.device("cpu")))
    assert all(a is b for a, b in zip(got, batches, strict=True))
