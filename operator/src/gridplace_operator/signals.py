"""Carbon intensity and electricity price per Region: the value in force, its age and source.

A provider turns a source spec into a `Reading` (or raises `SignalError`); `resolve` applies the
declared policy: a fresh reading is used; a stale or failing one falls back to the declared
fallback, else to the last known value, and the result says which happened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
