"""Remember what a source said, and when, so a short planning period does not ask it every cycle.

Failures are remembered too: a source that just failed is asked again only after a pause, and
meanwhile the same error is reported (the planner then keeps the last value or the fallback).
Time is the planner's `now`, so the cache follows the clock the planner plans with.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from gridplace_operator.signals import SignalError

V = TypeVar("V")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry(Generic[V]):
    at: datetime
    value: V | None
    error: str | None


class TimedCache(Generic[V]):
    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry[V]] = {}
        self._lock = threading.Lock()

    def get(
        self,
        key: Hashable,
        now: datetime,
        *,
        refresh_seconds: float,
        retry_seconds: float,
        fetch: Callable[[], V],
    ) -> V:
        """The remembered value while younger than refresh_seconds (a remembered error while
        younger than retry_seconds); otherwise fetch, remember and return (or raise)."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None:
            age = (now - entry.at).total_seconds()
            if entry.error is not None and 0 <= age < retry_seconds:
                raise SignalError(entry.error)
            if entry.error is None and 0 <= age < refresh_seconds:
                assert entry.value is not None
                return entry.value
        try:
            value = fetch()
        except SignalError as err:
            log.warning("%s", err)  # once per pause, not every cycle; never holds a secret
            with self._lock:
                self._entries[key] = _Entry(now, None, str(err))
            raise
        with self._lock:
            self._entries[key] = _Entry(now, value, None)
        return value

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)
