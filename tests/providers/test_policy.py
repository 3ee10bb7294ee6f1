"""The whole policy, provider to value in use, as the planner applies it each cycle: a fresh
value; the source failing but the last value still young; stale -> the declared fallback, or
without one the last known value; recovery."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from scripted_server import ScriptedServer, text_answer
from signal_kit import Providers

from gridplace_operator.api.region import CarbonIntensitySource
from gridplace_operator.signals.sources import Reading, Resolved, read, resolve

T0 = datetime(2026, 11, 27, 21, 10, tzinfo=UTC)
CSV = "datetime_utc,gco2\n2026-11-27 21:00:00,302\n"


@dataclass
class Cycle:
    """What the planner does per Region and signal: read, keep the last reading, resolve."""

    providers: Providers
    source: CarbonIntensitySource
    last: Reading | None = None
    errors: list[str] = field(default_factory=list)

    def at(self, now: datetime) -> Resolved | None:
        error = None
        try:
            self.last = read(self.source, now, self.providers.providers)
        except Exception as err:
            error = str(err)
            self.errors.append(error)
        return resolve("carbonIntensity", self.source, self.last, error, now)


def source(url: str, **extra: Any) -> CarbonIntensitySource:
    return CarbonIntensitySource.model_validate(
        {"file": {"url": url, "valueColumn": "gco2"}, "maxAgeSeconds": 3600, **extra}
    )


def test_fresh_then_failing_then_fallback_then_recovered(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    server.script("/ci.csv", text_answer(CSV))
    cycle = Cycle(
        make_providers(attempts=1), source(f"{server.url}/ci.csv", fallback={"gCO2PerKWh": 100})
    )

    fresh = cycle.at(T0)
    assert fresh is not None and fresh.fresh and not fresh.used_fallback
    assert (fresh.value, fresh.status.source, fresh.status.age_seconds) == (302, "File", 600)

    server.script("/ci.csv", text_answer("down for maintenance", status=503))
    failing = cycle.at(T0 + timedelta(minutes=20))  # past the 900 s refresh: asked again, fails
    assert failing is not None and not failing.fresh and not failing.used_fallback
    assert failing.value == 302  # the last value is 30 min old, within maxAgeSeconds
    assert not failing.status.stale
    assert "HTTP 503 from" in failing.status.message
    assert "maintenance" not in failing.status.message  # the answer's body stays out of status

    stale = cycle.at(T0 + timedelta(minutes=51))  # the 21:00 value is now 61 min old
    assert stale is not None and stale.used_fallback
    assert (stale.value, stale.status.source, stale.status.stale) == (100, "Fallback", True)
    assert "HTTP 503" in stale.status.message

    server.script("/ci.csv", text_answer(CSV + "2026-11-27 22:00:00,250\n"))
    recovered = cycle.at(
        T0 + timedelta(minutes=52)
    )  # over 30 s after the last failure: asked again
    assert recovered is not None and recovered.fresh
    assert (recovered.value, recovered.status.source, recovered.status.message) == (250, "File", "")


def test_without_a_fallback_the_last_known_value_stays_and_is_stale(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    server.script("/ci.csv", text_answer(CSV))
    cycle = Cycle(make_providers(attempts=1), source(f"{server.url}/ci.csv"))
    assert cycle.at(T0) is not None
    server.script("/ci.csv", text_answer("", status=500))
    last_known = cycle.at(T0 + timedelta(hours=2))
    assert last_known is not None and not last_known.fresh and not last_known.used_fallback
    assert (last_known.value, last_known.status.source) == (302, "File")
    assert last_known.status.stale
    assert last_known.status.age_seconds == 2 * 3600 + 600


def test_a_source_that_never_answered_uses_the_fallback_or_nothing(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    server.script("/ci.csv", text_answer("", status=500))
    providers = make_providers(attempts=1)
    with_fallback = Cycle(providers, source(f"{server.url}/ci.csv", fallback={"gCO2PerKWh": 80}))
    resolved = with_fallback.at(T0)
    assert resolved is not None and (resolved.value, resolved.status.source) == (80, "Fallback")
    assert Cycle(providers, source(f"{server.url}/ci.csv")).at(T0) is None
