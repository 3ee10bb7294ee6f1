"""How the signal providers talk to the outside world: base URLs, timeouts, retries, refresh.

Every setting has an environment variable (read once at operator start) so a deployment can point
gridplace at a proxy or a test server without a new image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ELECTRICITY_MAPS_URL = "https://api.electricitymap.org/v3"
WATT_TIME_URL = "https://api.watttime.org"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class ProviderSettings:
    electricity_maps_url: str = ELECTRICITY_MAPS_URL
    watt_time_url: str = WATT_TIME_URL
    # Where `prometheus` sources are queried; None leaves them unavailable (a clear error).
    prometheus_url: str | None = None
    # Namespace of Secrets and ConfigMaps referenced without one: the one gridplace runs in.
    namespace: str = "default"
    http_timeout_seconds: float = 10.0
    attempts: int = 3  # per read; 429, 5xx, timeouts and refused connections are retried
    backoff_seconds: float = 0.5  # doubles after each failed attempt: 0.5 s, 1 s, ...
    # A reading is re-fetched after min(refreshSeconds, maxAgeSeconds * refreshFraction), so a
    # short planning period does not turn into one API call per cycle.
    refresh_seconds: float = 300.0
    refresh_fraction: float = 0.25
    # After a failure the source is asked again no sooner than this (or the refresh interval).
    retry_after_failure_seconds: float = 30.0
    # Refresh known values in a background thread instead of inside the planning cycle.
    background_refresh: bool = True
    secret_ttl_seconds: float = 60.0
    # The rate table: USD per unit of another currency, for prices in EUR/MWh, GBP/MWh...
    usd_per_currency: Mapping[str, float] = field(default_factory=dict)
    # The only hosts feeds may reach (file URLs, Electricity Maps, WattTime, Prometheus), lower
    # case; empty: any. A Region's author chooses its file URL, the operator chooses these.
    allowed_hosts: frozenset[str] = frozenset()

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, prometheus_url: str | None = None
    ) -> ProviderSettings:
        """Settings from GRIDPLACE_* variables; anything unset keeps its default.
        `prometheus_url` is the operator's own Prometheus (`--prometheus-url`), used by
        `prometheus` sources unless GRIDPLACE_PROMETHEUS_URL names another."""
        env = os.environ if env is None else env
        default = cls()
        return cls(
            electricity_maps_url=env.get(
                "GRIDPLACE_ELECTRICITY_MAPS_URL", default.electricity_maps_url
            ).rstrip("/"),
            watt_time_url=env.get("GRIDPLACE_WATTTIME_URL", default.watt_time_url).rstrip("/"),
            prometheus_url=(env.get("GRIDPLACE_PROMETHEUS_URL") or prometheus_url or "").rstrip("/")
            or None,
            namespace=env.get("GRIDPLACE_NAMESPACE") or _own_namespace(default.namespace),
            http_timeout_seconds=_number(
                env, "GRIDPLACE_SIGNAL_HTTP_TIMEOUT", default.http_timeout_seconds
            ),
            attempts=int(_number(env, "GRIDPLACE_SIGNAL_ATTEMPTS", default.attempts)),
            refresh_seconds=_number(env, "GRIDPLACE_SIGNAL_REFRESH", default.refresh_seconds),
            usd_per_currency=parse_rates(env.get("GRIDPLACE_USD_PER_CURRENCY", "")),
            allowed_hosts=parse_hosts(env.get("GRIDPLACE_FEED_ALLOWED_HOSTS", "")),
        )


def _own_namespace(default: str) -> str:
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or default
    except OSError:
        return default


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


def parse_rates(text: str) -> dict[str, float]:
    """`EUR=1.08,GBP=1.27` -> {"EUR": 1.08, "GBP": 1.27}."""
    rates: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        currency, sep, raw = item.partition("=")
        try:
            rate = float(raw)
        except ValueError:
            rate = -1.0
        if not sep or not currency.strip() or rate <= 0:
            raise ValueError(
                f"GRIDPLACE_USD_PER_CURRENCY: expected CURRENCY=RATE with a positive rate,"
                f" got {item!r}"
            )
        rates[currency.strip().upper()] = rate
    return rates


def parse_hosts(text: str) -> frozenset[str]:
    """`api.electricitymap.org, 10.0.0.7` -> the host names, lower case (an IPv6 address
    without brackets)."""
    hosts = frozenset(part.strip().lower().strip("[]") for part in text.split(","))
    for host in sorted(hosts - {""}):
        # One colon is a port; an IPv6 address has several.
        if any(c in host for c in "/@ ") or host.count(":") == 1:
            raise ValueError(
                "GRIDPLACE_FEED_ALLOWED_HOSTS: expected host names without scheme, path or"
                f" port, got {host!r}"
            )
    return hosts - {""}
