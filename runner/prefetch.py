"""Batches from host memory to a GPU without making a step wait: the path for data that does not fit on the GPU.

A copy to the GPU from ordinary (pageable) memory makes the host wait for the GPU's queue to drain, every step.
From page-locked (pinned) memory it is queued like a kernel and the host runs ahead. A background thread
gathers each batch and pins it while the GPU trains on the previous ones; the trainer's thread only queues the
copy. (Data that fits is copied to the GPU once instead, which needs none of this.)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar, cast

import torch

from runner.data import Batch

# A batch of images alone, or with its labels and paired inputs (a conditional run's).
B = TypeVar("B", bound=torch.Tensor | Batch)

_END = object()  # the producer finished its batches
_FAILED = object()  # the producer died of an exception it could not pass on (its traceback is printed)


def prefetched(batches: Iterator[B], device: torch.device) -> Generator[B, None, None]:
    """``batches`` (on the CPU) delivered on ``device``: gathered and pinned ahead by a thread, copied without
    blocking. On the CPU the batches pass through as they are. Close the generator to stop the thread early."""
    if device.type != "cuda":
        yield from batches
        return
    # The thread's CUDA device is device 0 until told otherwise: pinning there would open a context on GPU 0
    # in every torchrun process.
    pin = _each_tensor(torch.Tensor.pin_memory)
    move = _each_tensor(lambda t: t.to(device, non_blocking=True))
    for pinned in ahead(batches, pin, start=lambda: torch.cuda.set_device(device)):
        yield move(pinned)


def ahead(
    batches: Iterator[B],
    prepare: Callable[[B], B] = lambda batch: batch,
    depth: int = 2,
    start: Callable[[], None] | None = None,
) -> Generator[B, None, None]:
    """``prepare(batch)`` for each batch, computed by a background thread up to ``depth`` batches ahead
    (the thread runs ``start()`` first).

    The order is kept. An error in the thread is raised here. Closing the generator (or leaving a ``for`` loop
    over it and dropping it) stops the thread without reading the remaining batches.
    """
    channel: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    worker = threading.Thread(
        target=_produce, args=(batches, prepare, start, channel, stop), name="archspec-prefetch", daemon=True
    )
    worker.start()
    try:
        while True:
            item = channel.get()
            if item is _END:
                return
            if item is _FAILED:
                raise RuntimeError("the batch prefetch thread failed (its traceback is printed above)")
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]  # the queue holds what prepare returned
    finally:
        stop.set()
        _drain(channel)  # a producer blocked on a full queue sees the stop at once
        worker.join()


def _each_tensor(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[B], B]:
    """``fn`` applied to a batch tensor, or to each tensor of a Batch."""

    def apply(batch: B) -> B:
        if isinstance(batch, Batch):
            labels, inputs = batch.labels, batch.inputs
            moved = Batch(
                fn(batch.images),
                None if labels is None else fn(labels),
                None if inputs is None else fn(inputs),
            )
            return cast(B, moved)
        return cast(B, fn(batch))

    return apply


def _produce(
    batches: Iterator[B],
    prepare: Callable[[B], B],
    start: Callable[[], None] | None,
    channel: queue.Queue[object],
    stop: threading.Event,
) -> None:
    outcome: object = _FAILED
    try:
        if start is not None:
            start()
        # The stop is looked at before each pull and after each put: ``ahead``'s cleanup drains the queue, which
        # lets a put that was waiting succeed, and the batch after it must not be read.
        while not stop.is_set():
            batch = next(batches, None)
            if batch is None:
                break
            if not _offer(channel, prepare(batch), stop) or stop.is_set():
                return
        outcome = _END
    except (RuntimeError, ValueError, IndexError, OSError) as err:
        outcome = err  # what indexing, pinning or reading can raise: handed to the consumer to raise
    finally:
        _offer(channel, outcome, stop)


def _offer(channel: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    """Put ``item`` in the queue unless the consumer stopped first; whether it was put."""
    while not stop.is_set():
        try:
            channel.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _drain(channel: queue.Queue[object]) -> None:
    while True:
        try:
            channel.get_nowait()
        except queue.Empty:
            return
