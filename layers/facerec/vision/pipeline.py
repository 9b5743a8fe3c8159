"""Overlap the stages of batch work in threads, so both CPU cores stay busy.

While stage 2 (FaceNet) works on batch k, stage 1 (decode and MTCNN) works on batch k+1:
ONNX Runtime and most of NumPy release the GIL while they compute. Each stage runs in one
thread, so batches leave in the order they came; queues of ``depth`` batches between the
stages bound the memory in flight; a photo's own error travels with it (``each``) while an
exception of a whole stage stops the pipeline and is raised to the consumer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

_POLL = 0.05  # seconds between checks of the stop flag while a queue is full or empty
_END = object()


class _Failure:
    """An exception raised in a thread, carried to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def batches(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last one shorter), read lazily."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def each(
    function: Callable[[Any], Any], errors: tuple[type[Exception], ...]
) -> Callable[[Sequence], list]:
    """A function of one item -> a function of a batch: an item that is already an exception
    stays as it is, and an item whose call raises one of ``errors`` becomes that exception,
    in its place; the other items are unaffected."""

    def over_batch(items: Sequence) -> list:
        results = []
        for item in items:
            if isinstance(item, Exception):
                results.append(item)
                continue
            try:
                results.append(function(item))
            except errors as error:
                results.append(error)
        return results

    return over_batch


def pipelined(source: Iterable, stages: Sequence[Callable[[Any], Any]], depth: int = 1) -> Iterator:
    """Each batch of ``source`` through every stage in turn, each stage in its own thread;
    yields the last stage's output per batch, in the order of ``source``.

    ``source`` is read in the first stage's thread, only as fast as the stages consume it:
    at most ``depth`` batches wait between two stages. An exception raised by ``source`` or
    a stage stops every thread and is raised here; closing the generator early (``break``,
    ``close()``) stops every thread too. Either way no thread of this pipeline outlives it
    (a stage busy with a batch is waited for).
    """
    stop = threading.Event()
    queues = [queue.Queue(maxsize=depth) for _ in stages]

    def put(channel: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                channel.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def received(channel: queue.Queue) -> Iterator:
        while not stop.is_set():
            try:
                item = channel.get(timeout=_POLL)
            except queue.Empty:
                continue
            if item is _END:
                return
            yield item

    def run(inputs: Iterator, stage: Callable, output: queue.Queue) -> None:
        try:
            for batch in inputs:
                if not put(output, batch if isinstance(batch, _Failure) else stage(batch)):
                    return
            put(output, _END)
        except BaseException as error:  # any failure, to be raised in the consumer
            put(output, _Failure(error))
        finally:
            close = getattr(inputs, "close", None)
            if close is not None:
                close()

    inputs = [iter(source), *(received(channel) for channel in queues[:-1])]
    threads = [
        threading.Thread(
            target=run, args=(inputs[n], stage, queues[n]), name=f"pipeline-stage-{n}", daemon=True
        )
        for n, stage in enumerate(stages)
    ]
    for thread in threads:
        thread.start()
    try:
        while (item := queues[-1].get()) is not _END:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()
