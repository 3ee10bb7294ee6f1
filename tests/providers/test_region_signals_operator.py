"""The operator as users run it, reading Region signals through the providers: a carbon CSV in
a ConfigMap shows up in status.signals; a failing Electricity Maps plans with its forecast, or falls
back, and says why."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from scripted_server import ScriptedServer, json_answer

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_e2e.operator_run import OperatorProcess, condition, get_json, wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


def region(name: str, carbon: dict[str, Any]) -> str:
    body = {
        "apiVersion": "gridplace.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": name},
        "spec": {"carbonIntensity": carbon, "powerPrice": {"static": {"usdPerMWh": 50}}},
    }
    return yaml.safe_dump(body)


@pytest.fixture
def operator(
    cluster: ClusterHandle,
    namespace: str,
    server: ScriptedServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[OperatorProcess]:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    # The operator process inherits these: its namespace, and Electricity Maps on 127.0.0.1.
    monkeypatch.setenv("GRIDPLACE_NAMESPACE", namespace)
    monkeypatch.setenv("GRIDPLACE_ELECTRICITY_MAPS_URL", f"{server.url}/v3")
    monkeypatch.setenv("GRIDPLACE_SIGNAL_HTTP_TIMEOUT", "1")
    process = OperatorProcess(cluster.kubeconfig, tmp_path / "operator.log")
    try:
        process.start()
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    yield process
    process.stop()


def signals(cluster: ClusterHandle, name: str) -> dict[str, Any]:
    return dict(get_json(cluster, "region", name).get("status", {}).get("signals") or {})


def test_region_signals_from_a_configmap_and_a_failing_api(
    cluster: ClusterHandle, namespace: str, server: ScriptedServer, operator: OperatorProcess
) -> None:
    # Rows far enough from now that the row in force cannot change during the test.
    current = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    csv = (
        "datetime_utc,ci_gco2_kwh\n"
        f"{current - timedelta(hours=1):%Y-%m-%d %H:%M:%S},400\n"
        f"{current:%Y-%m-%d %H:%M:%S},123.4\n"
        f"{current + timedelta(hours=2):%Y-%m-%d %H:%M:%S},999\n"  # a forecast row, not yet
    )
    cluster.kubectl(
        "create", "configmap", "carbon", "-n", namespace, f"--from-literal=de.csv={csv}"
    )
    cluster.kubectl(
        "create", "secret", "generic", "emaps", "-n", namespace, "--from-literal=token=t0k3n"
    )
    server.script("/v3/carbon-intensity/latest", json_answer({"message": "down"}, status=503))
    suffix = uuid.uuid4().hex[:6]
    from_file, from_api = f"sig-file-{suffix}", f"sig-em-{suffix}"
    manifests = (
        region(
            from_file,
            {
                "file": {
                    "configMapRef": {"name": "carbon", "key": "de.csv"},
                    "valueColumn": "ci_gco2_kwh",
                },
                "maxAgeSeconds": 7200,
            },
        )
        + "---\n"
        + region(
            from_api,
            {
                "electricityMaps": {
                    "zone": "DE",
                    "apiKeySecretRef": {"name": "emaps", "key": "token"},
                },
                "fallback": {"gCO2PerKWh": 99},
            },
        )
    )
    cluster.kubectl("apply", "-f", "-", input=manifests)
    try:
        wait_for(
            lambda: signals(cluster, from_file).get("carbonIntensity", {}).get("source") == "File",
            90,
            f"Region {from_file} to show the ConfigMap's carbon intensity",
            operator,
        )
        carbon = signals(cluster, from_file)["carbonIntensity"]
        assert carbon["value"] == 123.4
        assert carbon["unit"] == "gCO2eq/kWh"
        assert carbon["stale"] is False
        assert carbon["observedAt"].startswith(f"{current:%Y-%m-%dT%H:%M:%S}")
        healthy = condition(get_json(cluster, "region", from_file), "SignalsHealthy")
        assert (healthy["status"], healthy["reason"]) == ("True", "Fresh")

        def failed_over() -> bool:
            # Until the first read answers, the Region plans with its fallback and says the read
            # is under way; then the message carries the failure.
            carbon = signals(cluster, from_api).get("carbonIntensity", {})
            return carbon.get("source") == "Fallback" and "HTTP 503" in carbon.get("message", "")

        wait_for(failed_over, 90, f"Region {from_api} to fall back on the API's 503", operator)
        fallback = signals(cluster, from_api)["carbonIntensity"]
        assert (fallback["value"], fallback["stale"]) == (99, True)
        assert (
            "Electricity Maps carbon-intensity/latest for zone DE: HTTP 503" in fallback["message"]
        )
        health = condition(get_json(cluster, "region", from_api), "SignalsHealthy")
        assert (health["status"], health["reason"]) == ("False", "UsingFallback")
        assert server.requests["/v3/carbon-intensity/latest"][0].headers["auth-token"] == "t0k3n"
        # Planning cycles every 2 s do not hammer the failing API: it is asked again only after
        # the 30 s pause (3 attempts each time).
        operator.wait_cycles(5)
        assert server.count("/v3/carbon-intensity/latest") <= 6
    finally:
        cluster.kubectl("delete", "region", from_file, from_api, "--wait=false")


def test_a_region_whose_latest_value_fails_plans_with_the_forecast_for_this_hour(
    cluster: ClusterHandle, namespace: str, server: ScriptedServer, operator: OperatorProcess
) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = {hour - timedelta(hours=1): 81.0, hour: 77.0, hour + timedelta(hours=1): 66.0}
    forecast = [
        {"carbonIntensity": v, "datetime": f"{t:%Y-%m-%dT%H:%M:%S}.000Z"} for t, v in rows.items()
    ]
    server.script("/v3/carbon-intensity/latest", json_answer({"message": "down"}, status=503))
    server.script(
        "/v3/carbon-intensity/forecast", json_answer({"zone": "FR", "forecast": forecast})
    )
    cluster.kubectl(
        "create", "secret", "generic", "emaps", "-n", namespace, "--from-literal=token=t0k3n"
    )
    name = f"sig-fc-{uuid.uuid4().hex[:6]}"
    source = {
        "electricityMaps": {"zone": "FR", "apiKeySecretRef": {"name": "emaps", "key": "token"}},
        "fallback": {"gCO2PerKWh": 99},
    }
    cluster.kubectl("apply", "-f", "-", input=region(name, source))
    try:
        wait_for(
            lambda: signals(cluster, name).get("carbonIntensity", {}).get("source") == "Forecast",
            90,
            f"Region {name} to plan with the forecast",
            operator,
        )
        carbon = signals(cluster, name)["carbonIntensity"]
        at = datetime.fromisoformat(carbon["observedAt"].replace("Z", "+00:00"))
        assert carbon["value"] == rows[at]  # the row of the hour in force (an hour may turn)
        assert carbon["stale"] is False
        assert carbon["message"].startswith(
            "Electricity Maps carbon-intensity/latest for zone FR: HTTP 503"
        )
        assert f"; using the forecast for {at:%Y-%m-%dT%H:%M:%SZ}" in carbon["message"]
        health = condition(get_json(cluster, "region", name), "SignalsHealthy")
        assert (health["status"], health["reason"]) == ("True", "Fresh")
        forecast_request = server.requests["/v3/carbon-intensity/forecast"][0]
        assert forecast_request.query == {"zone": "FR"}
        assert forecast_request.headers["auth-token"] == "t0k3n"
    finally:
        cluster.kubectl("delete", "region", name, "--wait=false")
