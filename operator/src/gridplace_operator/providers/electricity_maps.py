"""`electricityMaps` sources: the latest carbon intensity (gCO2eq/kWh, life-cycle) or day-ahead
price of a zone from the Electricity Maps API, authenticated with the `auth-token` header.

Answers used (API v3):
  GET {base}/carbon-intensity/latest?zone=DE
      {"zone": "DE", "carbonIntensity": 302, "datetime": "2026-11-27T21:00:00.000Z", ...}
  GET {base}/price-day-ahead/latest?zone=DE
      {"zone": "DE", "value": 124.81, "unit": "EUR/MWh", "datetime": "...", ...}
Prices come in the zone's currency; gridplace plans in USD/MWh, so other currencies need a rate
(GRIDPLACE_USD_PER_CURRENCY, e.g. EUR=1.08).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gridplace_operator.api.region import CarbonIntensitySource, ElectricityMapsSource
from gridplace_operator.providers.cache import TimedCache
from gridplace_operator.providers.common import cache_key, refresh_seconds, retry_seconds
from gridplace_operator.providers.csv_series import parse_time
from gridplace_operator.providers.http import HttpClient
from gridplace_operator.providers.kube_refs import KubeRefs
from gridplace_operator.providers.settings import ProviderSettings
from gridplace_operator.signals import Reading, SignalError, Source


def field(body: Any, name: str, what: str) -> Any:
    if not isinstance(body, dict):
        raise SignalError(f"{what}: expected a JSON object, got {type(body).__name__}")
    if body.get(name) is None:
        raise SignalError(f"{what}: the answer has no {name!r} (fields: {', '.join(body)})")
    return body[name]


def number(body: Any, name: str, what: str) -> float:
    raw = field(body, name, what)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise SignalError(f"{what}: {name} is {raw!r}, not a number")
    return float(raw)


def timestamp(body: Any, name: str, what: str) -> datetime:
    raw = field(body, name, what)
    try:
        return parse_time(str(raw))
    except ValueError:
        raise SignalError(f"{what}: {name} {raw!r} is not an ISO 8601 time") from None


def usd_per_mwh(value: float, unit: str, rates: Mapping[str, float], what: str) -> float:
    currency, _, energy = unit.partition("/")
    if energy != "MWh":
        raise SignalError(f"{what}: unit {unit!r} is not a price per MWh")
    currency = currency.upper()
    if currency == "USD":
        return value
    if currency not in rates:
        raise SignalError(
            f"{what}: the price is in {unit}; set GRIDPLACE_USD_PER_CURRENCY={currency}=<rate>"
            " to convert it to USD/MWh"
        )
    return value * rates[currency]


class ElectricityMapsProvider:
    def __init__(self, http: HttpClient, refs: KubeRefs, settings: ProviderSettings) -> None:
        self.http = http
        self.refs = refs
        self.settings = settings
        self.cache: TimedCache[Reading] = TimedCache(background=settings.background_refresh)

    def __call__(self, source: Source, now: datetime) -> Reading:
        spec = source.electricity_maps
        assert spec is not None
        carbon = isinstance(source, CarbonIntensitySource)
        return self.cache.get(
            cache_key(source, spec),
            now,
            refresh_seconds=refresh_seconds(source, self.settings),
            retry_seconds=retry_seconds(source, self.settings),
            fetch=lambda: self._fetch(spec, carbon, now),
        )

    def _fetch(self, spec: ElectricityMapsSource, carbon: bool, now: datetime) -> Reading:
        ref = spec.api_key_secret_ref
        token = self.refs.secret_key(ref.name, ref.key, ref.namespace, now)
        path = "carbon-intensity/latest" if carbon else "price-day-ahead/latest"
        what = f"Electricity Maps {path} for zone {spec.zone}"
        body = self.http.get_json(
            f"{self.settings.electricity_maps_url}/{path}",
            what=what,
            params={"zone": spec.zone},
            headers={"auth-token": token},
        )
        observed_at = timestamp(body, "datetime", what)
        if carbon:
            value = number(body, "carbonIntensity", what)
            if value < 0:
                raise SignalError(f"{what}: carbonIntensity is negative ({value:g})")
        else:
            unit = str(field(body, "unit", what))
            value = usd_per_mwh(
                number(body, "value", what), unit, self.settings.usd_per_currency, what
            )
        return Reading(value=value, observed_at=observed_at, source="ElectricityMaps")
