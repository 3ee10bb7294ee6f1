"""The single planning loop: many wake-ups, one debounced cycle at a time.

Handlers only record what they saw and call `request()`; the loop coalesces bursts (applying 500
objects at once must cause a handful of solves, not 500) and also re-plans on a period so that
time-based signals such as carbon intensity are re-read even when nothing in the cluster changes.
The period counts from the last re-plan, so a stream of status-only wake-ups (pods becoming ready
one by one) cannot postpone it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Cycle = Callable[[bool], Awaitable[None]]  # argument: whether a full re-plan is needed


class PlanningLoop:
    def __init__(
        self,
        cycle: Cycle,
        *,
        period_seconds: float,
        debounce_seconds: float,
        max_delay_seconds: float,
        error_backoff_seconds: float = 5.0,
    ) -> None:
        self._cycle = cycle
        self._period = period_seconds
        self._debounce = debounce_seconds
        self._max_delay = max_delay_seconds
        self._error_backoff = error_backoff_seconds
        self._wake = asyncio.Event()
        self._wake.set()  # the first cycle runs at once and always plans
        self._replan = True
        self._last_replan = time.monotonic()
        self.cycles = 0

    def request(self, *, replan: bool) -> None:
        """Ask for a cycle soon; `replan=False` only refreshes status from observed state."""
        self._replan = self._replan or replan
        self._wake.set()

    async def _settle(self) -> None:
        """Wait until requests stop arriving for `debounce` seconds, at most `max_delay`."""
        deadline = time.monotonic() + self._max_delay
        while True:
            self._wake.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), min(self._debounce, remaining))
            except TimeoutError:
                return

    async def run(self) -> None:
        while True:
            until_replan = self._last_replan + self._period - time.monotonic()
            with contextlib.suppress(TimeoutError):  # woken, or the re-plan is due
                await asyncio.wait_for(self._wake.wait(), max(until_replan, 0.0))
            await self._settle()
            # Periodic re-plan: signals move with time.
            due = time.monotonic() - self._last_replan >= self._period
            replan, self._replan = self._replan or due, False
            if replan:
                self._last_replan = time.monotonic()
            try:
                await self._cycle(replan)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("planning cycle failed; retrying in %.0fs", self._error_backoff)
                self._replan = self._replan or replan
                self._wake.set()
                await asyncio.sleep(self._error_backoff)
            finally:
                self.cycles += 1
