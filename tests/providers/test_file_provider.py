"""`file` sources: a CSV from a URL (gzip too) served on 127.0.0.1, and from a ConfigMap of the
local cluster; the series is cached and the value in force follows the clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from scripted_server import Answer, ScriptedServer, text_answer
from signal_kit import Providers

from gridplace_e2e.public_data import CARBON_INTENSITY as CARBON_GZ
from gridplace_operator.api.region import CarbonIntensitySource, PowerPriceSource
from gridplace_operator.signals.sources import SignalError

PRICES = """datetime_utc,price_usd_mwh
2026-11-27 10:00:00,80.5
2026-11-27 11:00:00,95.0
2026-11-27 12:00:00,70.25
"""
T10 = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)


def price_source(
    url: str, fields: dict[str, Any] | None = None, max_age_seconds: int = 3600
) -> PowerPriceSource:
    return PowerPriceSource.model_validate(
        {
            "file": {"url": url, "valueColumn": "price_usd_mwh", **(fields or {})},
            "maxAgeSeconds": max_age_seconds,
        }
    )


def test_a_csv_url_gives_the_row_in_force(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    server.script("/prices.csv", text_answer(PRICES))
    reading = make_providers().read(price_source(f"{server.url}/prices.csv"), T10)
    assert (reading.value, reading.source) == (80.5, "File")
    assert reading.observed_at == datetime(2026, 11, 27, 10, tzinfo=UTC)


def test_the_public_gzip_file_is_read_for_one_zone(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    if not CARBON_GZ.exists():
        pytest.fail(f"the public scenario data is missing: {CARBON_GZ}")
    server.script("/ci.csv.gz", Answer(200, CARBON_GZ.read_bytes(), "application/gzip"))
    source = CarbonIntensitySource.model_validate(
        {
            "file": {
                "url": f"{server.url}/ci.csv.gz",
                "valueColumn": "ci_lca_gco2_kwh",
                "zoneColumn": "zone",
                "zone": "DE-LU",
            }
        }
    )
    reading = make_providers().read(source, datetime(2023, 6, 15, 12, 20, tzinfo=UTC))
    assert reading.value == 292.68  # the row 2023-06-15 12:00:00,DE-LU,...,292.68
    assert reading.observed_at == datetime(2023, 6, 15, 12, tzinfo=UTC)


def test_the_file_is_fetched_once_per_refresh_and_the_hour_moves_without_a_download(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    server.script("/prices.csv", text_answer(PRICES))
    providers = make_providers(refresh_seconds=3600)
    # Refreshed after min(3600 s, maxAgeSeconds / 4) = 1800 s.
    source = price_source(f"{server.url}/prices.csv", max_age_seconds=7200)
    start = datetime(2026, 11, 27, 10, 50, tzinfo=UTC)
    assert providers.read(source, start).value == 80.5
    assert providers.read(source, start + timedelta(seconds=2)).value == 80.5
    assert providers.read(source, start + timedelta(minutes=11)).value == 95.0  # 11:01
    assert server.count("/prices.csv") == 1
    providers.read(source, start + timedelta(seconds=1800))
    assert server.count("/prices.csv") == 2


def test_a_failed_download_is_not_retried_every_cycle(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    server.script("/prices.csv", text_answer("oops", status=500))
    providers = make_providers(attempts=1)
    source = price_source(f"{server.url}/prices.csv")
    for seconds in (0, 2, 4):
        with pytest.raises(SignalError, match=r"CSV file: HTTP 500 from http://127.0.0.1"):
            providers.read(source, T10 + timedelta(seconds=seconds))
    assert server.count("/prices.csv") == 1  # the error is remembered for 30 s
    server.script("/prices.csv", text_answer(PRICES))
    assert providers.read(source, T10 + timedelta(seconds=31)).value == 80.5


@pytest.mark.parametrize(
    ("body", "fields", "message"),
    [
        (PRICES, {"valueColumn": "usd"}, "column 'usd' not found"),
        (PRICES, {"zoneColumn": "zone", "zone": "DE"}, "column 'zone' not found"),
        (b"\x1f\x8bnot really gzip", {}, "bad gzip data"),
        (PRICES.replace("95.0", "ninety"), {}, "line 3: price_usd_mwh is not a finite number"),
    ],
)
def test_a_bad_file_names_the_file_and_the_problem(
    server: ScriptedServer,
    make_providers: Callable[..., Providers],
    body: str | bytes,
    fields: dict[str, str],
    message: str,
) -> None:
    server.script("/p.csv", Answer(200, body if isinstance(body, bytes) else body.encode()))
    with pytest.raises(SignalError, match=f"CSV file {server.url}/p.csv: .*{message}"):
        make_providers().read(price_source(f"{server.url}/p.csv", fields), T10)


def test_a_forecast_file_starting_later_is_an_error_until_its_first_row(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    server.script("/p.csv", text_answer(PRICES))
    providers = make_providers()
    source = price_source(f"{server.url}/p.csv")
    with pytest.raises(SignalError, match="no row at or before 2026-11-27T09:00:00Z"):
        providers.read(source, datetime(2026, 11, 27, 9, tzinfo=UTC))
    assert providers.read(source, datetime(2026, 11, 27, 10, tzinfo=UTC)).value == 80.5


@pytest.mark.cluster
def test_a_configmap_key_in_the_cluster(
    kube: tuple[client.ApiClient, str], make_providers: Callable[..., Providers]
) -> None:
    api_client, namespace = kube
    client.CoreV1Api(api_client).create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="prices"), data={"de.csv": PRICES}),
    )
    providers = make_providers(api_client, namespace=namespace)
    source = PowerPriceSource.model_validate(
        {
            "file": {
                "configMapRef": {"name": "prices", "key": "de.csv"},
                "valueColumn": "price_usd_mwh",
            }
        }
    )
    reading = providers.read(source, datetime(2026, 11, 27, 12, 5, tzinfo=UTC))
    assert (reading.value, reading.source) == (70.25, "File")

    missing_key = PowerPriceSource.model_validate(
        {
            "file": {
                "configMapRef": {"name": "prices", "key": "fr.csv", "namespace": namespace},
                "valueColumn": "price_usd_mwh",
            }
        }
    )
    with pytest.raises(
        SignalError,
        match=f"ConfigMap {namespace}/prices has no key 'fr.csv' "
        r"\(keys: de.csv\)",
    ):
        providers.read(missing_key, T10)
    missing_map = PowerPriceSource.model_validate(
        {"file": {"configMapRef": {"name": "nope", "key": "a.csv"}, "valueColumn": "v"}}
    )
    with pytest.raises(SignalError, match=f"ConfigMap {namespace}/nope not found"):
        providers.read(missing_map, T10)
