"""The engine in-process with real timers: FIFO admission, slot hand-over, aborts, step costs."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from gridplace_e2e.vllmsim.engine import Engine, Job
from gridplace_e2e.vllmsim.metrics import FinishedRequest, SimMetrics
from gridplace_e2e.vllmsim.model import OutputPlan
from gridplace_e2e.vllmsim.steps import SchedulerLimits, StepCosts

# Steps long enough that a busy machine's timer jitter (a few ms) is small beside them.
FAST = StepCosts(
    arrival_overhead_s=0.005, prefill_per_token_s=0.0, decode_base_s=0.02, decode_per_seq_s=0.0
)


def _engine(max_num_seqs: int, costs: StepCosts = FAST) -> Engine:
    limits = SchedulerLimits(max_num_seqs, max_num_batched_tokens=8192)
    return Engine(costs, limits, max_model_len=1000, metrics=SimMetrics("m", 1000))


def _job(tokens: int) -> Job:
    return Job(prompt_tokens=3, max_tokens=tokens, output=OutputPlan(("t",) * tokens, "length"))


def _sample(engine: Engine, name: str, **labels: str) -> float | None:
    return engine.metrics.registry.get_sample_value(
        name, {"model_name": "m", "engine": "0", **labels}
    )


@pytest.mark.parametrize(("slots", "count"), [(1, 4), (2, 6)])
def test_arrivals_beyond_max_num_seqs_wait_first_come_first_served(slots: int, count: int) -> None:
    async def scenario() -> tuple[list[int], int, list[FinishedRequest]]:
        # No frontend time: every request is in the queue before the first step ends, whatever
        # the timers of a busy machine do.
        engine = _engine(
            max_num_seqs=slots, costs=dataclasses.replace(FAST, arrival_overhead_s=0.0)
        )
        first_tokens: list[int] = []
        max_waiting = 0

        async def submit(name: int) -> FinishedRequest:
            async def sink(index: int, _: str) -> None:
                nonlocal max_waiting
                max_waiting = max(max_waiting, engine.waiting)
                if index == 0:
                    first_tokens.append(name)

            return await engine.run(_job(3), sink)

        tasks = []
        for name in range(count):
            tasks.append(asyncio.create_task(submit(name)))
            await asyncio.sleep(0)  # let it reach the queue before the next one arrives
        done = await asyncio.gather(*tasks)
        assert engine.running == 0
        assert engine.waiting == 0
        return first_tokens, max_waiting, list(done)

    order, max_waiting, done = asyncio.run(scenario())
    assert order == list(range(count))
    assert max_waiting == count - slots
    assert [d.finish_reason for d in done] == ["length"] * count
    # First come, first served: the first tokens came in arrival order with count - slots waiting
    # (timings are not compared: a busy machine's timers can stall the first step itself).


def test_queue_time_accumulates_behind_busy_slots() -> None:
    async def scenario() -> list[FinishedRequest]:
        engine = _engine(max_num_seqs=2)

        async def sink(_: int, __: str) -> None:
            return None

        return list(await asyncio.gather(*(engine.run(_job(5), sink) for _ in range(6))))

    done = asyncio.run(scenario())
    queued = sorted(d.queued for d in done)
    service = min(d.inference for d in done)
    # two start at once, two wait one service time, two wait two service times
    assert queued[1] < 0.5 * service
    assert queued[2] > 0.8 * service
    assert queued[4] > queued[2] + 0.8 * service


def test_a_failing_sink_aborts_and_frees_the_slot() -> None:
    async def scenario() -> tuple[Engine, FinishedRequest]:
        engine = _engine(max_num_seqs=1)

        async def broken(index: int, _: str) -> None:
            if index == 1:
                raise ConnectionResetError("client went away")

        with pytest.raises(ConnectionResetError):
            await engine.run(_job(5), broken)

        async def sink(_: int, __: str) -> None:
            return None

        return engine, await engine.run(_job(2), sink)

    engine, after = asyncio.run(scenario())
    assert after.finish_reason == "length"
    assert engine.running == 0
    assert _sample(engine, "vllm:request_success_total", finished_reason="abort") == 1
    assert _sample(engine, "vllm:request_success_total", finished_reason="length") == 1
    assert _sample(engine, "vllm:generation_tokens_total") == 2 + 2


def test_cancelling_a_waiting_request_leaves_the_queue() -> None:
    async def scenario() -> Engine:
        engine = _engine(max_num_seqs=1)
        holder_started = asyncio.Event()

        async def sink(_: int, __: str) -> None:
            holder_started.set()

        holder = asyncio.create_task(engine.run(_job(20), sink))
        await holder_started.wait()
        waiter = asyncio.create_task(engine.run(_job(2), sink))
        await asyncio.sleep(2 * FAST.arrival_overhead_s)  # past the frontend, into the queue
        assert engine.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert engine.waiting == 0
        await holder
        return engine

    engine = asyncio.run(scenario())
    assert engine.running == 0
    assert _sample(engine, "vllm:kv_cache_usage_perc") == 0


def test_decode_slows_down_as_the_batch_fills() -> None:
    sloped = StepCosts(
        arrival_overhead_s=0.001, prefill_per_token_s=0.0, decode_base_s=0.001,
        decode_per_seq_s=0.01,
    )  # fmt: skip

    async def decode_times(batch: int) -> list[float]:
        engine = _engine(max_num_seqs=8, costs=sloped)

        async def sink(_: int, __: str) -> None:
            return None

        done = await asyncio.gather(*(engine.run(_job(10), sink) for _ in range(batch)))
        return [d.decode for d in done]

    alone = asyncio.run(decode_times(1))[0]
    crowded = asyncio.run(decode_times(4))
    # steps of 1 + 4 x 10 ms against 1 + 10 ms: about 3.7 times longer
    assert min(crowded) > 2 * alone


def test_a_request_cancelled_while_prefilling_hands_its_slot_on() -> None:
    """Prefill is real work in the batch: a long prompt holds the only slot for several steps,
    and cancelling it mid-prefill lets the next request in at the next step."""
    slow_prefill = StepCosts(
        arrival_overhead_s=0.0, prefill_per_token_s=0.0001, decode_base_s=0.002,
        decode_per_seq_s=0.0,
    )  # fmt: skip

    async def scenario() -> tuple[Engine, FinishedRequest, float]:
        engine = Engine(
            slow_prefill, SchedulerLimits(1, max_num_batched_tokens=100), 10_000,
            SimMetrics("m", 10_000),
        )  # fmt: skip

        async def sink(_: int, __: str) -> None:
            return None

        long = Job(5000, 2, OutputPlan(("t", "t"), "length"))  # 50 chunks of 12 ms
        holder = asyncio.create_task(engine.run(long, sink))
        await asyncio.sleep(0.05)
        waiter = asyncio.create_task(engine.run(_job(2), sink))
        await asyncio.sleep(0.01)
        assert (engine.running, engine.waiting) == (1, 1)
        holder.cancel()
        cancelled_at = asyncio.get_running_loop().time()
        with pytest.raises(asyncio.CancelledError):
            await holder
        after = await waiter
        return engine, after, asyncio.get_running_loop().time() - cancelled_at

    engine, after, took = asyncio.run(scenario())
    assert after.finish_reason == "length"
    assert took < 0.2  # not the 0.6 s the long prompt's prefill would have held the slot
    assert _sample(engine, "vllm:request_success_total", finished_reason="abort") == 1
    assert _sample(engine, "vllm:prompt_tokens_total") == 3  # the aborted prompt never finished
    assert _sample(engine, "vllm:kv_cache_usage_perc") == 0
