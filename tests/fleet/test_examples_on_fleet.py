"""gridplace in fleet mode on the real local Karmada fleet: the examples applied to the Karmada
API server end as Deployments in the member clusters at the planned replicas, a steady state
writes nothing, and a lost member's replicas are re-placed on the others; once it is back, no
member holds an orphaned or duplicated Deployment.

The operator runs as users run it (`gridplace run`) with the Karmada API server's kubeconfig; every
check reads the member clusters' own API servers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gridplace_e2e.cluster.fleet import LocalFleet
from gridplace_e2e.cluster.local import poll
from gridplace_e2e.operator_run import OperatorProcess, condition

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "serving"
# The example Regions that the local fleet's members have nodes for, and their members.
MEMBER_OF = {"eu-central-1": "eu", "us-east-1": "us", "us-west-1": "us", "ap-northeast-1": "ap"}
NOT_A_MEMBER = ("ap-southeast-1", "mars")  # a Region naming a member Karmada does not know
MODELS = ("llama-8b-chat", "starcoder-completion")


def karmada_json(fleet: LocalFleet, *args: str) -> Any:
    return json.loads(fleet.kubectl("get", *args, "-o", "json").stdout)


def member_deployments(fleet: LocalFleet, member: str) -> dict[str, dict[str, Any]]:
    found = fleet.member_kubectl(member, "get", "deployments", "-n", NAMESPACE, "-o", "json",
                                 check=False)  # fmt: skip
    if found.returncode != 0:  # the namespace is not there (yet)
        return {}
    return {d["metadata"]["name"]: d for d in json.loads(found.stdout)["items"]}


Pool = tuple[str, str, str]  # (model, region, GPU type)


def planned(fleet: LocalFleet) -> dict[Pool, int]:
    """Replicas per pool as the InferenceDeployments' status plans them."""
    out: dict[Pool, int] = {}
    for model in MODELS:
        status = karmada_json(fleet, "idep", model, "-n", NAMESPACE).get("status") or {}
        for pool in status.get("placement") or []:
            if pool["desiredReplicas"]:
                out[(model, pool["region"], pool["gpuType"])] = pool["desiredReplicas"]
    return out


def in_members(fleet: LocalFleet) -> dict[Pool, tuple[str, int, int]]:
    """Pool -> (member, replicas, ready) of the Deployments the members run."""
    out: dict[Pool, tuple[str, int, int]] = {}
    for member in fleet.members:
        for dep in member_deployments(fleet, member).values():
            found = dep["metadata"].get("labels") or {}
            pool = (
                found["gridplace.dev/inference-deployment"],
                found["gridplace.dev/region"],
                found["gridplace.dev/gpu-type"],
            )
            assert pool not in out, f"{pool} runs in {out[pool][0]} and {member}"
            ready = int((dep.get("status") or {}).get("readyReplicas") or 0)
            out[pool] = (member, int(dep["spec"]["replicas"]), ready)
    return out


def matches_plan(fleet: LocalFleet, without: str | None = None) -> bool:
    """Every planned pool runs, Ready, in its region's member, and nothing else runs (in the
    members other than `without`)."""
    want = planned(fleet)
    have = {pool: v for pool, v in in_members(fleet).items() if v[0] != without}
    return (
        bool(want)
        and set(have) == set(want)
        and all(have[p] == (MEMBER_OF[p[1]], n, n) for p, n in want.items())
    )


def mirrors_karmada(fleet: LocalFleet) -> bool:
    """Every member runs exactly the Deployments Karmada holds for it, at their replicas: none
    left behind in a member that was lost (orphans), none in two members (duplicates). Whether
    their pods are ready again is the member's business (its node controller marks pods of
    unreachable nodes not ready, and a kwok member takes minutes to undo that)."""
    templates = {
        d["metadata"]["name"]: d
        for d in karmada_json(fleet, "deployments", "-n", NAMESPACE)["items"]
    }
    seen: dict[str, str] = {}
    for member in fleet.members:
        for name, dep in member_deployments(fleet, member).items():
            template = templates.get(name)
            region = (dep["metadata"].get("labels") or {}).get("gridplace.dev/region", "")
            if name in seen or template is None or MEMBER_OF.get(region) != member:
                return False
            if dep["spec"]["replicas"] != template["spec"]["replicas"]:
                return False
            seen[name] = member
    return set(seen) == set(templates)


def member_versions(fleet: LocalFleet) -> dict[str, dict[str, str]]:
    """resourceVersion of every Deployment in every member: a write anywhere changes one."""
    return {
        member: {n: d["metadata"]["resourceVersion"] for n, d in deps.items()}
        for member in fleet.members
        if (deps := member_deployments(fleet, member))
    }


def models_ready(fleet: LocalFleet) -> bool:
    return all(
        condition(karmada_json(fleet, "idep", m, "-n", NAMESPACE), "Ready").get("status") == "True"
        for m in MODELS
    )


def region_ready(fleet: LocalFleet, name: str) -> dict[str, Any]:
    return condition(karmada_json(fleet, "region", name), "Ready")


def wait(predicate: Any, timeout: float, what: str, operator: OperatorProcess) -> None:
    if not poll(predicate, timeout, interval=1):
        raise AssertionError(f"timed out after {timeout:.0f}s: {what}\n{operator.tail()}")


@pytest.fixture(scope="module")
def fleet_operator(
    fleet: LocalFleet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    fleet.kubectl("apply", "-f", str(ROOT / "crds"))
    fleet.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    regions = []
    for body in yaml.safe_load_all((ROOT / "examples" / "regions.yaml").read_text()):
        name = body["metadata"]["name"]
        if name in MEMBER_OF:
            body["spec"]["cluster"] = MEMBER_OF[name]
        elif name == NOT_A_MEMBER[0]:
            body["spec"]["cluster"] = NOT_A_MEMBER[1]
        else:
            continue
        regions.append(body)
    fleet.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(regions))
    fleet.kubectl("create", "namespace", NAMESPACE)
    process = OperatorProcess(fleet.kubeconfig, tmp_path_factory.mktemp("op") / "operator.log")
    try:
        process.start()
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    fleet.kubectl(
        "apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "inferencedeployments.yaml")
    )
    yield process
    process.stop()
    fleet.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_the_examples_run_in_the_member_clusters_at_the_planned_replicas(
    fleet: LocalFleet, fleet_operator: OperatorProcess
) -> None:
    # Each planned pool runs in its region's member with its replicas Ready, and nothing else.
    wait(lambda: matches_plan(fleet), 180, "planned replicas Ready in members", fleet_operator)
    have = in_members(fleet)
    # The pods run in the member (kwok reports them Running on its nodes).
    for member in {m for m, _, _ in have.values()}:
        pods = json.loads(
            fleet.member_kubectl(member, "get", "pods", "-n", NAMESPACE, "-o", "json").stdout
        )["items"]
        assert pods and all(p["status"].get("phase") == "Running" for p in pods), member
    # Karmada's aggregated status (seconds behind the members) is what gridplace reads as ready.
    wait(lambda: models_ready(fleet), 60, "the models Ready", fleet_operator)
    # The Region naming an unknown member says so, and is left out.
    unknown = region_ready(fleet, NOT_A_MEMBER[0])
    assert (unknown["status"], unknown["reason"]) == ("False", "MemberClusterNotFound")
    assert all(region != NOT_A_MEMBER[0] for _, region, _ in have)


def test_a_steady_fleet_writes_nothing_to_karmada_or_the_members(
    fleet: LocalFleet, fleet_operator: OperatorProcess
) -> None:
    wait(lambda: matches_plan(fleet), 180, "planned replicas Ready in members", fleet_operator)
    fleet_operator.wait_cycles(2)
    versions = member_versions(fleet)
    before = fleet_operator.writes()
    fleet_operator.wait_cycles(5)
    assert fleet_operator.writes() == before
    assert member_versions(fleet) == versions


def test_a_lost_member_is_replaced_on_the_others_and_returns_clean(
    fleet: LocalFleet, fleet_operator: OperatorProcess
) -> None:
    wait(lambda: matches_plan(fleet), 180, "planned replicas Ready in members", fleet_operator)
    running = in_members(fleet)
    lost = max(fleet.members, key=lambda m: sum(1 for v in running.values() if v[0] == m))
    lost_regions = [r for r, m in MEMBER_OF.items() if m == lost]
    stopped_at = time.monotonic()
    fleet.stop_member_api_server(lost)
    try:
        wait(
            lambda: all(
                region_ready(fleet, r).get("reason") == "MemberClusterNotReady"
                for r in lost_regions
            ),
            120,
            f"Karmada reports {lost} not ready and its Regions say so",
            fleet_operator,
        )
        noticed = time.monotonic() - stopped_at

        def replaced() -> bool:
            want = planned(fleet)
            return all(r not in lost_regions for _, r, _ in want) and matches_plan(fleet, lost)

        wait(replaced, 120, "replicas Ready again on the members left", fleet_operator)
        wait(lambda: models_ready(fleet), 60, "the models Ready", fleet_operator)
        print(f"member {lost} lost: noticed after {noticed:.0f}s,"
              f" replaced after {time.monotonic() - stopped_at:.0f}s")  # fmt: skip
    finally:
        fleet.start_member_api_server(lost)
    restarted_at = time.monotonic()
    # Back: Karmada removes what no longer runs there; nothing is duplicated or orphaned.
    wait(
        lambda: region_ready(fleet, lost_regions[0]).get("status") == "True",
        120,
        f"{lost} Ready again",
        fleet_operator,
    )
    back = time.monotonic() - restarted_at
    wait(lambda: mirrors_karmada(fleet), 120, "members hold exactly Karmada's", fleet_operator)
    print(f"member {lost} back: its regions Ready after {back:.0f}s, members clean after"
          f" {time.monotonic() - restarted_at:.0f}s")  # fmt: skip
