"""Electricity Maps against a local server answering in the API's documented format, with the
API key read from a real Secret of the local cluster."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from scripted_server import Answer, ScriptedServer, json_answer
from signal_kit import Providers, create_secret

from gridplace_operator.api.region import CarbonIntensitySource, PowerPriceSource
from gridplace_operator.signals.sources import SignalError

pytestmark = pytest.mark.cluster
TOKEN = "em-secret-token-123"
NOW = datetime(2026, 11, 27, 21, 10, tzinfo=UTC)
CARBON_PATH = "/v3/carbon-intensity/latest"
PRICE_PATH = "/v3/price-day-ahead/latest"
CARBON_BODY = {
    "zone": "DE",
    "carbonIntensity": 302,
    "datetime": "2026-11-27T21:00:00.000Z",
    "updatedAt": "2026-11-27T20:51:12.713Z",
    "createdAt": "2026-11-24T21:50:09.373Z",
    "emissionFactorType": "lifecycle",
    "isEstimated": True,
    "estimationMethod": "TIME_SLICER_AVERAGE",
}


def price_body(value: float, unit: str) -> dict[str, Any]:
    return {
        "zone": "DE",
        "datetime": "2026-11-27T21:00:00.000Z",
        "createdAt": "2026-11-26T12:21:16.175Z",
        "updatedAt": "2026-11-26T12:21:16.175Z",
        "value": value,
        "unit": unit,
        "source": "nordpool.com",
    }


@pytest.fixture(scope="module")
def secret(kube: tuple[client.ApiClient, str]) -> tuple[client.ApiClient, str]:
    api_client, namespace = kube
    create_secret(api_client, namespace, "emaps", token=TOKEN)
    return kube


@pytest.fixture
def em(secret: tuple[client.ApiClient, str], make_providers: Callable[..., Providers]) -> Providers:
    api_client, namespace = secret
    return make_providers(api_client, namespace=namespace, usd_per_currency={"EUR": 1.1})


def carbon(**secret_ref: str) -> CarbonIntensitySource:
    ref = {"name": "emaps", "key": "token", **secret_ref}
    return CarbonIntensitySource.model_validate(
        {"electricityMaps": {"zone": "DE", "apiKeySecretRef": ref}, "maxAgeSeconds": 3600}
    )


def price() -> PowerPriceSource:
    return PowerPriceSource.model_validate(
        {"electricityMaps": {"zone": "DE", "apiKeySecretRef": {"name": "emaps", "key": "token"}}}
    )


def test_latest_carbon_intensity_with_the_token_from_the_secret(
    server: ScriptedServer, em: Providers
) -> None:
    server.script(CARBON_PATH, json_answer(CARBON_BODY))
    reading = em.read(carbon(), NOW)
    assert (reading.value, reading.source) == (302.0, "ElectricityMaps")
    assert reading.observed_at == datetime(2026, 11, 27, 21, tzinfo=UTC)
    [request] = server.requests[CARBON_PATH]
    assert request.query == {"zone": "DE"}
    assert request.headers["auth-token"] == TOKEN


def test_two_reads_within_the_refresh_interval_make_one_request(
    server: ScriptedServer, em: Providers
) -> None:
    server.script(CARBON_PATH, json_answer(CARBON_BODY))
    for seconds in range(0, 20, 2):  # a 2-second planning cycle
        em.read(carbon(), NOW + timedelta(seconds=seconds))
    assert server.count(CARBON_PATH) == 1
    em.read(carbon(), NOW + timedelta(seconds=300))  # min(300 s, 3600 s / 4)
    assert server.count(CARBON_PATH) == 2


@pytest.mark.parametrize(
    ("body", "expected"),
    [(price_body(42.5, "USD/MWh"), 42.5), (price_body(100.0, "EUR/MWh"), 110.0)],
)
def test_day_ahead_price_in_usd(
    server: ScriptedServer, em: Providers, body: dict[str, Any], expected: float
) -> None:
    server.script(PRICE_PATH, json_answer(body))
    reading = em.read(price(), NOW)
    assert reading.value == pytest.approx(expected)
    assert server.requests[PRICE_PATH][0].headers["auth-token"] == TOKEN


def test_a_price_in_a_currency_without_a_rate_says_how_to_convert(
    server: ScriptedServer, em: Providers
) -> None:
    server.script(PRICE_PATH, json_answer(price_body(69.8, "GBP/MWh")))
    with pytest.raises(SignalError, match="in GBP/MWh; set GRIDPLACE_USD_PER_CURRENCY=GBP="):
        em.read(price(), NOW)


def test_401_is_not_retried_and_the_token_is_not_in_the_message(
    server: ScriptedServer, em: Providers
) -> None:
    server.script(CARBON_PATH, json_answer({"message": "Invalid auth-token"}, status=401))
    with pytest.raises(SignalError) as raised:
        em.read(carbon(), NOW)
    message = str(raised.value)
    assert "Electricity Maps carbon-intensity/latest for zone DE: HTTP 401" in message
    assert "Invalid auth-token" not in message  # the answer's body stays out of status
    assert TOKEN not in message
    assert server.count(CARBON_PATH) == 1


@pytest.mark.parametrize("status", [429, 500])
def test_429_and_500_are_retried_with_backoff(
    server: ScriptedServer, em: Providers, status: int
) -> None:
    server.script(CARBON_PATH, Answer(status), Answer(status), json_answer(CARBON_BODY))
    assert em.read(carbon(), NOW).value == 302.0
    assert server.count(CARBON_PATH) == 3
    assert em.sleeps == [0.05, 0.1]


def test_a_slow_answer_times_out_and_is_remembered_as_a_failure(
    server: ScriptedServer, em: Providers
) -> None:
    server.script(CARBON_PATH, json_answer(CARBON_BODY, delay_seconds=3))
    with pytest.raises(SignalError, match=r"no answer within 0.5s .*after 3 attempts"):
        em.read(carbon(), NOW)
    assert server.count(CARBON_PATH) == 3
    with pytest.raises(SignalError, match="no answer within"):
        em.read(carbon(), NOW + timedelta(seconds=2))  # not asked again yet
    assert server.count(CARBON_PATH) == 3


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (Answer(200, b"{not json"), r"is not JSON \(line 1, column 2\)(;|$)"),
        (json_answer([1, 2]), "expected a JSON object, got list"),
        (json_answer({"zone": "DE", "datetime": "2026-11-27T21:00:00Z"}), "no 'carbonIntensity'"),
        (json_answer({**CARBON_BODY, "carbonIntensity": "high"}), "carbonIntensity is not a fin"),
        (json_answer({**CARBON_BODY, "carbonIntensity": -5}), "carbonIntensity is negative"),
        (json_answer({**CARBON_BODY, "datetime": "soon"}), "datetime is not an ISO 8601 time(;|$)"),
    ],
)
def test_malformed_answers_say_what_is_wrong(
    server: ScriptedServer, em: Providers, answer: Answer, message: str
) -> None:
    server.script(CARBON_PATH, answer)
    with pytest.raises(SignalError, match=message):
        em.read(carbon(), NOW)


def test_a_missing_secret_or_key_is_named(server: ScriptedServer, em: Providers) -> None:
    server.script(CARBON_PATH, json_answer(CARBON_BODY))
    with pytest.raises(SignalError, match=r"Secret .*/nope not found"):
        em.read(carbon(name="nope"), NOW)
    with pytest.raises(SignalError, match=r"Secret .*/emaps has no key 'apikey' \(keys: token\)"):
        em.read(carbon(key="apikey"), NOW)
    assert server.count(CARBON_PATH) == 0


CARBON_FORECAST_PATH = "/v3/carbon-intensity/forecast"
PRICE_FORECAST_PATH = "/v3/price-day-ahead/forecast"


def carbon_forecast(*values: float, first: str = "2026-11-27T21:00:00.000Z") -> dict[str, Any]:
    """The documented answer: hourly rows from the current hour on."""
    start = datetime.fromisoformat(first)
    return {
        "zone": "DE",
        "forecast": [
            {
                "carbonIntensity": v,
                "datetime": f"{start + timedelta(hours=i):%Y-%m-%dT%H:%M:%S}.000Z",
            }
            for i, v in enumerate(values)
        ],
        "updatedAt": "2026-11-27T20:52:11.000Z",
    }


def test_the_forecast_is_fetched_with_the_latest_value_and_unused_while_it_is_fresh(
    server: ScriptedServer, em: Providers
) -> None:
    server.script(CARBON_PATH, json_answer(CARBON_BODY))
    server.script(CARBON_FORECAST_PATH, json_answer(carbon_forecast(290, 280)))
    reading = em.read(carbon(), NOW)
    assert (reading.value, reading.source, reading.note) == (302.0, "ElectricityMaps", None)
    [request] = server.requests[CARBON_FORECAST_PATH]
    assert request.query == {"zone": "DE"}
    assert request.headers["auth-token"] == TOKEN


def test_a_latest_value_older_than_max_age_gives_way_to_the_forecast_for_this_hour(
    server: ScriptedServer, em: Providers
) -> None:
    lagging = {**CARBON_BODY, "datetime": "2026-11-27T18:00:00.000Z"}  # 3 h behind
    server.script(CARBON_PATH, json_answer(lagging))
    server.script(CARBON_FORECAST_PATH, json_answer(carbon_forecast(290, 280)))
    reading = em.read(carbon(), NOW)
    assert (reading.value, reading.source) == (290.0, "Forecast")
    assert reading.observed_at == datetime(2026, 11, 27, 21, tzinfo=UTC)
    assert reading.note == (
        "the latest value is 11400s old; using the forecast for 2026-11-27T21:00:00Z"
    )
    assert em.read(carbon(), NOW + timedelta(minutes=2)).value == 290.0  # from the cache
    assert server.count(CARBON_FORECAST_PATH) == 1
    # the next hour's row takes over at 22:00
    assert em.read(carbon(), NOW + timedelta(minutes=50)).value == 280.0


def test_the_forecast_carries_the_region_through_an_outage_until_it_runs_out(
    server: ScriptedServer, em: Providers
) -> None:
    server.script(CARBON_PATH, json_answer(CARBON_BODY), Answer(503))
    server.script(CARBON_FORECAST_PATH, json_answer(carbon_forecast(290, 280, 270)), Answer(503))
    assert em.read(carbon(), NOW).source == "ElectricityMaps"
    # Both endpoints down from now on: refreshes fail, the remembered forecast answers.
    later = NOW + timedelta(minutes=55)  # 22:05, past the 300 s refresh
    reading = em.read(carbon(), later)
    assert (reading.value, reading.source) == (280.0, "Forecast")
    assert reading.note is not None
    assert reading.note.startswith("Electricity Maps carbon-intensity/latest for zone DE: HTTP 503")
    assert server.count(CARBON_PATH) == 1 + 3  # the refresh was retried
    assert em.read(carbon(), NOW + timedelta(hours=1, minutes=55)).value == 270.0
    with pytest.raises(
        SignalError, match=r"HTTP 503.*; forecast: .*forecast for zone DE: HTTP 503"
    ):
        em.read(carbon(), NOW + timedelta(hours=3))  # 00:10: past the forecast's last hour


def test_a_slow_forecast_never_costs_the_latest_value(
    server: ScriptedServer, em: Providers
) -> None:
    server.script(CARBON_PATH, json_answer(CARBON_BODY))
    server.script(CARBON_FORECAST_PATH, json_answer(carbon_forecast(290), delay_seconds=3))
    reading = em.read(carbon(), NOW)
    assert (reading.value, reading.source) == (302.0, "ElectricityMaps")
    assert server.count(CARBON_FORECAST_PATH) == 3  # timed out, retried, remembered as failed


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (Answer(200, b"[oops"), "forecast for zone DE: .*is not JSON"),
        (json_answer({"zone": "DE", "forecast": []}), "has no forecast rows"),
        (json_answer({"zone": "DE", "history": []}), "has no forecast rows$"),
        (
            json_answer(
                {"forecast": [{"datetime": "2026-11-27T21:00:00Z", "carbonIntensity": None}]}
            ),
            "forecast for zone DE: the answer has no 'carbonIntensity'",
        ),
        (
            json_answer({"forecast": [{"datetime": "tomorrow", "carbonIntensity": 200}]}),
            "datetime is not an ISO 8601 time",
        ),
        (json_answer(carbon_forecast(-1)), "carbonIntensity is negative"),
    ],
)
def test_a_malformed_forecast_is_named_when_the_latest_value_fails_too(
    server: ScriptedServer, em: Providers, answer: Answer, message: str
) -> None:
    server.script(CARBON_PATH, json_answer({"message": "zone unavailable"}, status=404))
    server.script(CARBON_FORECAST_PATH, answer)
    with pytest.raises(SignalError, match=f"latest for zone DE: HTTP 404.*; forecast: .*{message}"):
        em.read(carbon(), NOW)


def test_the_price_forecast_asks_for_a_day_from_this_hour_and_converts_the_currency(
    server: ScriptedServer, em: Providers
) -> None:
    server.script(PRICE_PATH, Answer(500))
    rows = [
        {"datetime": "2026-11-27T21:00:00.000Z", "value": 90.0, "source": "nordpool.com"},
        {"datetime": "2026-11-27T22:00:00.000Z", "value": 80.0, "source": "nordpool.com"},
    ]
    server.script(PRICE_FORECAST_PATH, json_answer({"zone": "DE", "unit": "EUR/MWh", "data": rows}))
    reading = em.read(price(), NOW)
    assert reading.source == "Forecast"
    assert reading.value == pytest.approx(99.0)  # EUR=1.1
    [request] = server.requests[PRICE_FORECAST_PATH]
    assert request.query == {"zone": "DE", "start": "2026-11-27T21:00Z", "end": "2026-11-28T21:00Z"}


def test_price_forecast_rows_with_their_own_unit(server: ScriptedServer, em: Providers) -> None:
    server.script(PRICE_PATH, Answer(500))
    row = {"datetime": "2026-11-27T21:00:00.000Z", "value": 40.0, "unit": "USD/MWh"}
    server.script(PRICE_FORECAST_PATH, json_answer({"zone": "DE", "data": [row]}))
    assert em.read(price(), NOW).value == 40.0
    row = {"datetime": "2026-11-27T21:00:00.000Z", "value": 40.0}
    server.script(PRICE_FORECAST_PATH, json_answer({"zone": "DE", "data": [row]}))
    with pytest.raises(
        SignalError, match="price-day-ahead/forecast for zone DE: the answer has no 'unit'"
    ):
        em.read(price(), NOW + timedelta(hours=1))
