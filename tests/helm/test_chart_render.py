"""`helm lint` and `helm template` of the gridplace chart: defaults, a table of value sets, and
invalid values the schema must reject with a message that names the value."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from helmchart import CHART, ROOT, Helm, HelmError, objects, one, operator_container, rules

from gridplace_operator.signals.providers.settings import parse_hosts, parse_rates

MONITORING = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PodMonitor")


def test_lint_is_clean(helm: Helm) -> None:
    out = helm.run("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_defaults_render_a_hardened_single_replica_operator(helm: Helm) -> None:
    docs = helm.template()
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    # Leader election: the new pod of a rollout waits as a standby until the old one hands over.
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(docs)
    assert container["image"] == "ghcr.io/gridplace/gridplace-operator:0.1.0"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "health": 8080,
        "metrics": 8081,
    }
    # `gridplace run` binds loopback by default; in the pod, probes and Prometheus use the pod IP.
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert "--metrics-address=0.0.0.0" in container["args"]
    assert "--metrics-port=8081" in container["args"]
    assert "--leader-election-namespace=gridplace-system" in container["args"]
    assert "--lease-name=gp-gridplace" in container["args"]
    assert not any(a.startswith("--namespace") for a in container["args"])
    assert not any(a.startswith("--prometheus-url") for a in container["args"])  # demand-sized
    assert {"limits", "requests"} <= container["resources"].keys()
    service = one(docs, "Service", "-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert not objects(docs, "ServiceMonitor")
    assert not objects(docs, "PodMonitor")


def test_chart_objects_never_carry_the_label_of_gridplace_children(helm: Helm) -> None:
    """The operator watches Deployments and Services labelled managed-by=gridplace: its own
    Deployment must not look like one of its children."""
    for doc in helm.template():
        assert doc["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "Helm"


def test_default_rbac_reads_no_secret_and_writes_no_cluster_object(helm: Helm) -> None:
    docs = helm.template()
    cluster = one(docs, "ClusterRole", "-cluster")
    writes = {"create", "update", "patch", "delete", "deletecollection"}
    assert [g for g in rules(cluster) if g[2] in writes] == [
        ("gridplace.dev", "regions/status", "patch", ())
    ]
    everything = [
        g for role in objects(docs, "ClusterRole") + objects(docs, "Role") for g in rules(role)
    ]
    assert not [g for g in everything if g[1] == "secrets"]
    assert not [g for g in everything if "*" in (g[0], g[1], g[2])]
    assert ("", "pods", "list", ()) in everything
    assert not [g for g in everything if g[1] == "pods" and g[2] != "list"]
    signals = one(docs, "Role", "-signals")
    assert rules(signals) == [("", "configmaps", "get", ())]
    binding = one(docs, "ClusterRoleBinding", "-workloads")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "gp-gridplace", "namespace": "gridplace-system"}
    ]


def test_crds_are_the_generated_ones_and_kept_by_default(helm: Helm) -> None:
    crds = {d["metadata"]["name"]: d for d in objects(helm.template(), "CustomResourceDefinition")}
    sources = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "crds").glob("*.yaml")}
    assert crds.keys() == sources.keys()
    for name, crd in crds.items():
        assert crd["spec"] == sources[name]["spec"], name
        assert crd["metadata"]["annotations"] == {
            "helm.sh/resource-policy": "keep",
            "argocd.argoproj.io/sync-options": "Delete=false,Prune=false",
        }
        assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == "gp"


def test_chart_copy_of_the_crds_has_not_drifted() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "sync_chart_crds.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def _watch_two_namespaces(docs: list[dict[str, Any]]) -> None:
    args = operator_container(docs)["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=serving",
        "--namespace=batch",
    ]
    bindings = objects(docs, "RoleBinding")
    workloads = [b for b in bindings if b["metadata"]["name"].endswith("-workloads")]
    assert sorted(b["metadata"]["namespace"] for b in workloads) == ["batch", "serving"]
    assert all(b["roleRef"]["kind"] == "ClusterRole" for b in workloads)
    assert not [
        b for b in objects(docs, "ClusterRoleBinding") if "-workloads" in b["metadata"]["name"]
    ]
    events = one(docs, "Role", "-region-events")
    assert events["metadata"]["namespace"] == "default"
    assert rules(events) == [("", "events", "create", ()), ("", "events", "patch", ())]


def _no_crds(docs: list[dict[str, Any]]) -> None:
    assert not objects(docs, "CustomResourceDefinition")


def _crds_not_kept(docs: list[dict[str, Any]]) -> None:
    for crd in objects(docs, "CustomResourceDefinition"):
        assert not crd["metadata"].get("annotations")


def _named_secrets(docs: list[dict[str, Any]]) -> None:
    signals = one(docs, "Role", "-signals")
    assert signals["metadata"]["namespace"] == "signals"
    assert rules(signals) == [
        ("", "configmaps", "get", ("nordpool-prices",)),
        ("", "secrets", "get", ("electricity-maps", "watttime")),
    ]
    env = {e["name"]: e["value"] for e in operator_container(docs)["env"]}
    assert env["GRIDPLACE_NAMESPACE"] == "signals"


def _currency_rates(docs: list[dict[str, Any]]) -> None:
    env = {e["name"]: e["value"] for e in operator_container(docs)["env"]}
    rates = parse_rates(env["GRIDPLACE_USD_PER_CURRENCY"])  # what the operator will read
    assert rates == {"EUR": 1.08, "GBP": 1.27, "JPY": 0.0067}


def _no_signal_access(docs: list[dict[str, Any]]) -> None:
    assert not [r for r in objects(docs, "Role") if r["metadata"]["name"].endswith("-signals")]


def _monitors(docs: list[dict[str, Any]]) -> None:
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    pods = one(docs, "PodMonitor")
    assert pods["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/managed-by": "gridplace"}
    assert pods["spec"]["namespaceSelector"] == {"any": True}
    relabeled = {r["targetLabel"] for r in pods["spec"]["podMetricsEndpoints"][0]["relabelings"]}
    assert {"namespace", "inference_deployment", "region"} <= relabeled  # what the queries use


def _pinned_image(docs: list[dict[str, Any]]) -> None:
    digest = "sha256:" + "ab" * 32
    assert operator_container(docs)["image"] == f"registry.example/gp:1.2.3@{digest}"


def _autoscaler(docs: list[dict[str, Any]]) -> None:
    args = operator_container(docs)["args"]
    assert "--prometheus-url=http://prometheus-operated.monitoring:9090" in args
    assert "--prometheus-rate-window=4m" in args
    assert "--autoscale-period=15" in args


def _ipv6_bind(docs: list[dict[str, Any]]) -> None:
    args = operator_container(docs)["args"]
    assert "--liveness=http://[::]:8080/healthz" in args  # a URL needs the brackets
    assert "--metrics-address=::" in args


def _metrics_from_prometheus_only(docs: list[dict[str, Any]]) -> None:
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    by_port = {rule["ports"][0]["port"]: rule for rule in policy["spec"]["ingress"]}
    assert by_port["metrics"]["from"] == [PROMETHEUS_PEER]
    assert "from" not in by_port["health"]  # the kubelet's probes come from the node


def _no_extras(docs: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ConfigMap", "Service", "NetworkPolicy", "ServiceAccount"}
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


PROMETHEUS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
}
Check = Callable[[list[dict[str, Any]]], None]


def _two_replicas(docs: list[dict[str, Any]]) -> None:
    assert one(docs, "Deployment")["spec"]["replicas"] == 2
    lease = one(docs, "Role", "-leader-election")
    assert lease["metadata"]["namespace"] == "gridplace-system"
    assert rules(lease) == [
        ("coordination.k8s.io", "leases", verb, ()) for verb in ("get", "create", "update")
    ]


def _feed_hosts(docs: list[dict[str, Any]]) -> None:
    env = {e["name"]: e.get("value") for e in operator_container(docs)["env"]}
    hosts = env["GRIDPLACE_FEED_ALLOWED_HOSTS"]
    assert hosts == "api.electricitymap.org,10.0.0.7"
    assert parse_hosts(hosts) == {"api.electricitymap.org", "10.0.0.7"}  # as the operator reads it


def _no_leader_election(docs: list[dict[str, Any]]) -> None:
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "--no-leader-election" in operator_container(docs)["args"]
    assert not [
        r for r in objects(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")
    ]


VALID: dict[str, tuple[dict[str, Any], Check]] = {
    "watch-two-namespaces": ({"watchNamespaces": ["serving", "batch"]}, _watch_two_namespaces),
    "crds-disabled": ({"crds": {"enabled": False, "keep": True}}, _no_crds),
    "crds-not-kept": ({"crds": {"enabled": True, "keep": False}}, _crds_not_kept),
    "named-secrets": (
        {
            "signals": {
                "namespace": "signals",
                "configMaps": {"access": "named", "names": ["nordpool-prices"]},
                "secrets": {"access": "named", "names": ["electricity-maps", "watttime"]},
            }
        },
        _named_secrets,
    ),
    "currency-rates": (
        {"signals": {"usdPerCurrency": {"GBP": 1.27, "EUR": 1.08, "JPY": 0.0067}}},
        _currency_rates,
    ),
    "no-signal-access": (
        {
            "signals": {
                "configMaps": {"access": "none", "names": []},
                "secrets": {"access": "none", "names": []},
            }
        },
        _no_signal_access,
    ),
    "monitors": (
        {
            "metrics": {
                "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
                "vllmPodMonitor": {"enabled": True},
            }
        },
        _monitors,
    ),
    "pinned-image": (
        {
            "image": {
                "repository": "registry.example/gp",
                "tag": "1.2.3",
                "digest": "sha256:" + "ab" * 32,
            }
        },
        _pinned_image,
    ),
    "autoscaler": (
        {
            "operator": {
                "prometheusUrl": "http://prometheus-operated.monitoring:9090",
                "prometheusRateWindow": "4m",
            }
        },
        _autoscaler,
    ),
    "ipv6-bind": ({"bindAddress": "::"}, _ipv6_bind),
    "two-replicas": ({"replicaCount": 2}, _two_replicas),
    "feed-hosts": (
        {"signals": {"allowedHosts": ["api.electricitymap.org", "10.0.0.7"]}},
        _feed_hosts,
    ),
    "no-leader-election": ({"leaderElection": {"enabled": False}}, _no_leader_election),
    "metrics-from-prometheus-only": (
        {"networkPolicy": {"enabled": True, "metricsFrom": [PROMETHEUS_PEER]}},
        _metrics_from_prometheus_only,
    ),
    "bare": (
        {
            "serviceAccount": {"create": False, "name": "ops"},
            "metrics": {"service": {"enabled": False}},
            "dashboard": {"enabled": False},
            "networkPolicy": {"enabled": False},
        },
        _no_extras,
    ),
}


@pytest.mark.parametrize("case", VALID)
def test_value_sets_render_as_documented(helm: Helm, case: str) -> None:
    values, check = VALID[case]
    check(helm.template(values, api_versions=MONITORING))


# values -> what the error must say (the field and, where there is one, the offending value)
INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "keep-not-bool": (
        {"crds": {"enabled": True, "keep": "yes"}},
        "at '/crds/keep': got string, want boolean",
    ),
    "bad-namespace": (
        {"watchNamespaces": ["Serving_NS"]},
        "at '/watchNamespaces/0': 'Serving_NS' does not match",
    ),
    "duplicate-namespace": ({"watchNamespaces": ["a", "a"]}, "at '/watchNamespaces'"),
    "all-secrets": (
        {"signals": {"secrets": {"access": "all", "names": []}}},
        "at '/signals/secrets/access': value must be one of 'none', 'named'",
    ),
    "named-without-names": (
        {"signals": {"secrets": {"access": "named", "names": []}}},
        "at '/signals/secrets/names': minItems: got 0, want 1",
    ),
    "currency-code": (
        {"signals": {"usdPerCurrency": {"euro": 1.08}}},
        "at '/signals/usdPerCurrency': additional properties 'euro' not allowed",
    ),
    "currency-rate": (
        {"signals": {"usdPerCurrency": {"EUR": 0}}},
        "at '/signals/usdPerCurrency/EUR'",
    ),
    "unknown-key": ({"replicas": 2}, "additional properties 'replicas' not allowed"),
    "feed-host-with-port": (
        {"signals": {"allowedHosts": ["api.example.com:443"]}},
        "at '/signals/allowedHosts/0': 'api.example.com:443' does not match",
    ),
    "two-writers": (
        {"replicaCount": 2, "leaderElection": {"enabled": False}},
        "at '/replicaCount': value must be 1",
    ),
    "typo-in-section": (
        {"crds": {"enabled": True, "keep": True, "kept": True}},
        "additional properties 'kept' not allowed",
    ),
    "pull-policy": (
        {"image": {"pullPolicy": "Sometimes"}},
        "at '/image/pullPolicy': value must be one of",
    ),
    "digest": ({"image": {"digest": "latest"}}, "at '/image/digest': 'latest' does not match"),
    "writable-root": (
        {"securityContext": {"readOnlyRootFilesystem": False}},
        "at '/securityContext/readOnlyRootFilesystem': value must be true",
    ),
    "root-allowed": (
        {"podSecurityContext": {"runAsNonRoot": False}},
        "at '/podSecurityContext/runAsNonRoot': value must be true",
    ),
    "memory": (
        {"resources": {"limits": {"memory": "lots"}}},
        "at '/resources/limits/memory': 'lots' does not match",
    ),
    "bind-name": (
        {"bindAddress": "localhost"},
        "at '/bindAddress': 'localhost' does not match",
    ),
    "port": ({"metrics": {"port": 70000}}, "at '/metrics/port': maximum: got 70,000, want 65,535"),
    "plan-period": ({"operator": {"planPeriodSeconds": 0}}, "at '/operator/planPeriodSeconds'"),
    "interval": (
        {"metrics": {"serviceMonitor": {"interval": "soon"}}},
        "at '/metrics/serviceMonitor/interval': 'soon' does not match",
    ),
    "rate-window": (
        {"operator": {"prometheusRateWindow": "0m"}},
        "at '/operator/prometheusRateWindow': '0m' does not match",
    ),
    "prometheus-url": (
        {"operator": {"prometheusUrl": "prometheus:9090"}},
        "at '/operator/prometheusUrl': 'prometheus:9090' does not match",
    ),
}


@pytest.mark.parametrize("case", INVALID)
def test_schema_rejects_wrong_values_naming_the_field(helm: Helm, case: str) -> None:
    values, message = INVALID[case]
    with pytest.raises(HelmError) as error:
        helm.template(values)
    assert "values don't meet the specifications of the schema" in str(error.value)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ({"metrics": {"serviceMonitor": {"enabled": True}}}, "ServiceMonitor"),
        ({"metrics": {"vllmPodMonitor": {"enabled": True}}}, "PodMonitor"),
    ],
)
def test_monitors_need_the_prometheus_operator_api(
    helm: Helm, values: dict[str, Any], kind: str
) -> None:
    with pytest.raises(HelmError, match=f"serves no monitoring.coreos.com/v1 {kind}"):
        helm.template(values)


def test_dashboard_shows_the_operators_metrics(helm: Helm) -> None:
    from gridplace_operator.report.metrics import OperatorMetrics  # noqa: PLC0415

    config_map = one(helm.template(), "ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["gridplace.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "gridplace.json").read_text())
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in dashboard["panels"]}
    operator_metrics = {m.name for m in OperatorMetrics().registry.collect()}
    wanted = {
        "Replicas by region": "gridplace_replicas",
        "Predicted emissions": "gridplace_predicted_carbon_grams_per_hour",
        "Predicted cost": "gridplace_predicted_cost_usd_per_hour",
        "Signal age": "gridplace_signal_age_seconds",
        "Plan duration": "gridplace_plan_duration_seconds",
    }
    for title, metric in wanted.items():
        assert metric in operator_metrics, metric
        assert metric in exprs[title], title
    assert "vllm:time_to_first_token_seconds_bucket" in exprs["p95 time to first token vs SLO"]


def test_values_table_in_the_install_guide_is_current() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "values_table.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def test_gitops_examples_install_the_chart_with_valid_values(helm: Helm) -> None:
    argocd = list(yaml.safe_load_all((ROOT / "gitops" / "argocd" / "application.yaml").read_text()))
    flux = list(yaml.safe_load_all((ROOT / "gitops" / "flux" / "helmrelease.yaml").read_text()))
    chart_app = next(a for a in argocd if a["spec"]["source"].get("path") == "charts/gridplace")
    release = next(d for d in flux if d["kind"] == "HelmRelease")
    assert release["spec"]["chart"]["spec"]["chart"] == "charts/gridplace"
    assert "ServerSideApply=true" in chart_app["spec"]["syncPolicy"]["syncOptions"]
    for values in (chart_app["spec"]["source"]["helm"]["valuesObject"], release["spec"]["values"]):
        signals = one(helm.template(values), "Role", "-signals")
        assert ("", "secrets", "get", ("electricity-maps",)) in rules(signals)


def test_fleet_mode_points_the_operator_at_the_karmada_kubeconfig_secret(helm: Helm) -> None:
    docs = helm.template({"fleet": {"kubeconfigSecret": "karmada"}, "crds": {"enabled": False}})
    container = operator_container(docs)
    assert "--kubeconfig=/etc/gridplace/fleet/kubeconfig" in container["args"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "fleet-kubeconfig")
    assert volume["secret"]["secretName"] == "karmada"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "fleet-kubeconfig")
    assert mount["mountPath"] == "/etc/gridplace/fleet" and mount["readOnly"]
    # The role lets it read the members and write the policies that propagate its children.
    granted = {(g, r, v) for role in objects(docs, "ClusterRole") for g, r, v, _ in rules(role)}
    assert ("cluster.karmada.io", "clusters/proxy", "get") in granted
    assert ("policy.karmada.io", "propagationpolicies", "patch") in granted
    # Without it, the operator runs against its own cluster as before.
    plain = operator_container(helm.template())
    assert not any(a.startswith("--kubeconfig") for a in plain["args"])


def test_fleet_mode_refuses_to_install_the_crds_into_the_wrong_cluster(helm: Helm) -> None:
    with pytest.raises(HelmError, match=r"crds\.enabled=false"):
        helm.template({"fleet": {"kubeconfigSecret": "karmada"}})
