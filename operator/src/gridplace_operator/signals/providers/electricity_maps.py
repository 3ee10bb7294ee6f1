"""`electricityMaps` sources: the carbon intensity (gCO2eq/kWh, life-cycle) or day-ahead price of
a zone from the Electricity Maps API, authenticated with the `auth-token` header.

Answers used (API v3):
  GET {base}/carbon-intensity/latest?zone=DE
      {"zone": "DE", "carbonIntensity": 302, "datetime": "2026-11-27T21:00:00.000Z", ...}
  GET {base}/carbon-intensity/forecast?zone=DE
      {"zone": "DE", "forecast": [{"carbonIntensity": 290, "datetime": "..."}, ...], ...}
  GET {base}/price-day-ahead/latest?zone=DE
      {"zone": "DE", "value": 124.81, "unit": "EUR/MWh", "datetime": "...", ...}
  GET {base}/price-day-ahead/forecast?zone=DE&start=...&end=...
      {"zone": "DE", "data": [{"datetime": "...", "value": 118.2, "unit": "EUR/MWh"}, ...]}
Forecast rows are hourly. The latest value is used while it is within maxAgeSeconds, then the
forecast's row for the current hour (see `forecast`). Prices come in the zone's currency;
gridplace plans in USD/MWh, so other currencies need a rate (GRIDPLACE_USD_PER_CURRENCY).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from gridplace_operator.api.region import CarbonIntensitySource, ElectricityMapsSource
from gridplace_operator.kube.refs import KubeRefs
from gridplace_operator.signals.providers.cache import TimedCache
from gridplace_operator.signals.providers.common import (
    cache_key,
    refresh_seconds,
    retry_seconds,
    to_usd,
)
from gridplace_operator.signals.providers.csv_series import parse_time
from gridplace_operator.signals.providers.forecast import (
    Forecast,
    ForecastCache,
    latest_or_forecast,
)
from gridplace_operator.signals.providers.http import HttpClient
from gridplace_operator.signals.providers.settings import ProviderSettings
from gridplace_operator.signals.sources import Reading, SignalError, Source

HOUR = timedelta(hours=1)
CURRENCY = re.compile(r"[A-Za-z]{3}")  # ISO 4217: safe to name in a message
FORECAST_HOURS = 24


# Errors name the field that is wrong, never what the answer put there: messages go to status.


def field(body: Any, name: str, what: str) -> Any:
    if not isinstance(body, dict):
        raise SignalError(f"{what}: expected a JSON object, got {type(body).__name__}")
    if body.get(name) is None:
        raise SignalError(f"{what}: the answer has no {name!r}")
    return body[name]


def number(body: Any, name: str, what: str) -> float:
    raw = field(body, name, what)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise SignalError(f"{what}: {name} is not a finite number")
    return float(raw)


def timestamp(body: Any, name: str, what: str) -> datetime:
    raw = field(body, name, what)
    try:
        return parse_time(str(raw))
    except ValueError:
        raise SignalError(f"{what}: {name} is not an ISO 8601 time") from None


def usd_per_mwh(value: float, unit: str, rates: Mapping[str, float], what: str) -> float:
    currency, _, energy = unit.partition("/")
    if energy != "MWh" or not CURRENCY.fullmatch(currency):
        raise SignalError(f"{what}: unit is not a price per MWh in a currency like EUR/MWh")
    return to_usd(value, currency, rates, what)


def rows(body: Any, what: str) -> list[Any]:
    """The rows of a forecast answer: under `forecast` (carbon intensity) or `data` (prices)."""
    if not isinstance(body, dict):
        raise SignalError(f"{what}: expected a JSON object, got {type(body).__name__}")
    found = body.get("forecast", body.get("data"))
    if not isinstance(found, list) or not found:
        raise SignalError(f"{what}: the answer has no forecast rows")
    return found


class ElectricityMapsProvider:
    def __init__(self, http: HttpClient, refs: KubeRefs, settings: ProviderSettings) -> None:
        self.http = http
        self.refs = refs
        self.settings = settings
        self.cache: TimedCache[Reading] = TimedCache(background=settings.background_refresh)
        self.forecasts = ForecastCache(background=settings.background_refresh)

    def __call__(self, source: Source, now: datetime) -> Reading:
        spec = source.electricity_maps
        assert spec is not None
        carbon = isinstance(source, CarbonIntensitySource)
        key = cache_key(source, spec)
        refresh = refresh_seconds(source, self.settings)
        retry = retry_seconds(source, self.settings)
        latest: Reading | None = None
        latest_error: str | None = None
        try:
            latest = self.cache.get(
                key,
                now,
                refresh_seconds=refresh,
                retry_seconds=retry,
                fetch=lambda: self._latest(spec, carbon, now),
            )
        except SignalError as err:
            latest_error = str(err)
        # Fetched while the latest value is fine too: a forecast is most useful in an outage.
        forecast, forecast_error = self.forecasts.get(
            key,
            now,
            refresh_seconds=refresh,
            retry_seconds=retry,
            fetch=lambda: self._forecast(spec, carbon, now),
        )
        return latest_or_forecast(
            latest,
            latest_error,
            forecast,
            forecast_error,
            max_age_seconds=source.max_age_seconds,
            now=now,
        )

    def _get(
        self, spec: ElectricityMapsSource, path: str, params: dict[str, str], now: datetime
    ) -> Any:
        ref = spec.api_key_secret_ref
        token = self.refs.secret_key(ref.name, ref.key, ref.namespace, now)
        return self.http.get_json(
            f"{self.settings.electricity_maps_url}/{path}",
            what=self._what(spec, path),
            params={"zone": spec.zone, **params},
            headers={"auth-token": token},
        )

    @staticmethod
    def _what(spec: ElectricityMapsSource, path: str) -> str:
        return f"Electricity Maps {path} for zone {spec.zone}"

    def _value(self, row: Any, carbon: bool, what: str) -> float:
        if carbon:
            value = number(row, "carbonIntensity", what)
            if value < 0:
                raise SignalError(f"{what}: carbonIntensity is negative ({value:g})")
            return value
        unit = str(field(row, "unit", what))
        return usd_per_mwh(number(row, "value", what), unit, self.settings.usd_per_currency, what)

    def _latest(self, spec: ElectricityMapsSource, carbon: bool, now: datetime) -> Reading:
        path = "carbon-intensity/latest" if carbon else "price-day-ahead/latest"
        what = self._what(spec, path)
        body = self._get(spec, path, {}, now)
        observed_at = timestamp(body, "datetime", what)
        value = self._value(body, carbon, what)
        return Reading(value=value, observed_at=observed_at, source="ElectricityMaps")

    def _forecast(self, spec: ElectricityMapsSource, carbon: bool, now: datetime) -> Forecast:
        if carbon:
            path, params = "carbon-intensity/forecast", {}
        else:
            # The price forecast takes a window rather than a horizon.
            start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            end = start + FORECAST_HOURS * HOUR
            path = "price-day-ahead/forecast"
            params = {"start": f"{start:%Y-%m-%dT%H:%MZ}", "end": f"{end:%Y-%m-%dT%H:%MZ}"}
        what = self._what(spec, path)
        body = self._get(spec, path, params, now)
        unit = body.get("unit") if isinstance(body, dict) else None
        points = []
        for raw in rows(body, what):
            # A unit for all rows, unless a row has its own.
            row = {"unit": unit, **raw} if not carbon and isinstance(raw, dict) and unit else raw
            points.append((timestamp(row, "datetime", what), self._value(row, carbon, what)))
        return Forecast.of(points, HOUR)
