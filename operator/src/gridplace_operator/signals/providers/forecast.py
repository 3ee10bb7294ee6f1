"""Forecasts as the next fallback after the latest value.

Electricity Maps and WattTime publish forecasts next to their latest values. A forecast fetched
while the source was healthy still holds a value for the current hour when the latest value is
missing (the source fails or answers garbage) or older than maxAgeSeconds (some zones' real-time
data lags by hours), so the order is: the latest value, the forecast for now, then what
`signals.resolve` does (the last known value or the declared fallback).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gridplace_operator.signals.providers.cache import TimedCache
from gridplace_operator.signals.sources import Reading, SignalError


@dataclass(frozen=True)
class Forecast:
    """Points in time order; each value holds from its time for one `period` (or to the next)."""

    times: tuple[datetime, ...]
    values: tuple[float, ...]
    period: timedelta

    @classmethod
    def of(cls, points: list[tuple[datetime, float]], period: timedelta) -> Forecast:
        ordered = sorted(dict(points).items())  # a later duplicate time wins
        return cls(tuple(t for t, _ in ordered), tuple(v for _, v in ordered), period)

    def at(self, now: datetime) -> tuple[datetime, float] | None:
        """The point whose period covers `now`; None when the forecast does not reach now."""
        index = bisect.bisect_right(self.times, now) - 1
        if index < 0 or now >= self.times[index] + self.period:
            return None
        return self.times[index], self.values[index]


def latest_or_forecast(
    latest: Reading | None,
    latest_error: str | None,
    forecast: Forecast | None,
    forecast_error: str | None,
    *,
    max_age_seconds: float,
    now: datetime,
) -> Reading:
    """The latest value while it is young enough, else the forecast's value for now (source
    `Forecast`, with the reason in `note`); else the stale latest value, or an error saying why
    neither could be used."""
    age = (now - latest.observed_at).total_seconds() if latest is not None else None
    if latest is not None and age is not None and age <= max_age_seconds:
        return latest
    why = latest_error or f"the latest value is {age:.0f}s old"
    point = forecast.at(now) if forecast is not None else None
    if point is not None:
        at, value = point
        return Reading(
            value=value,
            observed_at=at,
            source="Forecast",
            note=f"{why}; using the forecast for {at:%Y-%m-%dT%H:%M:%SZ}",
        )
    if latest is not None:
        return latest  # stale: resolve() decides between it and the declared fallback
    if forecast_error is not None:
        raise SignalError(f"{why}; forecast: {forecast_error}")
    if forecast is not None:
        raise SignalError(f"{why}; the forecast does not cover {now:%Y-%m-%dT%H:%M:%SZ}")
    raise SignalError(why)


class ForecastCache:
    """A TimedCache of forecasts that also keeps the last forecast fetched: it stays useful
    through an outage of its source for as long as it covers now."""

    def __init__(self, *, background: bool) -> None:
        self.cache: TimedCache[Forecast] = TimedCache(background=background)
        self.last: dict[Hashable, Forecast] = {}

    def get(
        self,
        key: Hashable,
        now: datetime,
        *,
        refresh_seconds: float,
        retry_seconds: float,
        fetch: Callable[[], Forecast],
    ) -> tuple[Forecast | None, str | None]:
        """The forecast to use and the error of the latest attempt, if it failed."""
        try:
            forecast = self.cache.get(
                key, now, refresh_seconds=refresh_seconds, retry_seconds=retry_seconds, fetch=fetch
            )
        except SignalError as err:
            return self.last.get(key), str(err)
        self.last[key] = forecast
        return forecast, None
