"""The stage pipeline: order kept, errors per item kept in place, memory bounded, and no
thread left behind after an exception or a consumer that stops early."""

from __future__ import annotations

import threading
import time

import pytest

from facerec.vision.pipeline import batches, each, pipelined


def pipeline_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("pipeline-")]


@pytest.fixture(autouse=True)
def no_thread_left():
    before = threading.active_count()
    yield
    assert not pipeline_threads()
    assert threading.active_count() == before


def test_batches_are_consecutive_and_lazy():
    read = []

    def numbers():
        for n in range(7):
            read.append(n)
            yield n

    stream = batches(numbers(), 3)
    assert next(stream) == [0, 1, 2] and read == [0, 1, 2]
    assert list(stream) == [[3, 4, 5], [6]]


def test_outputs_come_in_input_order_though_stages_take_uneven_time():
    def slow_on_even(batch):
        time.sleep(0.02 if batch[0] % 2 == 0 else 0)
        return [n * 10 for n in batch]

    def slow_on_odd(batch):
        time.sleep(0.02 if batch[0] % 2 else 0)
        return [n + 1 for n in batch]

    source = batches(range(40), 3)
    out = [n for batch in pipelined(source, (slow_on_even, slow_on_odd)) for n in batch]
    assert out == [n * 10 + 1 for n in range(40)]


def test_stages_overlap_in_time():
    """Two stages of 100 ms each over 6 batches take about 7 x 100 ms, not 12 x 100 ms."""

    def stage(batch):
        time.sleep(0.1)
        return batch

    start = time.perf_counter()
    assert list(pipelined(([n] for n in range(6)), (stage, stage))) == [[n] for n in range(6)]
    assert time.perf_counter() - start < 1.0


def test_an_item_error_stays_with_its_item_and_the_others_go_on():
    def invert(n):
        if n == 0:
            raise ZeroDivisionError("zero")
        return 1 / n

    def half(n):
        if n == 4:
            raise ValueError("four")
        return n / 2

    out = [
        item
        for batch in pipelined(
            batches([2, 0, 4, 5], 2),
            (each(half, (ValueError,)), each(invert, (ZeroDivisionError,))),
        )
        for item in batch
    ]
    assert out[0] == 1.0 and out[3] == 0.4
    assert isinstance(out[1], ZeroDivisionError) and str(out[1]) == "zero"
    assert isinstance(out[2], ValueError) and str(out[2]) == "four"  # never inverted


def test_an_error_not_listed_by_each_stops_the_batch():
    with pytest.raises(KeyError):
        each(lambda n: {}[n], (ValueError,))([1])


def test_the_source_is_read_only_as_fast_as_the_stages_consume():
    read, in_flight = [], []

    def source():
        for n in range(100):
            read.append(n)
            yield [n]

    def slow_at_first(batch):
        if not in_flight:
            time.sleep(0.3)  # the stage before fills the queue meanwhile, then waits
            in_flight.append(len(read))
        return batch

    results = pipelined(source(), (lambda batch: batch, slow_at_first), depth=2)
    assert next(results) == [0]
    # Read: the batch the last stage holds, ``depth`` queued, and the one the first holds.
    assert in_flight == [1 + 2 + 1]
    results.close()


def test_closing_the_consumer_early_stops_every_thread():
    before = threading.active_count()

    def endless():
        n = 0
        while True:
            yield [n]
            n += 1

    results = pipelined(endless(), (lambda batch: batch, lambda batch: batch))
    for consumed, _ in enumerate(results, 1):
        if consumed == 5:
            break
    results.close()
    assert threading.active_count() == before and not pipeline_threads()


def test_an_exception_in_a_stage_is_raised_to_the_consumer_and_stops_the_threads():
    before = threading.active_count()
    seen = []

    def fails_on_third(batch):
        if batch == [2]:
            raise RuntimeError("stage broke")
        return batch

    with pytest.raises(RuntimeError, match="stage broke"):
        for batch in pipelined(([n] for n in range(100)), (fails_on_third, lambda b: b)):
            seen.append(batch)
    assert seen == [[0], [1]]
    assert threading.active_count() == before


def test_an_exception_in_the_source_is_raised_after_the_batches_before_it():
    def source():
        yield [1]
        raise OSError("disk gone")

    results = pipelined(source(), (lambda batch: batch,))
    assert next(results) == [1]
    with pytest.raises(OSError, match="disk gone"):
        next(results)


def test_an_empty_source_yields_nothing():
    assert list(pipelined(iter(()), (lambda batch: batch, lambda batch: batch))) == []
