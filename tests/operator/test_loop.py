"""The planning loop coalesces bursts into few cycles and survives a failing cycle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gridplace_operator.planning.loop import PlanningLoop

Script = Callable[[PlanningLoop, list[bool]], Awaitable[None]]


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), timeout)


def run(script: Script, *, fail_first: bool = False, **timing: float) -> list[bool]:
    """Run a loop whose cycle records its `replan` argument, drive it with `script`, and
    return what the cycles were called with."""
    calls: list[bool] = []

    async def cycle(replan: bool) -> None:
        calls.append(replan)
        if fail_first and len(calls) == 1:
            raise RuntimeError("API server unavailable")

    async def scenario() -> None:
        settings = {"period_seconds": 3600, "debounce_seconds": 0.05, "max_delay_seconds": 5}
        loop = PlanningLoop(cycle, **(settings | timing))
        task = asyncio.create_task(loop.run())
        await script(loop, calls)
        task.cancel()

    asyncio.run(scenario())
    return calls


def test_a_burst_of_requests_runs_one_cycle() -> None:
    async def script(loop: PlanningLoop, calls: list[bool]) -> None:
        for _ in range(200):
            loop.request(replan=False)
        await until(lambda: len(calls) == 1)
        loop.request(replan=False)
        await until(lambda: len(calls) == 2)

    # The first cycle always re-plans; a later status-only request does not.
    assert run(script) == [True, False]


def test_replan_wins_over_refresh_within_one_burst() -> None:
    async def script(loop: PlanningLoop, calls: list[bool]) -> None:
        await until(lambda: len(calls) == 1)
        loop.request(replan=False)
        loop.request(replan=True)
        loop.request(replan=False)
        await until(lambda: len(calls) == 2)

    assert run(script) == [True, True]


def test_the_period_triggers_a_replan_without_requests() -> None:
    async def script(loop: PlanningLoop, calls: list[bool]) -> None:
        await until(lambda: len(calls) >= 3)

    calls = run(script, period_seconds=0.05, debounce_seconds=0.01, max_delay_seconds=1)
    assert all(calls[:3])


def test_a_failing_cycle_is_retried_with_its_replan() -> None:
    async def script(loop: PlanningLoop, calls: list[bool]) -> None:
        await until(lambda: len(calls) == 2)

    calls = run(script, fail_first=True, debounce_seconds=0.01, error_backoff_seconds=0.01)
    assert calls == [True, True]


def test_status_only_wake_ups_do_not_postpone_the_periodic_replan() -> None:
    async def script(loop: PlanningLoop, calls: list[bool]) -> None:
        await until(lambda: len(calls) == 1)
        # Pods becoming ready one by one wake the loop more often than its period.
        for _ in range(500):
            if sum(calls) >= 3:
                break
            loop.request(replan=False)
            await asyncio.sleep(0.02)

    calls = run(script, period_seconds=0.2, debounce_seconds=0.005, max_delay_seconds=0.05)
    assert sum(calls) == 3 and not all(calls)  # re-plans due by time, refreshes between them
