"""Prices in another currency: a price source declares its `currency`, the operator's rate table
converts it to USD/MWh, and a currency without a rate fails the read with what to set."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from scripted_server import ScriptedServer, json_answer, text_answer
from signal_kit import Providers

from gridplace_operator.api.region import PowerPriceSource
from gridplace_operator.signals.providers.common import to_usd
from gridplace_operator.signals.sources import SignalError, resolve

NOW = datetime(2026, 11, 27, 21, 10, tzinfo=UTC)
CSV = "datetime_utc,price_eur_mwh\n2026-11-27 21:00:00,100.0\n"


def csv_source(url: str, **extra: Any) -> PowerPriceSource:
    return PowerPriceSource.model_validate(
        {"file": {"url": url, "valueColumn": "price_eur_mwh"}, **extra}
    )


def test_a_csv_in_euros_is_planned_in_dollars(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    server.script("/de.csv", text_answer(CSV))
    providers = make_providers(usd_per_currency={"EUR": 1.08})
    reading = providers.read(csv_source(f"{server.url}/de.csv", currency="EUR"), NOW)
    assert reading.source == "File"
    assert reading.value == pytest.approx(108.0)
    # without a currency the column is taken as USD/MWh, as before
    assert providers.read(csv_source(f"{server.url}/de.csv"), NOW).value == 100.0


def test_a_prometheus_price_in_pounds(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    vector = {"resultType": "vector", "result": [{"metric": {}, "value": [NOW.timestamp(), "80"]}]}
    server.script("/api/v1/query", json_answer({"status": "success", "data": vector}))
    providers = make_providers(usd_per_currency={"GBP": 1.25})
    source = PowerPriceSource.model_validate(
        {"prometheus": {"query": "max(uk_price)"}, "currency": "GBP"}
    )
    assert providers.read(source, NOW).value == pytest.approx(100.0)


def test_a_currency_without_a_rate_fails_the_read_and_the_fallback_is_used(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    server.script("/se.csv", text_answer(CSV))
    providers = make_providers(usd_per_currency={"EUR": 1.08})
    source = csv_source(f"{server.url}/se.csv", currency="SEK", fallback={"usdPerMWh": 50})
    with pytest.raises(SignalError) as raised:
        providers.read(source, NOW)
    message = str(raised.value)
    assert message == (
        "File price: the price is in SEK/MWh; set GRIDPLACE_USD_PER_CURRENCY=SEK=<USD per SEK>"
        " to convert it to USD/MWh (rates known: EUR)"
    )
    resolved = resolve("powerPrice", source, None, message, NOW)
    assert resolved is not None
    assert (resolved.value, resolved.status.source, resolved.used_fallback) == (
        50,
        "Fallback",
        True,
    )
    assert "GRIDPLACE_USD_PER_CURRENCY=SEK=" in resolved.status.message


def test_usd_needs_no_rate() -> None:
    assert to_usd(42.0, "USD", {}, "x") == 42.0
    assert to_usd(10.0, "eur", {"EUR": 1.1}, "x") == pytest.approx(11.0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"static": {"usdPerMWh": 10}, "currency": "EUR"},
            "currency applies to file and prometheus",
        ),
        (
            {
                "electricityMaps": {"zone": "DE", "apiKeySecretRef": {"name": "e", "key": "t"}},
                "currency": "EUR",
            },
            "currency applies to file and prometheus",
        ),
        ({"prometheus": {"query": "x"}, "currency": "eur"}, "String should match pattern"),
        ({"prometheus": {"query": "x"}, "currency": "EURO"}, "at most 3 characters"),
    ],
)
def test_currency_only_where_the_values_have_no_unit_of_their_own(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        PowerPriceSource.model_validate(spec)
