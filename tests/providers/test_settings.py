"""Provider settings from the operator's environment: public defaults, overrides, clear errors."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from gridplace_operator import cli
from gridplace_operator.cli import main
from gridplace_operator.signals.providers.settings import ProviderSettings, parse_rates


def test_defaults_are_the_public_apis() -> None:
    settings = ProviderSettings.from_env({})
    assert settings.electricity_maps_url == "https://api.electricitymap.org/v3"
    assert settings.watt_time_url == "https://api.watttime.org"
    assert settings.prometheus_url is None
    assert settings.usd_per_currency == {}
    assert settings.allowed_hosts == frozenset()  # any host


def test_every_variable_overrides_its_setting() -> None:
    settings = ProviderSettings.from_env(
        {
            "GRIDPLACE_ELECTRICITY_MAPS_URL": "http://127.0.0.1:9/v3/",
            "GRIDPLACE_WATTTIME_URL": "http://127.0.0.1:9",
            "GRIDPLACE_PROMETHEUS_URL": "http://prometheus:9090/",
            "GRIDPLACE_NAMESPACE": "gridplace-system",
            "GRIDPLACE_SIGNAL_HTTP_TIMEOUT": "2.5",
            "GRIDPLACE_SIGNAL_ATTEMPTS": "5",
            "GRIDPLACE_SIGNAL_REFRESH": "120",
            "GRIDPLACE_USD_PER_CURRENCY": "eur=1.08, GBP=1.27",
            "GRIDPLACE_FEED_ALLOWED_HOSTS": " API.electricitymap.org,10.0.0.7,[fd00::1], ",
        }
    )
    assert settings.electricity_maps_url == "http://127.0.0.1:9/v3"
    assert settings.prometheus_url == "http://prometheus:9090"
    assert settings.namespace == "gridplace-system"
    assert (settings.http_timeout_seconds, settings.attempts, settings.refresh_seconds) == (
        2.5,
        5,
        120,
    )
    assert settings.usd_per_currency == {"EUR": 1.08, "GBP": 1.27}
    assert settings.allowed_hosts == {"api.electricitymap.org", "10.0.0.7", "fd00::1"}


def test_prometheus_sources_use_the_operators_prometheus_unless_told_otherwise() -> None:
    flag = "http://127.0.0.1:9090"
    assert ProviderSettings.from_env({}, prometheus_url=flag).prometheus_url == flag
    other = {"GRIDPLACE_PROMETHEUS_URL": "http://prices:9090"}
    assert (
        ProviderSettings.from_env(other, prometheus_url=flag).prometheus_url == "http://prices:9090"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"GRIDPLACE_SIGNAL_HTTP_TIMEOUT": "soon"},
            "GRIDPLACE_SIGNAL_HTTP_TIMEOUT must be a number, got 'soon'",
        ),
        ({"GRIDPLACE_SIGNAL_ATTEMPTS": "0"}, "GRIDPLACE_SIGNAL_ATTEMPTS must be positive, got '0'"),
        ({"GRIDPLACE_USD_PER_CURRENCY": "EUR"}, "expected CURRENCY=RATE .*got 'EUR'"),
        ({"GRIDPLACE_USD_PER_CURRENCY": "EUR=-1"}, "got 'EUR=-1'"),
        ({"GRIDPLACE_FEED_ALLOWED_HOSTS": "https://data.example.com"}, "no scheme|without scheme"),
        ({"GRIDPLACE_FEED_ALLOWED_HOSTS": "data.example.com:8443"}, "got 'data.example.com:8443'"),
    ],
)
def test_bad_values_name_the_variable_and_the_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProviderSettings.from_env(env)


def test_empty_rates() -> None:
    assert parse_rates(" , ") == {}


def test_the_run_flag_sets_the_allowed_hosts_the_providers_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRIDPLACE_FEED_ALLOWED_HOSTS", "")  # restored after the test
    started: dict[str, Any] = {}
    monkeypatch.setattr(cli, "preflight", lambda *_: (0, None))  # no cluster to reach
    monkeypatch.setattr(kopf, "configure", lambda **_: None)
    monkeypatch.setattr(kopf, "run", lambda **kwargs: started.update(kwargs))  # not started
    assert main(["run", "--feed-allowed-hosts=api.watttime.org,Data.Example.com"]) == 0
    assert started
    assert ProviderSettings.from_env().allowed_hosts == {"api.watttime.org", "data.example.com"}
