"""What every provider shares: the refresh interval of a source and its cache key."""

from __future__ import annotations

from pydantic import BaseModel

from gridplace_operator.providers.settings import ProviderSettings
from gridplace_operator.signals import Source


def refresh_seconds(source: Source, settings: ProviderSettings) -> float:
    """How long a fetched value is reused: a fraction of maxAgeSeconds, so a value is refreshed
    several times before it could turn stale, and at most the configured refresh interval."""
    return min(settings.refresh_seconds, source.max_age_seconds * settings.refresh_fraction)


def retry_seconds(source: Source, settings: ProviderSettings) -> float:
    return min(settings.retry_after_failure_seconds, refresh_seconds(source, settings))


def cache_key(source: Source, spec: BaseModel) -> tuple[str, str]:
    """Sources with the same spec and signal share one cache entry (and one request)."""
    return type(source).__name__, spec.model_dump_json()
