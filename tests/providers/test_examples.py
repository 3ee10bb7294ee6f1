"""The Regions of examples/region-signal-sources.yaml get a value for every signal through the
providers, with the Secrets and ConfigMap they name in the cluster and the APIs on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from scripted_server import ScriptedServer, json_answer
from signal_kit import Providers, create_secret

from gridplace_operator.api.region import Region

pytestmark = pytest.mark.cluster
EXAMPLE = Path(__file__).resolve().parents[2] / "examples/region-signal-sources.yaml"
NOW = datetime(2026, 11, 27, 21, 10, tzinfo=UTC)


def test_every_example_signal_resolves(
    kube: tuple[client.ApiClient, str],
    server: ScriptedServer,
    make_providers: Callable[..., Providers],
) -> None:
    api_client, namespace = kube
    create_secret(api_client, namespace, "electricity-maps", token="t")
    create_secret(api_client, namespace, "watttime", username="u", password="p")
    client.CoreV1Api(api_client).create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="nordpool-prices"),
            data={"se3.csv": "datetime_utc,price_usd_mwh\n2026-11-27 21:00:00,38.75\n"},
        ),
    )
    server.script(
        "/v3/carbon-intensity/latest",
        json_answer({"zone": "SE-SE3", "carbonIntensity": 31, "datetime": "2026-11-27T21:00:00Z"}),
    )
    server.script("/login", json_answer({"token": "jwt"}))
    server.script(
        "/v3/forecast",
        json_answer(
            {
                "data": [{"point_time": "2026-11-27T21:05:00+00:00", "value": 1200.0}],
                "meta": {"units": "lbs_co2_per_mwh", "region": "PJM_DC"},
            }
        ),
    )
    server.script(
        "/api/v1/query",
        json_answer(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [{"metric": {"market": "PJM"}, "value": [1795900000, "61.5"]}],
                },
            }
        ),
    )
    providers = make_providers(api_client, namespace=namespace)
    regions = {
        r.metadata.name: r
        for r in (Region.model_validate(d) for d in yaml.safe_load_all(EXAMPLE.read_text()) if d)
    }
    got = {
        (name, kind): (reading.value, reading.source)
        for name, region in regions.items()
        for kind, reading in (
            ("carbon", providers.read(region.spec.carbon_intensity, NOW)),
            ("price", providers.read(region.spec.power_price, NOW)),
        )
    }
    assert got == {
        ("eu-north-1", "carbon"): (31.0, "ElectricityMaps"),
        ("eu-north-1", "price"): (38.75, "File"),
        ("us-east-2", "carbon"): (pytest.approx(1200 * 0.453592), "WattTime"),
        ("us-east-2", "price"): (61.5, "Prometheus"),
    }
    assert server.requests["/v3/forecast"][0].query["region"] == "PJM_DC"
    assert server.requests["/api/v1/query"][0].query["query"] == (
        'max(power_price_usd_per_mwh{market="PJM",node="AEP"})'
    )
