"""The scheduler in-process with real timers: FIFO admission, slot hand-over, aborts."""

from __future__ import annotations

import asyncio

import pytest

from gridplace_e2e.vllmsim.engine import Engine, Job
from gridplace_e2e.vllmsim.metrics import FinishedRequest, SimMetrics
from gridplace_e2e.vllmsim.model import LatencyModel, OutputPlan

FAST = LatencyModel(
    ttft_base=0.005, ttft_per_prompt_token=0.0, itl_base=0.002, itl_per_running_seq=0.0
)


def _engine(max_num_seqs: int) -> Engine:
    return Engine(FAST, max_num_seqs, max_model_len=1000, metrics=SimMetrics("m", 1000))


def _job(tokens: int) -> Job:
    return Job(prompt_tokens=3, max_tokens=tokens, output=OutputPlan(("t",) * tokens, "length"))


def _sample(engine: Engine, name: str, **labels: str) -> float | None:
    return engine.metrics.registry.get_sample_value(
        name, {"model_name": "m", "engine": "0", **labels}
    )


def test_requests_are_admitted_first_come_first_served() -> None:
    async def scenario() -> tuple[list[int], int]:
        engine = _engine(max_num_seqs=1)
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
        for name in range(4):
            tasks.append(asyncio.create_task(submit(name)))
            await asyncio.sleep(0)  # let it reach the queue before the next one arrives
        done = await asyncio.gather(*tasks)
        assert [d.finish_reason for d in done] == ["length"] * 4
        assert engine.running == 0
        assert engine.waiting == 0
        return first_tokens, max_waiting

    order, max_waiting = asyncio.run(scenario())
    assert order == [0, 1, 2, 3]
    assert max_waiting == 3


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
        await asyncio.sleep(0.001)
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
    sloped = LatencyModel(
        ttft_base=0.001, ttft_per_prompt_token=0.0, itl_base=0.001, itl_per_running_seq=0.01
    )

    async def decode_times(batch: int) -> list[float]:
        engine = Engine(sloped, max_num_seqs=8, max_model_len=1000, metrics=SimMetrics("m", 1000))

        async def sink(_: int, __: str) -> None:
            return None

        done = await asyncio.gather(*(engine.run(_job(10), sink) for _ in range(batch)))
        return [d.decode for d in done]

    alone = asyncio.run(decode_times(1))[0]
    crowded = asyncio.run(decode_times(4))
    # steps of 1 + 4 x 10 ms against 1 + 10 ms: about 3.7 times longer
    assert min(crowded) > 2 * alone
