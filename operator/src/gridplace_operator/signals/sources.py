"""Carbon intensity and electricity price per Region: the value in force, its age and source.

A provider turns a source spec into a `Reading` (or raises `SignalError`); `SourceReads` keeps
what each Region's source last said without letting a slow source hold up a cycle; `resolve`
applies the declared policy: a fresh reading is used; a stale or failing one falls back to the
declared fallback, else to the last known value, and the result says which happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from gridplace_operator.api.region import (
    CARBON_UNIT,
    PRICE_UNIT,
    CarbonIntensitySource,
    PowerPriceSource,
    SignalStatus,
)

SignalKind = Literal["carbonIntensity", "powerPrice"]
Source = CarbonIntensitySource | PowerPriceSource


class SignalError(Exception):
    """A source could not produce a value (unreachable, bad answer, unsupported)."""


class SignalPendingError(SignalError):
    """A source has not answered yet: its first read is under way."""


@dataclass(frozen=True)
class Reading:
    value: float
    observed_at: datetime
    source: str  # Static, File, Prometheus, ElectricityMaps, WattTime, Forecast
    note: str | None = None  # why this value and not the source's latest (a forecast's reason)


@dataclass(frozen=True)
class Resolved:
    value: float
    status: SignalStatus
    fresh: bool
    used_fallback: bool


Provider = Callable[[Source, datetime], Reading]


def _static(source: Source, now: datetime) -> Reading:
    assert source.static is not None
    value = (
        source.static.g_co2_per_kwh
        if isinstance(source, CarbonIntensitySource)
        else source.static.usd_per_mwh
    )
    return Reading(value=value, observed_at=now, source="Static")


def source_kind(source: Source) -> str:
    for name in ("static", "file", "prometheus", "electricity_maps", "watt_time"):
        if getattr(source, name, None) is not None:
            return name
    raise SignalError("no source set")


PROVIDERS: dict[str, Provider] = {"static": _static}


def read(source: Source, now: datetime, providers: Mapping[str, Provider]) -> Reading:
    kind = source_kind(source)
    provider = providers.get(kind)
    if provider is None:
        raise SignalError(f"no provider for {kind} sources is configured in this operator")
    return provider(source, now)


def source_identity(source: Source) -> str:
    """Where a signal's value comes from, as a stable key: the source's kind and fields and the
    price's currency. Sources name Secrets but never hold their values, so neither does the key.
    maxAgeSeconds and fallback are left out: they decide what to do with a value, not what it is."""
    kind = source_kind(source)
    spec = getattr(source, kind).model_dump(mode="json", by_alias=True)
    return json.dumps({kind: spec, "currency": getattr(source, "currency", None)}, sort_keys=True)


ReadKey = tuple[str, SignalKind, str]  # Region, signal, source identity


class SourceReads:
    """The last value of every source each Region uses, keyed by the source's identity as well, so
    a Region that switches source starts from nothing (then its fallback) and never shows the old
    source's value under the new one's name.

    A source's first read waits on the network (the providers refresh in the background only once
    they have an answer), so it runs in a thread of its own and is never waited for: a cycle uses
    what has arrived, and each first answer (or failure) calls `on_arrival` on the event loop, to
    plan again. Later reads answer from the providers' memory. A hanging source thus costs its own
    Region its value until its timeout, and no other Region anything.
    """

    def __init__(self, providers: Mapping[str, Provider], on_arrival: Callable[[], None]) -> None:
        self.providers = providers
        self.on_arrival = on_arrival
        self._last: dict[ReadKey, Reading] = {}
        self._answered: set[ReadKey] = set()  # first read done: later reads come from memory
        self._first_reads: set[ReadKey] = set()  # under way
        self._lock = threading.Lock()

    async def read(self, region: str, kind: SignalKind, source: Source, now: datetime) -> Reading:
        """The source's value now; SignalPendingError while its first read is under way."""
        key = (region, kind, source_identity(source))
        with self._lock:
            answered = key in self._answered or source.static is not None
            if not answered and key not in self._first_reads:
                self._first_reads.add(key)
                loop = asyncio.get_running_loop()
                threading.Thread(
                    target=self._first_read,
                    args=(key, source, now, loop),
                    name="gridplace-signal-first-read",
                    daemon=True,
                ).start()
        if not answered:
            raise SignalPendingError("no answer from the source yet")
        reading = await asyncio.to_thread(read, source, now, self.providers)
        with self._lock:
            self._last[key] = reading
        return reading

    def last(self, region: str, kind: SignalKind, source: Source) -> Reading | None:
        """The last value this Region's source gave, kept through its failures."""
        with self._lock:
            return self._last.get((region, kind, source_identity(source)))

    def keep_only(self, used: Iterable[tuple[str, SignalKind, Source]]) -> None:
        """Forget the sources no Region uses any more (switched away from, or deleted)."""
        keys = {(region, kind, source_identity(source)) for region, kind, source in used}
        with self._lock:
            self._last = {k: v for k, v in self._last.items() if k in keys}
            self._answered &= keys

    def _first_read(
        self, key: ReadKey, source: Source, now: datetime, loop: asyncio.AbstractEventLoop
    ) -> None:
        # The answer (or error) is kept by the provider: the next cycle reads it from there, so
        # an answer arriving in the middle of a cycle changes nothing in that cycle.
        with contextlib.suppress(Exception):
            read(source, now, self.providers)
        with self._lock:
            self._first_reads.discard(key)
            self._answered.add(key)
        with contextlib.suppress(RuntimeError):  # the event loop has closed: nobody to tell
            loop.call_soon_threadsafe(self.on_arrival)


def fallback_value(source: Source) -> float | None:
    if source.fallback is None:
        return None
    if isinstance(source, CarbonIntensitySource):
        return source.fallback.g_co2_per_kwh
    return source.fallback.usd_per_mwh


def resolve(
    kind: SignalKind,
    source: Source,
    reading: Reading | None,
    error: str | None,
    now: datetime,
) -> Resolved | None:
    """The value to plan with; None when there is neither a value nor a fallback."""
    age = (now - reading.observed_at).total_seconds() if reading else None
    fallback = fallback_value(source)
    why = error or (f"value is {age:.0f}s old" if age is not None else "no value yet")
    if reading is not None and age is not None and age <= source.max_age_seconds:
        value, origin, observed_at, stale, message = (
            reading.value,
            reading.source,
            reading.observed_at,
            False,
            error or reading.note,
        )
    elif fallback is not None:
        value, origin, observed_at, stale, message = fallback, "Fallback", now, True, why
    elif reading is not None:  # stale, and nothing declared to fall back to: keep the last value
        value, origin, observed_at, stale, message = (
            reading.value,
            reading.source,
            reading.observed_at,
            True,
            why,
        )
    else:
        return None
    status = SignalStatus.model_validate(
        {
            "value": round(value, 4),
            "unit": CARBON_UNIT if kind == "carbonIntensity" else PRICE_UNIT,
            "source": origin,
            "observedAt": observed_at,
            "ageSeconds": max(0, int((now - observed_at).total_seconds())),
            "stale": stale,
            "message": (message or "")[:253],
        }
    )
    return Resolved(
        value=value,
        status=status,
        fresh=not stale and error is None,
        used_fallback=origin == "Fallback",
    )
