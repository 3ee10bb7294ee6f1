"""The chart on the real local control plane: install, the operator running with nothing but the
ServiceAccount's credentials, RBAC that is sufficient and not excessive, Argo CD health of live
objects, server-side apply without drift, upgrade and uninstall.

The tests of this module run in order against one release (install -> operate -> upgrade ->
uninstall); the module leaves the CRDs installed, as the other cluster tests expect them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from argocd_health import health
from helmchart import CHART, RELEASE, ROOT, Helm

from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_e2e.cluster.local import poll
from gridplace_e2e.operator_run import OperatorProcess, condition, get_json, wait_for

pytestmark = pytest.mark.cluster

SERVICE_ACCOUNT = f"{RELEASE}-gridplace"
EXAMPLES = ROOT / "examples"
CRD_NAMES = sorted(p.stem for p in (ROOT / "crds").glob("*.yaml"))
SIGNAL_SECRET = "electricity-maps"
INSTALL_VALUES = {"signals": {"secrets": {"access": "named", "names": [SIGNAL_SECRET]}}}
REGIONS = [
    d["metadata"]["name"] for d in yaml.safe_load_all((EXAMPLES / "regions.yaml").read_text()) if d
]
MODELS = [
    d["metadata"]["name"]
    for d in yaml.safe_load_all((EXAMPLES / "inferencedeployments.yaml").read_text())
    if d
]


@pytest.fixture(scope="module")
def helm(cluster: ClusterHandle) -> Helm:
    return Helm(cluster.bin_dir / "helm", cluster.kubeconfig)


@pytest.fixture(scope="module")
def release(cluster: ClusterHandle, helm: Helm) -> Iterator[str]:
    """The chart installed with --wait into a fresh namespace; yields that namespace."""
    namespace = f"gridplace-{uuid.uuid4().hex[:8]}"
    adopt_crds(cluster, namespace)
    helm.run(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        namespace,
        "--create-namespace",
        "--wait",
        "--timeout=120s",
        values=INSTALL_VALUES,
    )
    yield namespace
    helm.run("uninstall", RELEASE, "-n", namespace, "--ignore-not-found", "--wait")
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    restore_crds(cluster)


@pytest.fixture(scope="module")
def serving(cluster: ClusterHandle, release: str) -> Iterator[str]:
    """A namespace for the examples' InferenceDeployments; removed with its pods at the end."""
    name = f"serving-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    # The Regions are already gone when the last test removed the CRDs.
    cluster.kubectl("delete", "-f", str(EXAMPLES / "regions.yaml"), "--wait=false", check=False)
    cluster.kubectl("delete", "namespace", name, "--wait=false")
    assert poll(lambda: not cluster.kubectl("get", "pods", "-n", name, "-o", "name").stdout, 120)


@pytest.fixture(scope="module")
def sa_kubeconfig(
    cluster: ClusterHandle, release: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a TokenRequest token), and
    nothing else: what the operator pod would mount."""
    token = cluster.kubectl(
        "create", "token", SERVICE_ACCOUNT, "-n", release, "--duration=2h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = admin["contexts"][0]["context"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [c for c in admin["clusters"] if c["name"] == context["cluster"]],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [
            {"name": "sa", "context": {"cluster": context["cluster"], "user": SERVICE_ACCOUNT}}
        ],
        "current-context": "sa",
    }
    path = tmp_path_factory.mktemp("sa") / "kubeconfig.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def operator(
    release: str, sa_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator with the chart pod's credentials and environment. Signal APIs point at a
    closed loopback port: no test may reach the internet."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRIDPLACE_NAMESPACE", release)
        env.setenv("POD_NAMESPACE", release)  # the Lease lives there, as the chart says
        env.setenv("GRIDPLACE_WATTTIME_URL", "http://127.0.0.1:9")
        env.setenv("GRIDPLACE_ELECTRICITY_MAPS_URL", "http://127.0.0.1:9")
        log = tmp_path_factory.mktemp("operator") / "operator.log"
        process = OperatorProcess(sa_kubeconfig, log)
        try:
            process.start(timeout=120)  # the machine may be busy; the log tail says why it failed
        except RuntimeError as err:
            pytest.fail(str(err), pytrace=False)
        yield process
        process.stop()


def adopt_crds(cluster: ClusterHandle, namespace: str) -> None:
    """CRDs applied before the chart (by hand, or by other tests) are handed to the release, the
    way Helm documents adopting existing objects."""
    for name in CRD_NAMES:
        if cluster.kubectl("get", "crd", name, check=False).returncode != 0:
            continue
        cluster.kubectl("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
        cluster.kubectl(
            "annotate",
            "--overwrite",
            "crd",
            name,
            f"meta.helm.sh/release-name={RELEASE}",
            f"meta.helm.sh/release-namespace={namespace}",
        )


def restore_crds(cluster: ClusterHandle) -> None:
    assert poll(lambda: not crd_deleting(cluster), 120), "CRDs still terminating"
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", *CRD_NAMES, "--timeout=60s")


def crd_deleting(cluster: ClusterHandle) -> bool:
    for name in CRD_NAMES:
        found = cluster.kubectl("get", "crd", name, "-o", "json", check=False)
        if found.returncode == 0 and json.loads(found.stdout)["metadata"].get("deletionTimestamp"):
            return True
    return False


def can_i(cluster: ClusterHandle, release: str, verb: str, resource: str, *scope: str) -> bool:
    user = f"system:serviceaccount:{release}:{SERVICE_ACCOUNT}"
    answer = cluster.kubectl("auth", "can-i", verb, resource, *scope, f"--as={user}", check=False)
    return answer.stdout.strip() == "yes"


def ready_for_generation(obj: dict[str, Any]) -> bool:
    ready = condition(obj, "Ready")
    return bool(ready) and ready.get("observedGeneration") == obj["metadata"]["generation"]


def apply_examples(cluster: ClusterHandle, namespace: str) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(EXAMPLES / "regions.yaml"))
    cluster.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", str(EXAMPLES / "inferencedeployments.yaml")
    )


def resource_versions(cluster: ClusterHandle, namespace: str) -> dict[str, str]:
    regions = get_json(cluster, "regions", *REGIONS)["items"]
    models = get_json(cluster, "inferencedeployments", "-n", namespace, *MODELS)["items"]
    return {
        f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in regions + models
    }


def children(cluster: ClusterHandle, namespace: str) -> list[dict[str, Any]]:
    found = get_json(
        cluster,
        "deployments,services",
        "-n",
        namespace,
        "-l",
        "app.kubernetes.io/managed-by=gridplace",
    )
    return list(found["items"])


# 1. install -----------------------------------------------------------------------------------
def test_install_runs_the_operator_pod_and_owns_the_crds(
    cluster: ClusterHandle, release: str
) -> None:
    deployment = get_json(cluster, "deployment", SERVICE_ACCOUNT, "-n", release)
    assert deployment["status"]["readyReplicas"] == 1  # on kwok the pod is simulated, not run
    for name in CRD_NAMES:
        crd = get_json(cluster, "crd", name)
        assert crd["metadata"]["annotations"]["meta.helm.sh/release-namespace"] == release
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


# 2. the RBAC is sufficient ---------------------------------------------------------------------
def test_operator_with_the_service_accounts_credentials_reconciles_the_examples(
    cluster: ClusterHandle, release: str, serving: str, operator: OperatorProcess
) -> None:
    apply_examples(cluster, serving)

    def all_reconciled() -> bool:
        models = get_json(cluster, "inferencedeployments", "-n", serving)["items"]
        regions = get_json(cluster, "regions", *REGIONS)["items"]
        return len(models) == len(MODELS) and all(map(ready_for_generation, models + regions))

    wait_for(
        all_reconciled, 120, "status on every example InferenceDeployment and Region", operator
    )
    chat = get_json(cluster, "inferencedeployment", "llama-8b-chat", "-n", serving)
    wait_for(
        lambda: (
            condition(
                get_json(cluster, "inferencedeployment", "llama-8b-chat", "-n", serving), "Ready"
            ).get("status")
            == "True"
        ),
        120,
        "llama-8b-chat Ready",
        operator,
    )
    owned = children(cluster, serving)
    assert {c["kind"] for c in owned} == {"Deployment", "Service"}
    owners = {c["metadata"]["ownerReferences"][0]["name"] for c in owned}
    # Argo CD's default tracking label would let an Application named like a model prune them.
    assert not [c for c in owned if "app.kubernetes.io/instance" in c["metadata"]["labels"]]
    assert "llama-8b-chat" in owners
    assert "mixtral-batch-advice" not in owners  # Advise mode runs nothing
    events = get_json(
        cluster,
        "events",
        "-n",
        serving,
        "--field-selector",
        "reportingComponent=gridplace.dev/operator",
    )
    assert events["items"], "no Event was recorded"
    log = operator.tail(200_000)
    assert "Forbidden" not in log and "(403)" not in log, log[-3000:]
    assert chat["metadata"]["generation"] == 1  # status only: the spec was never written
    # nor labels or annotations, which GitOps tools track and compare
    examples = yaml.safe_load_all((EXAMPLES / "inferencedeployments.yaml").read_text())
    applied = next(d for d in examples if d and d["metadata"]["name"] == "llama-8b-chat")
    assert chat["metadata"].get("labels", {}) == applied["metadata"].get("labels", {})
    assert not chat["metadata"].get("annotations")


def test_signal_sources_read_what_the_chart_grants_and_nothing_else(
    cluster: ClusterHandle, release: str, operator: OperatorProcess
) -> None:
    """A price file in a ConfigMap of the release namespace is read; a Secret the values did not
    name is refused by the API server, and the Region says so and falls back."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    csv = f"datetime_utc,usd_per_mwh\n{hour.isoformat().replace('+00:00', 'Z')},77.5\n"
    cluster.kubectl(
        "create", "configmap", "prices", "-n", release, f"--from-literal=prices.csv={csv}"
    )
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "watttime",
        "-n",
        release,
        "--from-literal=username=u",
        "--from-literal=password=p",
    )
    rtt = [{"zone": "us-east", "ms": 5}]
    granted = {
        "pue": 1.2,
        "carbonIntensity": {"static": {"gCO2PerKWh": 100}},
        "powerPrice": {
            "file": {
                "configMapRef": {"name": "prices", "key": "prices.csv"},
                "valueColumn": "usd_per_mwh",
            }
        },
        "rtt": rtt,
    }
    denied = {
        "pue": 1.2,
        "carbonIntensity": {
            "wattTime": {"region": "PJM_DC", "credentialsSecretRef": {"name": "watttime"}},
            "fallback": {"gCO2PerKWh": 300},
        },
        "powerPrice": {"static": {"usdPerMWh": 50}},
        "rtt": rtt,
    }
    regions = [
        {
            "apiVersion": "gridplace.dev/v1alpha1",
            "kind": "Region",
            "metadata": {"name": name},
            "spec": spec,
        }
        for name, spec in (("signals-granted", granted), ("signals-denied", denied))
    ]
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": regions})
    )
    try:

        def signal(region: str, kind: str) -> dict[str, Any]:
            status = get_json(cluster, "region", region).get("status") or {}
            return dict((status.get("signals") or {}).get(kind) or {})

        wait_for(
            lambda: signal("signals-granted", "powerPrice").get("source") == "File",
            60,
            "the price read from the ConfigMap",
            operator,
        )
        assert signal("signals-granted", "powerPrice")["value"] == 77.5
        wait_for(
            lambda: signal("signals-denied", "carbonIntensity").get("source") == "Fallback",
            60,
            "the fallback for the refused Secret",
            operator,
        )
        refused = signal("signals-denied", "carbonIntensity")
        assert refused["value"] == 300
        assert (
            f"Secret {release}/watttime: gridplace is not allowed to read it (RBAC, HTTP 403)"
            in refused["message"]
        )
    finally:
        cluster.kubectl("delete", "region", "signals-granted", "signals-denied")


def test_server_side_apply_of_the_examples_again_changes_nothing(
    cluster: ClusterHandle, serving: str, operator: OperatorProcess
) -> None:
    operator.wait_cycles(2)  # settled: a cycle with nothing new writes nothing
    before = resource_versions(cluster, serving)
    apply_examples(cluster, serving)
    apply_examples(cluster, serving)
    assert resource_versions(cluster, serving) == before


def test_argocd_health_of_the_live_objects(
    cluster: ClusterHandle, serving: str, operator: OperatorProcess
) -> None:
    chat = get_json(cluster, "inferencedeployment", "llama-8b-chat", "-n", serving)
    assert health(chat) == ("Healthy", f"Available: {condition(chat, 'Ready')['message']}")
    advice = get_json(cluster, "inferencedeployment", "mixtral-batch-advice", "-n", serving)
    assert health(advice)[0] == "Healthy", advice["status"]["conditions"]
    for region in get_json(cluster, "regions", *REGIONS)["items"]:
        assert health(region)[0] == (
            "Healthy" if condition(region, "Ready")["status"] == "True" else "Degraded"
        )

    # Nowhere to go: every Region is forbidden.
    examples = yaml.safe_load_all((EXAMPLES / "inferencedeployments.yaml").read_text())
    nowhere = next(d for d in examples if d and d["metadata"]["name"] == "llama-8b-chat")
    nowhere["metadata"] = {"name": "nowhere", "namespace": serving}
    nowhere["spec"]["placement"] = {"forbiddenRegions": REGIONS}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(nowhere))
    wait_for(
        lambda: ready_for_generation(
            get_json(cluster, "inferencedeployment", "nowhere", "-n", serving)
        ),
        60,
        "status of nowhere",
        operator,
    )
    stuck = get_json(cluster, "inferencedeployment", "nowhere", "-n", serving)
    # Ready rolls Placed up and carries its reason.
    assert condition(stuck, "Ready")["status"] == "False"
    assert condition(stuck, "Ready")["reason"] == condition(stuck, "Placed")["reason"]
    assert health(stuck)[0] == "Degraded"

    # A spec change the operator has not seen yet (it is stopped), and an object it never saw.
    operator.stop()
    try:
        cluster.kubectl(
            "patch",
            "inferencedeployment",
            "llama-8b-chat",
            "-n",
            serving,
            "--type=merge",
            "-p",
            '{"spec": {"scaling": {"maxReplicas": 39}}}',
        )
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({**nowhere, "metadata": {"name": "unseen", "namespace": serving}}),
        )
        changed = get_json(cluster, "inferencedeployment", "llama-8b-chat", "-n", serving)
        assert health(changed) == ("Progressing", "Waiting for gridplace to observe generation 2")
        unseen = get_json(cluster, "inferencedeployment", "unseen", "-n", serving)
        assert health(unseen) == ("Progressing", "Waiting for gridplace to reconcile")
    finally:
        operator.start()
    wait_for(
        lambda: (
            health(get_json(cluster, "inferencedeployment", "llama-8b-chat", "-n", serving))[0]
            == "Healthy"
        ),
        60,
        "llama-8b-chat healthy at generation 2",
        operator,
    )
    cluster.kubectl("delete", "inferencedeployment", "nowhere", "unseen", "-n", serving)


# 3. the RBAC is not excessive -------------------------------------------------------------------
def _forbidden(release: str, serving: str) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        ("get", f"secrets/{SIGNAL_SECRET}-other", ("-n", release)),
        ("list", "secrets", ("-n", release)),
        ("get", f"secrets/{SIGNAL_SECRET}", ("-n", serving)),
        ("list", "secrets", ("--all-namespaces",)),
        ("get", "configmaps", ("-n", serving)),
        ("create", "pods", ("-n", serving)),
        ("delete", "pods", ("-n", serving)),
        ("create", "pods", ("-n", serving, "--subresource=exec")),
        ("get", "pods", ("-n", serving)),
        ("patch", "nodes", ()),
        ("delete", "nodes", ()),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", ()),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io", ()),
        ("patch", "customresourcedefinitions.apiextensions.k8s.io", ()),
        ("patch", "inferencedeployments.gridplace.dev", ("-n", serving)),  # the user's spec
        ("update", "inferencedeployments.gridplace.dev", ("-n", serving)),
        ("delete", "inferencedeployments.gridplace.dev", ("-n", serving)),
        ("patch", "regions.gridplace.dev", ()),
        ("delete", "regions.gridplace.dev", ()),
        ("create", "horizontalpodautoscalers.autoscaling", ("-n", serving)),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", ()),
        ("create", "roles.rbac.authorization.k8s.io", ("-n", serving)),
        ("escalate", "clusterroles.rbac.authorization.k8s.io", ()),
        ("impersonate", "users", ()),
        ("create", "serviceaccounts", ("-n", release, "--subresource=token")),
        ("delete", "namespaces", ()),
        ("patch", "gateways.gateway.networking.k8s.io", ("-n", serving)),  # the platform's
        ("update", "deployments.apps", ("-n", serving)),
        ("update", "deployments.apps", ("-n", serving, "--subresource=scale")),
        ("update", "leases.coordination.k8s.io", ("-n", serving)),
        ("delete", "leases.coordination.k8s.io", ("-n", release)),
    ]


def _allowed(release: str, serving: str) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        ("get", f"secrets/{SIGNAL_SECRET}", ("-n", release)),
        ("get", "configmaps/nordpool-prices", ("-n", release)),
        ("list", "nodes", ()),
        ("list", "pods", ("--all-namespaces",)),
        ("watch", "regions.gridplace.dev", ()),
        ("patch", "regions.gridplace.dev", ("--subresource=status",)),
        ("watch", "inferencedeployments.gridplace.dev", ("--all-namespaces",)),
        ("patch", "inferencedeployments.gridplace.dev", ("-n", serving, "--subresource=status")),
        ("create", "deployments.apps", ("-n", serving)),
        ("delete", "services", ("-n", serving)),
        ("create", "poddisruptionbudgets.policy", ("-n", serving)),
        ("watch", "poddisruptionbudgets.policy", ("--all-namespaces",)),
        ("patch", "httproutes.gateway.networking.k8s.io", ("-n", serving)),
        ("watch", "httproutes.gateway.networking.k8s.io", ("--all-namespaces",)),
        ("watch", "gateways.gateway.networking.k8s.io", ("--all-namespaces",)),
        ("create", "events", ("-n", "default")),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", ()),
        ("update", "leases.coordination.k8s.io", ("-n", release)),
        ("create", "leases.coordination.k8s.io", ("-n", release)),
    ]


def test_rbac_denies_what_the_operator_does_not_need(
    cluster: ClusterHandle, release: str, serving: str
) -> None:
    granted = [
        (v, r, s) for v, r, s in _forbidden(release, serving) if can_i(cluster, release, v, r, *s)
    ]
    assert granted == []


def test_rbac_grants_what_the_operator_uses(
    cluster: ClusterHandle, release: str, serving: str
) -> None:
    denied = [
        (v, r, s) for v, r, s in _allowed(release, serving) if not can_i(cluster, release, v, r, *s)
    ]
    assert denied == []


# 4. upgrade and uninstall -----------------------------------------------------------------------
def test_upgrade_to_one_watched_namespace_narrows_the_rbac(
    cluster: ClusterHandle, helm: Helm, release: str, serving: str
) -> None:
    values = {**INSTALL_VALUES, "watchNamespaces": [serving]}
    helm.run(
        "upgrade", RELEASE, str(CHART), "-n", release, "--wait", "--timeout=120s", values=values
    )
    deployment = get_json(cluster, "deployment", SERVICE_ACCOUNT, "-n", release)
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--namespace={serving}" in args
    assert can_i(cluster, release, "create", "deployments.apps", "-n", serving)
    assert can_i(
        cluster,
        release,
        "patch",
        "inferencedeployments.gridplace.dev",
        "-n",
        serving,
        "--subresource=status",
    )
    assert not can_i(cluster, release, "create", "deployments.apps", "-n", "kube-system")
    assert not can_i(
        cluster, release, "list", "inferencedeployments.gridplace.dev", "--all-namespaces"
    )
    assert can_i(cluster, release, "create", "events", "-n", "default")  # Events about Regions
    assert can_i(cluster, release, "list", "nodes")
    for name in CRD_NAMES:  # upgraded in place, still kept
        assert (
            get_json(cluster, "crd", name)["metadata"]["annotations"]["helm.sh/resource-policy"]
            == "keep"
        )


def test_operator_restricted_to_its_namespace_reconciles_with_the_narrowed_rbac(
    cluster: ClusterHandle,
    serving: str,
    sa_kubeconfig: Path,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    operator.stop()  # one planner at a time
    scoped = OperatorProcess(
        sa_kubeconfig, tmp_path / "operator.log", extra_args=[f"--namespace={serving}"]
    )
    try:
        scoped.start(timeout=30)
        cluster.kubectl(
            "patch",
            "inferencedeployment",
            "llama-8b-chat",
            "-n",
            serving,
            "--type=merge",
            "-p",
            '{"spec": {"scaling": {"maxReplicas": 38}}}',
        )
        wait_for(
            lambda: ready_for_generation(
                get_json(cluster, "inferencedeployment", "llama-8b-chat", "-n", serving)
            ),
            60,
            "llama-8b-chat reconciled by the namespaced operator",
            scoped,
        )
    finally:
        scoped.stop()


def test_uninstall_keeps_crds_and_models_and_leaves_no_orphans(
    cluster: ClusterHandle, helm: Helm, release: str, serving: str, operator: OperatorProcess
) -> None:
    operator.stop()  # its credentials go with the ServiceAccount
    before = children(cluster, serving)
    assert before
    helm.run("uninstall", RELEASE, "-n", release, "--wait")
    for kind, name in [
        ("clusterrole", f"{SERVICE_ACCOUNT}-cluster"),
        ("clusterrole", f"{SERVICE_ACCOUNT}-workloads"),
        ("clusterrolebinding", f"{SERVICE_ACCOUNT}-cluster"),
        ("serviceaccount", SERVICE_ACCOUNT),
        ("deployment", SERVICE_ACCOUNT),
    ]:
        scope = () if kind.startswith("cluster") else ("-n", release)
        assert cluster.kubectl("get", kind, name, *scope, check=False).returncode != 0, (kind, name)
    for name in CRD_NAMES:
        assert get_json(cluster, "crd", name)["metadata"]["name"] == name
    models = {
        m["metadata"]["uid"]
        for m in get_json(cluster, "inferencedeployments", "-n", serving)["items"]
    }
    assert len(models) == len(MODELS)
    # Children stay with their InferenceDeployment (not with the release) and go with it.
    after = children(cluster, serving)
    assert {c["metadata"]["uid"] for c in after} == {c["metadata"]["uid"] for c in before}
    assert all(c["metadata"]["ownerReferences"][0]["uid"] in models for c in after)
    cluster.kubectl("delete", "inferencedeployments", "--all", "-n", serving)
    assert poll(lambda: not children(cluster, serving), 60), "children were not garbage-collected"


def test_uninstall_after_an_upgrade_to_keep_false_removes_the_crds(
    cluster: ClusterHandle, helm: Helm, release: str
) -> None:
    """Reinstalling adopts the kept CRDs as they are; an upgrade is what turns `keep` off
    (Helm's three-way merge removes the annotation the previous release revision set)."""
    chart = (RELEASE, str(CHART), "-n", release, "--wait", "--timeout=120s")
    helm.run("upgrade", "--install", *chart, values=INSTALL_VALUES)
    helm.run("upgrade", *chart, values={**INSTALL_VALUES, "crds": {"enabled": True, "keep": False}})
    for name in CRD_NAMES:
        annotations = get_json(cluster, "crd", name)["metadata"]["annotations"]
        assert "helm.sh/resource-policy" not in annotations
    helm.run("uninstall", RELEASE, "-n", release, "--wait")
    assert poll(
        lambda: all(
            cluster.kubectl("get", "crd", n, check=False).returncode != 0 for n in CRD_NAMES
        ),
        60,
    )
