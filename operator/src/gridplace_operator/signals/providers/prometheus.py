"""`prometheus` sources: an instant query whose result is one number (a scalar or a vector of
exactly one series), already in the unit of the signal."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from gridplace_operator.signals.providers.cache import TimedCache
from gridplace_operator.signals.providers.common import cache_key, refresh_seconds, retry_seconds
from gridplace_operator.signals.providers.http import HttpClient
from gridplace_operator.signals.providers.settings import ProviderSettings
from gridplace_operator.signals.sources import Reading, SignalError, Source


def sample(body: Any) -> tuple[datetime, float]:
    """The one (time, value) of an instant-query answer; SignalError says what else it was, in
    its own words: nothing of the answer is copied into a message, which goes to status."""
    if not isinstance(body, dict) or body.get("status") != "success":
        raise SignalError("the query failed: the answer's status is not success")
    data = body.get("data")
    kind = data.get("resultType") if isinstance(data, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if kind == "scalar":
        point = result
    elif kind == "vector" and isinstance(result, list):
        if not result:
            raise SignalError("the query returned no data (an empty vector)")
        if len(result) > 1:
            raise SignalError(
                f"the query returned {len(result)} series, expected one (aggregate it, e.g."
                " with max or sum)"
            )
        point = result[0].get("value") if isinstance(result[0], dict) else None
    else:
        raise SignalError(
            f"the query returned a {kind or 'malformed'} result, expected a scalar"
            " or a one-element vector"
        )
    if not (isinstance(point, list) and len(point) == 2):
        raise SignalError("malformed sample in the answer")
    at, raw = point
    try:
        value = float(raw)
        observed_at = datetime.fromtimestamp(float(at), UTC)
    except (TypeError, ValueError, OverflowError):
        raise SignalError("malformed sample in the answer") from None
    if not math.isfinite(value):
        spelled = "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
        raise SignalError(f"the query returned {spelled}, not a finite number")
    return observed_at, value


class PrometheusProvider:
    def __init__(self, http: HttpClient, settings: ProviderSettings) -> None:
        self.http = http
        self.settings = settings
        self.cache: TimedCache[Reading] = TimedCache(background=settings.background_refresh)

    def __call__(self, source: Source, now: datetime) -> Reading:
        spec = source.prometheus
        assert spec is not None
        return self.cache.get(
            cache_key(source, spec),
            now,
            refresh_seconds=refresh_seconds(source, self.settings),
            retry_seconds=retry_seconds(source, self.settings),
            fetch=lambda: self._query(spec.query),
        )

    def _query(self, query: str) -> Reading:
        base = self.settings.prometheus_url
        if base is None:
            raise SignalError(
                "no Prometheus is configured for prometheus sources (run gridplace with"
                " --prometheus-url, or set GRIDPLACE_PROMETHEUS_URL)"
            )
        body = self.http.get_json(
            f"{base}/api/v1/query", what=f"Prometheus query {query!r}", params={"query": query}
        )
        try:
            observed_at, value = sample(body)
        except SignalError as err:
            raise SignalError(f"Prometheus query {query!r}: {err}") from None
        return Reading(value=value, observed_at=observed_at, source="Prometheus")
