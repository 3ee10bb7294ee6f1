"""The forecast as the next fallback after the latest value: which point covers now, and the
order latest -> forecast -> stale latest -> error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gridplace_operator.api.region import CarbonIntensitySource
from gridplace_operator.signals.providers.forecast import Forecast, latest_or_forecast
from gridplace_operator.signals.sources import Reading, SignalError, resolve

HOUR = timedelta(hours=1)
T21 = datetime(2026, 11, 27, 21, tzinfo=UTC)
HOURLY = Forecast.of([(T21, 300.0), (T21 + HOUR, 250.0), (T21 + 2 * HOUR, 200.0)], HOUR)


def latest(age: timedelta, value: float = 310.0) -> Reading:
    return Reading(value=value, observed_at=T21 + 30 * timedelta(minutes=1) - age, source="X")


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (0, (T21, 300.0)),
        (59, (T21, 300.0)),
        (60, (T21 + HOUR, 250.0)),
        (179, (T21 + 2 * HOUR, 200.0)),
    ],
)
def test_the_point_whose_hour_covers_now(minutes: int, expected: tuple[datetime, float]) -> None:
    assert HOURLY.at(T21 + timedelta(minutes=minutes)) == expected


@pytest.mark.parametrize("minutes", [-1, 180, 600])
def test_a_forecast_that_does_not_reach_now_has_no_value(minutes: int) -> None:
    assert HOURLY.at(T21 + timedelta(minutes=minutes)) is None


def test_points_are_ordered_and_a_later_duplicate_wins() -> None:
    forecast = Forecast.of([(T21 + HOUR, 1.0), (T21, 2.0), (T21 + HOUR, 3.0)], HOUR)
    assert forecast.times == (T21, T21 + HOUR)
    assert forecast.values == (2.0, 3.0)


NOW = T21 + timedelta(minutes=30)


def test_a_young_latest_value_wins_over_the_forecast() -> None:
    fresh = latest(timedelta(minutes=10))
    chosen = latest_or_forecast(fresh, None, HOURLY, None, max_age_seconds=3600, now=NOW)
    assert chosen == fresh


def test_an_old_latest_value_gives_way_to_the_forecast_for_now() -> None:
    chosen = latest_or_forecast(
        latest(timedelta(hours=3)), None, HOURLY, None, max_age_seconds=3600, now=NOW
    )
    assert (chosen.value, chosen.observed_at, chosen.source) == (300.0, T21, "Forecast")
    assert chosen.note == (
        "the latest value is 10800s old; using the forecast for 2026-11-27T21:00:00Z"
    )


def test_a_failing_source_gives_way_to_the_forecast_and_says_why() -> None:
    chosen = latest_or_forecast(None, "HTTP 503: down", HOURLY, None, max_age_seconds=3600, now=NOW)
    assert (chosen.value, chosen.source) == (300.0, "Forecast")
    assert chosen.note is not None and chosen.note.startswith("HTTP 503: down; using the forecast")


def test_without_a_forecast_for_now_the_stale_latest_value_is_left_to_the_policy() -> None:
    stale = latest(timedelta(hours=3))
    later = T21 + 5 * HOUR
    assert latest_or_forecast(stale, None, HOURLY, None, max_age_seconds=3600, now=later) == stale
    assert latest_or_forecast(stale, None, None, "HTTP 500", max_age_seconds=3600, now=NOW) == stale


@pytest.mark.parametrize(
    ("forecast", "forecast_error", "message"),
    [
        (None, "forecast: HTTP 404", r"^HTTP 503; forecast: forecast: HTTP 404$"),
        (HOURLY, None, r"^HTTP 503; the forecast does not cover 2026-11-28T02:00:00Z$"),
        (None, None, r"^HTTP 503$"),
    ],
)
def test_with_neither_value_the_error_names_both(
    forecast: Forecast | None, forecast_error: str | None, message: str
) -> None:
    with pytest.raises(SignalError, match=message):
        latest_or_forecast(
            None, "HTTP 503", forecast, forecast_error, max_age_seconds=3600, now=T21 + 5 * HOUR
        )


def test_region_status_shows_the_forecast_as_source_with_its_reason() -> None:
    source = CarbonIntensitySource.model_validate(
        {"static": {"gCO2PerKWh": 1}, "maxAgeSeconds": 3600, "fallback": {"gCO2PerKWh": 999}}
    )
    chosen = latest_or_forecast(None, "HTTP 503", HOURLY, None, max_age_seconds=3600, now=NOW)
    resolved = resolve("carbonIntensity", source, chosen, None, NOW)
    assert resolved is not None
    assert (resolved.value, resolved.status.source, resolved.status.stale) == (
        300,
        "Forecast",
        False,
    )
    assert resolved.status.age_seconds == 1800
    assert resolved.status.message.startswith("HTTP 503; using the forecast for")
    assert resolved.fresh and not resolved.used_fallback
