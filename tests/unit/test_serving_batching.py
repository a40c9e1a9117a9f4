"""Micro-batching: concurrent requests share one predict call; results and failures stay per request."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from mlops.serving.batching import MicroBatcher
from mlops.serving.scoring import Scores


class Recorder:
    """A predict function that echoes each record's id and remembers the batch sizes it saw."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[int] = []
        self.fail_on = fail_on

    def __call__(self, records: list[dict]) -> Scores:
        self.batches.append(len(records))
        if self.fail_on is not None and any(r["id"] == self.fail_on for r in records):
            raise ValueError(f"cannot score {self.fail_on}")
        return Scores([r["id"] for r in records], [[0.5, 0.5] for _ in records], ["a", "b"])


def rows(*ids: str) -> list[dict]:
    return [{"id": i} for i in ids]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_single_rows_are_merged_into_one_call():
    predict = Recorder()
    batcher = MicroBatcher(predict, max_rows=64, max_wait=0.01)

    async def main():
        return await asyncio.gather(*(batcher.submit(rows(f"r{i}")) for i in range(20)))

    results = run(main())
    assert predict.batches == [20]
    assert [r.predictions for r in results] == [[f"r{i}"] for i in range(20)]
    assert all(r.classes == ["a", "b"] and r.probabilities == [[0.5, 0.5]] for r in results)
    assert batcher.calls == 1


def test_multi_row_requests_get_back_their_own_slice():
    predict = Recorder()
    batcher = MicroBatcher(predict, max_rows=64, max_wait=0.01)

    async def main():
        return await asyncio.gather(batcher.submit(rows("a0", "a1", "a2")), batcher.submit(rows("b0")))

    first, second = run(main())
    assert predict.batches == [4]
    assert first.predictions == ["a0", "a1", "a2"] and len(first.probabilities) == 3
    assert second.predictions == ["b0"]


def test_batches_are_cut_at_max_rows_without_splitting_a_request():
    predict = Recorder()
    batcher = MicroBatcher(predict, max_rows=4, max_wait=0.01)

    async def main():
        return await asyncio.gather(
            *(batcher.submit(rows(f"s{i}")) for i in range(6)), batcher.submit(rows(*(f"big{i}" for i in range(7))))
        )

    results = run(main())
    assert predict.batches == [4, 2, 7]  # the 7-row request is scored alone, whole
    assert results[-1].predictions == [f"big{i}" for i in range(7)]


def test_a_batch_waits_for_stragglers_up_to_max_wait():
    predict = Recorder()
    batcher = MicroBatcher(predict, max_rows=64, max_wait=0.3)

    async def main():
        first = asyncio.ensure_future(batcher.submit(rows("early")))
        await asyncio.sleep(0.05)
        late = [asyncio.ensure_future(batcher.submit(rows(f"late{i}"))) for i in range(5)]
        await asyncio.gather(first, *late)

    run(main())
    assert predict.batches == [6]


def test_idle_wait_is_bounded_by_max_wait():
    predict = Recorder()
    batcher = MicroBatcher(predict, max_rows=64, max_wait=0.02)

    async def main():
        first = asyncio.ensure_future(batcher.submit(rows("early")))
        await asyncio.sleep(0.5)
        assert first.done()  # scored after ~20 ms of idling, not held for the late one
        await batcher.submit(rows("late"))

    run(main())
    assert predict.batches == [1, 1]


def test_a_full_batch_does_not_wait():
    predict = Recorder()
    batcher = MicroBatcher(predict, max_rows=3, max_wait=30.0)

    async def main():
        return await asyncio.wait_for(asyncio.gather(*(batcher.submit(rows(f"r{i}")) for i in range(3))), 5.0)

    run(main())  # would time out if the full batch idled for max_wait
    assert predict.batches == [3]


def test_without_max_wait_nothing_waits_for_later_requests():
    predict = Recorder()
    batcher = MicroBatcher(predict, max_rows=64, max_wait=0.0)

    async def main():
        first = asyncio.ensure_future(batcher.submit(rows("early")))
        await asyncio.sleep(0.05)
        await asyncio.gather(first, *(batcher.submit(rows(f"late{i}")) for i in range(5)))

    run(main())
    assert predict.batches == [1, 5]


def test_one_bad_request_does_not_fail_the_requests_merged_with_it():
    predict = Recorder(fail_on="bad")
    batcher = MicroBatcher(predict, max_rows=64, max_wait=0.01)

    async def main():
        return await asyncio.gather(
            batcher.submit(rows("ok1")), batcher.submit(rows("bad")), batcher.submit(rows("ok2")),
            return_exceptions=True,
        )

    ok1, bad, ok2 = run(main())
    assert ok1.predictions == ["ok1"] and ok2.predictions == ["ok2"]
    assert isinstance(bad, ValueError) and "bad" in str(bad)
    assert predict.batches == [3, 1, 1, 1]  # the merged call, then each request alone


def test_a_failing_lone_request_gets_the_error():
    batcher = MicroBatcher(Recorder(fail_on="bad"), max_rows=64, max_wait=0.01)
    with pytest.raises(ValueError):
        run(batcher.submit(rows("bad")))


def test_the_worker_restarts_after_going_idle():
    predict = Recorder()
    batcher = MicroBatcher(predict, max_rows=64, max_wait=0.01)

    async def main():
        await batcher.submit(rows("a"))
        await asyncio.sleep(0.01)
        await batcher.submit(rows("b"))

    run(main())
    assert predict.batches == [1, 1]


def test_scoring_can_run_in_an_executor():
    predict = Recorder()
    sizes: list[int] = []
    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(predict, max_rows=64, max_wait=0.01, executor=pool, on_batch=sizes.append)

        async def main():
            return await asyncio.gather(*(batcher.submit(rows(f"r{i}")) for i in range(8)))

        results = run(main())
    assert [r.predictions[0] for r in results] == [f"r{i}" for i in range(8)]
    assert sizes == predict.batches == [8]


def test_a_model_whose_requests_come_seldom_is_scored_without_the_idle_wait():
    # One caller, a request 150 ms after each answer, and a 50 ms idle wait: waiting for a next
    # request that cannot come within it would hold every answer 50 ms. Once the batcher has seen
    # the gaps, it does not.
    import time

    predict = Recorder()
    batcher = MicroBatcher(predict, max_rows=64, max_wait=0.05)

    async def main():
        waits = []
        for i in range(5):
            started = time.monotonic()
            await batcher.submit(rows(f"r{i}"))
            waits.append(time.monotonic() - started)
            await asyncio.sleep(0.15)
        return waits

    waits = run(main())
    assert batcher.mean_gap > 2 * batcher.max_wait
    assert waits[0] >= 0.045  # no gap seen yet: the first request waits as before
    assert max(waits[1:]) < 0.03


def test_a_busy_model_keeps_waiting_to_fill_its_batches():
    predict = Recorder()
    batcher = MicroBatcher(predict, max_rows=64, max_wait=0.05)

    async def main():
        async def late(i):
            await asyncio.sleep(0.002 * i)  # arrivals 2 ms apart, well inside the 50 ms wait
            return await batcher.submit(rows(f"r{i}"))

        return await asyncio.gather(*(late(i) for i in range(10)))

    run(main())
    assert batcher.mean_gap < batcher.max_wait
    assert predict.batches == [10]
