"""Remember what a source said, and when, so a short planning period does not ask it every cycle.

Failures are remembered too: a source that just failed is asked again only after a pause (or
after the Retry-After it answered with, when longer), and meanwhile the same error is reported
(the planner then keeps the last value or the fallback). Time is the planner's `now`, so the
cache follows the clock the planner plans with.

With `background=True` only the very first fetch of a key is waited for: later refreshes run in
a thread of their own while reads keep getting the remembered value (or error), so a slow or
hanging source never holds up a planning cycle for its timeout and retries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from gridplace_operator.signals.sources import SignalError

V = TypeVar("V")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry(Generic[V]):
    at: datetime
    value: V | None
    error: str | None
    pause_s: float = 0.0  # a failure's own pause (the server's Retry-After), if longer

    def result(self) -> V:
        if self.error is not None:
            raise SignalError(self.error)
        assert self.value is not None
        return self.value


class TimedCache(Generic[V]):
    def __init__(self, *, background: bool = False) -> None:
        self.background = background
        self._entries: dict[Hashable, _Entry[V]] = {}
        self._refreshing: set[Hashable] = set()
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
        if entry is None:
            return self._fetch(key, now, fetch)
        age = (now - entry.at).total_seconds()
        pause = max(retry_seconds, entry.pause_s) if entry.error is not None else refresh_seconds
        if 0 <= age < pause:
            return entry.result()
        if not self.background:
            return self._fetch(key, now, fetch)
        self._refresh_in_background(key, now, fetch)
        return entry.result()

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _fetch(self, key: Hashable, now: datetime, fetch: Callable[[], V]) -> V:
        try:
            value = fetch()
        except SignalError as err:
            log.warning("%s", err)  # once per pause, not every cycle; never holds a secret
            pause = getattr(err, "retry_after_s", None) or 0.0
            self._remember(key, _Entry(now, None, str(err), pause))
            raise
        self._remember(key, _Entry(now, value, None))
        return value

    def _remember(self, key: Hashable, entry: _Entry[V]) -> None:
        with self._lock:
            self._entries[key] = entry

    def _refresh_in_background(self, key: Hashable, now: datetime, fetch: Callable[[], V]) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def refresh() -> None:
            try:
                self._fetch(key, now, fetch)
            except SignalError:
                pass  # remembered: the next read reports it
            except Exception as err:  # a bug must not leave the key refreshing forever
                log.exception("refreshing a signal failed")
                self._remember(key, _Entry(now, None, f"{type(err).__name__}: {err}"))
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        threading.Thread(target=refresh, name="gridplace-signal-refresh", daemon=True).start()
