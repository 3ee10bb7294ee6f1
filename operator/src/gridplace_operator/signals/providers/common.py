"""What every provider shares: the refresh interval of a source, its cache key, and prices in
USD."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from pydantic import BaseModel

from gridplace_operator.api.region import PowerPriceSource
from gridplace_operator.signals.providers.settings import ProviderSettings
from gridplace_operator.signals.sources import Provider, Reading, SignalError, Source


def refresh_seconds(source: Source, settings: ProviderSettings) -> float:
    """How long a fetched value is reused: a fraction of maxAgeSeconds, so a value is refreshed
    several times before it could turn stale, and at most the configured refresh interval."""
    return min(settings.refresh_seconds, source.max_age_seconds * settings.refresh_fraction)


def retry_seconds(source: Source, settings: ProviderSettings) -> float:
    return min(settings.retry_after_failure_seconds, refresh_seconds(source, settings))


def cache_key(source: Source, spec: BaseModel) -> tuple[str, str]:
    """Sources with the same spec and signal share one cache entry (and one request)."""
    return type(source).__name__, spec.model_dump_json()


def to_usd(value: float, currency: str, rates: Mapping[str, float], what: str) -> float:
    """A price per MWh in `currency` as USD per MWh, with the operator's rate table."""
    currency = currency.upper()
    if currency == "USD":
        return value
    if currency not in rates:
        known = ", ".join(sorted(rates)) or "none"
        raise SignalError(
            f"{what}: the price is in {currency}/MWh; set GRIDPLACE_USD_PER_CURRENCY="
            f"{currency}=<USD per {currency}> to convert it to USD/MWh (rates known: {known})"
        )
    return value * rates[currency]


def priced_in_usd(provider: Provider, rates: Mapping[str, float]) -> Provider:
    """`provider`, with the values of price sources that declare a `currency` turned into USD."""

    def read(source: Source, now: datetime) -> Reading:
        reading = provider(source, now)
        if not isinstance(source, PowerPriceSource) or source.currency is None:
            return reading
        usd = to_usd(reading.value, source.currency, rates, f"{reading.source} price")
        return replace(reading, value=usd)

    return read
