"""The planning loop coalesces bursts into few cycles and survives a failing cycle."""

from __future__ import annotations

import asyncio

from gridplace_operator.loop import PlanningLoop


async def _until(predicate: object, timeout: float = 10.0) -> None:
    async def wait() -> None:
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), timeout)


def test_a_burst_of_requests_runs_one_cycle() -> None:
    calls: list[bool] = []

    async def cycle(replan: bool) -> None:
        calls.append(replan)

    async def scenario() -> None:
        loop = PlanningLoop(cycle, period_seconds=3600, debounce_seconds=0.05, max_delay_seconds=5)
        task = asyncio.create_task(loop.run())
        for _ in range(200):
            loop.request(replan=False)
        await _until(lambda: len(calls) == 1)
        loop.request(replan=False)
        await _until(lambda: len(calls) == 2)
        task.cancel()

    asyncio.run(scenario())
    # The first cycle always re-plans; a later status-only request does not.
    assert calls == [True, False]


def test_replan_wins_over_refresh_within_one_burst() -> None:
    calls: list[bool] = []

    async def cycle(replan: bool) -> None:
        calls.append(replan)

    async def scenario() -> None:
        loop = PlanningLoop(cycle, period_seconds=3600, debounce_seconds=0.05, max_delay_seconds=5)
        task = asyncio.create_task(loop.run())
        await _until(lambda: len(calls) == 1)
        loop.request(replan=False)
        loop.request(replan=True)
        loop.request(replan=False)
        await _until(lambda: len(calls) == 2)
        task.cancel()

    asyncio.run(scenario())
    assert calls == [True, True]


def test_the_period_triggers_a_replan_without_requests() -> None:
    calls: list[bool] = []

    async def cycle(replan: bool) -> None:
        calls.append(replan)

    async def scenario() -> None:
        loop = PlanningLoop(cycle, period_seconds=0.05, debounce_seconds=0.01, max_delay_seconds=1)
        task = asyncio.create_task(loop.run())
        await _until(lambda: len(calls) >= 3)
        task.cancel()

    asyncio.run(scenario())
    assert all(calls[:3])


def test_a_failing_cycle_is_retried_with_its_replan() -> None:
    calls: list[bool] = []

    async def cycle(replan: bool) -> None:
        calls.append(replan)
        if len(calls) == 1:
            raise RuntimeError("API server unavailable")

    async def scenario() -> None:
        loop = PlanningLoop(
            cycle,
            period_seconds=3600,
            debounce_seconds=0.01,
            max_delay_seconds=1,
            error_backoff_seconds=0.01,
        )
        task = asyncio.create_task(loop.run())
        await _until(lambda: len(calls) == 2)
        task.cancel()

    asyncio.run(scenario())
    assert calls == [True, True]
