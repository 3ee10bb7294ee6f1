"""WattTime against a local server answering in the API's documented format: login with the
Secret's credentials, a bearer token kept between reads, MOER converted to gCO2eq/kWh."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from scripted_server import ScriptedServer, json_answer
from signal_kit import Providers, create_secret

from gridplace_operator.api.region import CarbonIntensitySource
from gridplace_operator.signals.sources import SignalError

pytestmark = pytest.mark.cluster
NOW = datetime(2026, 11, 27, 21, 7, tzinfo=UTC)
USER, PASSWORD = "grid-ops", "pa55-w0rd"


def forecast(*points: tuple[str, object], units: str = "lbs_co2_per_mwh") -> dict[str, Any]:
    return {
        "data": [{"point_time": t, "value": v, "version": "3.0"} for t, v in points],
        "meta": {
            "region": "CAISO_NORTH",
            "signal_type": "co2_moer",
            "units": units,
            "generated_at": "2026-11-27T21:05:00+00:00",
            "model": {"date": "2026-03-01"},
        },
    }


FORECAST = forecast(("2026-11-27T21:05:00+00:00", 1000.0), ("2026-11-27T21:10:00+00:00", 900.0))


@pytest.fixture(scope="module")
def secret(kube: tuple[client.ApiClient, str]) -> tuple[client.ApiClient, str]:
    api_client, namespace = kube
    create_secret(api_client, namespace, "watttime", username=USER, password=PASSWORD)
    return kube


@pytest.fixture
def wt(secret: tuple[client.ApiClient, str], make_providers: Callable[..., Providers]) -> Providers:
    api_client, namespace = secret
    return make_providers(api_client, namespace=namespace)


def source() -> CarbonIntensitySource:
    return CarbonIntensitySource.model_validate(
        {"wattTime": {"region": "CAISO_NORTH", "credentialsSecretRef": {"name": "watttime"}}}
    )


def test_login_then_the_moer_in_force_converted_to_grams_per_kwh(
    server: ScriptedServer, wt: Providers
) -> None:
    server.script("/login", json_answer({"token": "jwt-1"}))
    server.script("/v3/forecast", json_answer(FORECAST))
    reading = wt.read(source(), NOW)
    assert reading.value == pytest.approx(1000.0 * 0.453592)  # 1 lb/MWh = 0.453592 g/kWh
    assert reading.observed_at == datetime(2026, 11, 27, 21, 5, tzinfo=UTC)
    assert reading.source == "WattTime"
    [login] = server.requests["/login"]
    expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert login.headers["Authorization"] == f"Basic {expected}"
    [data] = server.requests["/v3/forecast"]
    assert data.headers["Authorization"] == "Bearer jwt-1"
    assert data.query == {"region": "CAISO_NORTH", "signal_type": "co2_moer", "horizon_hours": "24"}


def test_the_token_is_reused_until_it_nears_expiry(server: ScriptedServer, wt: Providers) -> None:
    server.script("/login", json_answer({"token": "jwt-1"}))
    server.script("/v3/forecast", json_answer(FORECAST))
    for minutes in (0, 5, 10, 15, 20):  # each past the 300 s refresh: one data request each
        wt.read(source(), NOW + timedelta(minutes=minutes))
    assert server.count("/v3/forecast") == 5
    assert server.count("/login") == 1
    wt.read(source(), NOW + timedelta(minutes=26))
    assert server.count("/login") == 2


def test_a_rejected_token_logs_in_again_once(server: ScriptedServer, wt: Providers) -> None:
    server.script("/login", json_answer({"token": "old"}), json_answer({"token": "new"}))
    server.script(
        "/v3/forecast", json_answer({"error": "expired"}, status=401), json_answer(FORECAST)
    )
    assert wt.read(source(), NOW).value == pytest.approx(453.592)
    assert [r.headers["Authorization"] for r in server.requests["/v3/forecast"]] == [
        "Bearer old",
        "Bearer new",
    ]


def test_bad_credentials_are_reported_without_the_password(
    server: ScriptedServer, wt: Providers
) -> None:
    server.script("/login", json_answer({"error": "invalid credentials"}, status=401))
    with pytest.raises(SignalError) as raised:
        wt.read(source(), NOW)
    assert "WattTime login with Secret " in str(raised.value)
    assert "/watttime: HTTP 401" in str(raised.value)
    assert PASSWORD not in str(raised.value)
    assert USER not in str(raised.value)
    assert server.count("/v3/forecast") == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            forecast(("2026-11-27T21:05:00+00:00", 50.0), units="percentile"),
            "units are not 'lbs_co2_per_mwh'",
        ),
        (forecast(), "no data points"),
        ({"data": []}, "no 'meta'"),
        (forecast(("2026-11-27T21:05:00+00:00", -3.0)), "MOER is negative"),
        (
            forecast(("2026-11-27T21:05:00+00:00", 900.0), ("2026-11-27T21:10:00+00:00", "x")),
            "value is not a finite number",
        ),
        (
            {**FORECAST, "meta": {**FORECAST["meta"], "data_point_period_seconds": 0}},
            "data_point_period_seconds is not a positive number",
        ),
    ],
)
def test_malformed_answers_say_what_is_wrong(
    server: ScriptedServer, wt: Providers, body: dict[str, Any], message: str
) -> None:
    server.script("/login", json_answer({"token": "jwt"}))
    server.script("/v3/forecast", json_answer(body))
    with pytest.raises(SignalError, match=message):
        wt.read(source(), NOW)


def test_a_login_answer_without_a_token(server: ScriptedServer, wt: Providers) -> None:
    server.script("/login", json_answer({"ok": True}))
    with pytest.raises(SignalError, match="WattTime login: the answer has no 'token'"):
        wt.read(source(), NOW)


def five_minutes(first: datetime, *values: float) -> dict[str, Any]:
    """A forecast answer: the current MOER, then one point per five minutes."""
    body = forecast(
        *(
            (f"{first + timedelta(minutes=5 * i):%Y-%m-%dT%H:%M:%S}+00:00", v)
            for i, v in enumerate(values)
        )
    )
    body["meta"]["data_point_period_seconds"] = 300
    return body


def short_lived() -> CarbonIntensitySource:
    return CarbonIntensitySource.model_validate(
        {
            "wattTime": {"region": "CAISO_NORTH", "credentialsSecretRef": {"name": "watttime"}},
            "maxAgeSeconds": 600,
        }
    )


def test_when_the_latest_moer_is_too_old_the_forecast_for_now_is_used(
    server: ScriptedServer, wt: Providers
) -> None:
    server.script("/login", json_answer({"token": "jwt"}))
    first = datetime(2026, 11, 27, 21, 5, tzinfo=UTC)
    server.script("/v3/forecast", json_answer(five_minutes(first, 1000.0, 900.0, 800.0, 700.0)))
    assert wt.read(short_lived(), first).source == "WattTime"
    # WattTime down: the refresh fails; after maxAgeSeconds the forecast carries on.
    server.script("/v3/forecast", json_answer({"error": "down"}, status=503))
    at = first + timedelta(minutes=16)
    reading = wt.read(short_lived(), at)
    assert reading.source == "Forecast"
    assert reading.value == pytest.approx(700.0 * 0.453592)
    assert reading.observed_at == first + timedelta(minutes=15)
    assert reading.note is not None
    assert reading.note.startswith("WattTime forecast for region CAISO_NORTH: HTTP 503")
    with pytest.raises(SignalError, match=r"HTTP 503.*the forecast does not cover"):
        wt.read(short_lived(), first + timedelta(minutes=25))  # past its last point
