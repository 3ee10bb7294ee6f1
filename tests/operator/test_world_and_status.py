"""What wakes the planner, and the status an InferenceDeployment shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gridplace_operator.api.conditions import Reason
from gridplace_operator.api.inference_deployment import AutoscalerStatus
from gridplace_operator.api.parsed import Rejection
from gridplace_operator.observe.world import Change, World
from gridplace_operator.report.status import (
    IdepFacts,
    ModelPlan,
    RegionFacts,
    comparable,
    idep_status,
    region_status,
)
from gridplace_placement.plan import ModelOutcome, PoolPlan, Route, ZoneOutcome

NOW = datetime(2026, 1, 1, tzinfo=UTC)
H100 = "NVIDIA-H100-80GB-HBM3"


def obj(name: str, generation: int = 1, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "generation": generation}, **extra}


def node(ready: str = "True", gpus: str = "8", heartbeat: str = "t0") -> dict[str, Any]:
    return {
        "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/region": "r"}},
        "status": {
            "allocatable": {"nvidia.com/gpu": gpus},
            "conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": heartbeat}],
        },
    }


def test_only_spec_changes_replan_inference_deployments() -> None:
    world = World()
    assert world.observe_idep(obj("a"), deleted=False) is Change.REPLAN
    status_write = obj("a", status={"replicas": 3})
    assert world.observe_idep(status_write, deleted=False) is Change.NONE
    assert world.observe_idep(obj("a", generation=2), deleted=False) is Change.REPLAN
    assert world.observe_idep(obj("a"), deleted=True) is Change.REPLAN
    assert world.observe_idep(obj("a"), deleted=True) is Change.NONE


def test_node_heartbeats_do_not_replan_but_capacity_changes_do() -> None:
    world = World()
    assert world.observe_node(node(), deleted=False) is Change.REPLAN
    assert world.observe_node(node(heartbeat="t1"), deleted=False) is Change.NONE
    assert world.observe_node(node(ready="False"), deleted=False) is Change.REPLAN
    assert world.observe_node(node(ready="False", gpus="4"), deleted=False) is Change.REPLAN


def test_children_readiness_refreshes_without_replanning() -> None:
    world = World()
    dep = {"kind": "Deployment", **obj("a-r"), "spec": {"replicas": 2}, "status": {}}
    assert world.observe_child(dep, deleted=False) is Change.REFRESH
    assert world.observe_child(dep, deleted=False) is Change.NONE
    ready = {**dep, "status": {"readyReplicas": 2}}
    assert world.observe_child(ready, deleted=False) is Change.REFRESH
    assert world.observe_child(ready, deleted=True) is Change.REFRESH


def plan(unserved: float = 0.0, slo_met: bool = True, floor_unmet: str | None = None) -> ModelPlan:
    return ModelPlan(
        outcome=ModelOutcome(
            floor_unmet=floor_unmet,
            name="ns/a",
            replicas=2,
            regions=["r"],
            carbon_g_per_hour=100.0,
            usd_per_hour=1.0,
            unserved_rps=unserved,
            stopped_replicas=0,
            reasons=["GPU capacity full in r"],
        ),
        pools=[
            PoolPlan(
                model="ns/a",
                region="r",
                gpu_type=H100,
                replicas=2,
                current_replicas=0,
                load_rps=4.0,
                capacity_rps=8.0,
                p95_wait_seconds=0.1,
            )
        ],
        routes=[Route(model="ns/a", zone="z", region="r", gpu_type=H100, rate_rps=4.0, share=1.0)],
        zones=[
            ZoneOutcome(
                model="ns/a",
                zone="z",
                demand_rps=4.0 + unserved,
                unserved_rps=unserved,
                predicted_p95_ttft_seconds=0.4,
                slo_met=slo_met,
            )
        ],
        made_at=NOW,
    )


def facts(**kw: Any) -> IdepFacts:
    base: dict[str, Any] = {
        "name": "a",
        "generation": 3,
        "advise": False,
        "pinned": False,
        "plan": plan(),
        "ready": {("r", H100): 2},
        "rtt_ms": {"z": {"r": 12.0}},
    }
    base.update(kw)
    return IdepFacts(**base)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_a_placed_and_ready_model() -> None:
    status = idep_status(facts(), {}, NOW).to_api()
    assert conditions(status)["Ready"] == ("True", Reason.AVAILABLE)
    assert conditions(status)["Placed"] == ("True", Reason.PLANNED)
    assert status["placementSummary"] == "r=2"
    assert status["traffic"] == [
        {"zone": "z", "region": "r", "requestsPerSecond": 4.0, "rttMs": 12.0}
    ]
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])


def test_a_model_without_a_plan_predicts_nothing_rather_than_an_empty_prediction() -> None:
    assert "predicted" in idep_status(facts(), {}, NOW).to_api()
    assert "predicted" not in idep_status(facts(plan=None, ready={}), {}, NOW).to_api()


def test_shortage_and_starting_replicas_are_reported() -> None:
    status = idep_status(facts(plan=plan(unserved=2.5), ready={}), {}, NOW).to_api()
    assert conditions(status)["Placed"] == ("False", Reason.INSUFFICIENT_CAPACITY)
    # Ready rolls Placed up: a plan that leaves demand unserved is not Ready, whatever runs.
    assert conditions(status)["Ready"] == ("False", Reason.INSUFFICIENT_CAPACITY)
    assert status["unmetRequestsPerSecond"] == 2.5
    all_ready = idep_status(facts(plan=plan(unserved=2.5)), {}, NOW).to_api()
    assert conditions(all_ready)["Ready"] == ("False", Reason.INSUFFICIENT_CAPACITY)
    ready_msg = next(c for c in all_ready["conditions"] if c["type"] == "Ready")["message"]
    assert "cannot be served" in ready_msg and "replicas ready" in ready_msg


def test_a_failed_solve_keeps_the_plan_but_is_not_ready() -> None:
    failed = facts(rejection=(Reason.SOLVER_FAILED, "the solver failed: out of memory"))
    status = idep_status(failed, {}, NOW).to_api()
    assert conditions(status)["Placed"] == ("False", Reason.SOLVER_FAILED)
    assert conditions(status)["Ready"] == ("False", Reason.SOLVER_FAILED)
    assert status["placement"]  # the running plan is still shown


def test_invalid_spec_and_advise_mode() -> None:
    invalid = facts(plan=None, rejection=(Reason.INVALID_SPEC, "spec.model.name: unknown"))
    assert conditions(idep_status(invalid, {}, NOW).to_api())["Ready"] == (
        "False",
        Reason.INVALID_SPEC,
    )
    advised = idep_status(facts(advise=True, ready={}), {}, NOW).to_api()
    assert conditions(advised)["Ready"] == ("True", Reason.ADVISED)
    assert advised["readyReplicas"] == 0


def test_transition_time_moves_only_when_status_flips() -> None:
    first = idep_status(facts(), {}, NOW).to_api()
    later = NOW + timedelta(minutes=5)
    same = idep_status(facts(), first, later).to_api()
    assert same["conditions"] == first["conditions"]
    assert comparable(same) == comparable(first)
    flipped = idep_status(facts(ready={}), first, later).to_api()
    ready = next(c for c in flipped["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == later.isoformat().replace("+00:00", "Z")
    assert comparable(flipped) != comparable(first)


def scaled_by_autoscaler(p95: float, rps: float, desired: int = 2) -> IdepFacts:
    band = f"p95 {p95:.3g}s vs target 0.5s within 10%; capacity model {desired}"
    return facts(
        autoscaler=AutoscalerStatus(
            desired_replicas=desired,
            observed_p95_seconds=p95,
            observed_requests_per_second=rps,
            reason=Reason.ON_TARGET.value,
            last_scale_time=NOW - timedelta(seconds=90.123456),
        ),
        scaling=(Reason.ON_TARGET, f"{desired} replicas: {band}"),
    )


def scaled_message(status: dict[str, Any]) -> str:
    return str(next(c["message"] for c in status["conditions"] if c["type"] == "Scaled"))


def test_observations_that_barely_move_leave_the_status_as_it_is() -> None:
    shown = idep_status(scaled_by_autoscaler(0.40, 10.0), {}, NOW).to_api()
    later = NOW + timedelta(seconds=15)
    drifted = idep_status(scaled_by_autoscaler(0.42, 10.6), shown, later).to_api()
    assert comparable(drifted) == comparable(shown)
    assert drifted["autoscaler"]["observedP95Seconds"] == 0.40
    assert scaled_message(drifted) == scaled_message(shown)


def test_a_new_decision_or_a_real_move_is_written() -> None:
    shown = idep_status(scaled_by_autoscaler(0.40, 10.0), {}, NOW).to_api()
    later = NOW + timedelta(seconds=15)
    slower = idep_status(scaled_by_autoscaler(0.46, 10.0), shown, later).to_api()
    assert slower["autoscaler"]["observedP95Seconds"] == 0.46
    assert "p95 0.46s" in scaled_message(slower)
    busier = idep_status(scaled_by_autoscaler(0.40, 12.0), shown, later).to_api()
    assert busier["autoscaler"]["observedRequestsPerSecond"] == 12.0
    grown = idep_status(scaled_by_autoscaler(0.41, 10.0, desired=3), shown, later).to_api()
    assert grown["autoscaler"]["desiredReplicas"] == 3
    assert grown["autoscaler"]["observedP95Seconds"] == 0.41


def test_a_region_whose_nodes_count_for_another_says_which() -> None:
    def ready_of(facts: RegionFacts) -> tuple[str, str, str]:
        cond = region_status(facts, {}, NOW).to_api()["conditions"][0]
        return cond["status"], cond["reason"], cond["message"]

    emptied = RegionFacts(1, [], None, None, ceded={"a-everything": 3})
    status, reason, message = ready_of(emptied)
    assert (status, reason) == ("False", Reason.OVERLAPPING_SELECTOR)
    assert "3 to a-everything" in message
    partly = RegionFacts(1, [("H100", 1, 8, 8)], None, None, ceded={"a-everything": 1})
    status, reason, message = ready_of(partly)
    assert (status, reason) == ("True", Reason.GPUS_FOUND)
    assert "make the selectors disjoint" in message
    assert ready_of(RegionFacts(1, [], None, None))[1] == Reason.NO_GPUS


def test_advice_that_falls_short_is_still_advice_but_no_advice_is_not_ready() -> None:
    short = idep_status(facts(advise=True, plan=plan(unserved=2.5)), {}, NOW).to_api()
    assert conditions(short)["Ready"] == ("True", Reason.ADVISED)
    assert conditions(short)["Placed"] == ("False", Reason.INSUFFICIENT_CAPACITY)
    failed = facts(advise=True, rejection=(Reason.SOLVER_FAILED, "the solver failed"))
    assert conditions(idep_status(failed, {}, NOW).to_api())["Ready"] == (
        "False",
        Reason.SOLVER_FAILED,
    )


def test_an_availability_floor_the_regions_cannot_meet_is_not_placed() -> None:
    why = "minRegions=64 needs 64 regions with 1 replica each; 6 can hold one"
    status = idep_status(facts(plan=plan(floor_unmet=why)), {}, NOW).to_api()
    assert conditions(status)["Placed"] == ("False", Reason.AVAILABILITY_UNMET)
    assert conditions(status)["Ready"] == ("False", Reason.AVAILABILITY_UNMET)
    placed = next(c for c in status["conditions"] if c["type"] == "Placed")
    assert placed["message"] == why


def _health_of(facts: RegionFacts) -> tuple[str, str, str]:
    cond = region_status(facts, {}, NOW).to_api()["conditions"][1]
    assert cond["type"] == "SignalsHealthy"
    return cond["status"], cond["reason"], cond["message"]


def _price() -> Any:
    from gridplace_operator.api.region import SignalStatus  # noqa: PLC0415

    return SignalStatus.model_validate(
        {
            "value": 50.0,
            "unit": "USD/MWh",
            "source": "Static",
            "observedAt": NOW,
            "ageSeconds": 0,
            "stale": False,
        }
    )


def test_a_signal_that_never_had_a_value_is_named_with_its_sources_error() -> None:
    error = (
        "Electricity Maps carbon-intensity/latest for zone DE: HTTP 503 from"
        " https://api.electricitymap.org/v3/carbon-intensity/latest (after 3 attempts)"
    )
    facts = RegionFacts(1, [], None, _price(), unresolved={"carbonIntensity": error})
    assert _health_of(facts) == (
        "False",
        Reason.STALE,
        f"carbon intensity has no value and no fallback: {error}",
    )
    both = RegionFacts(
        1, [], None, None, unresolved={"powerPrice": "no answer from the source yet"}
    )
    assert _health_of(both)[2] == (
        "carbon intensity has no value and no fallback; power price has no value and no"
        " fallback: no answer from the source yet"
    )


def test_the_planner_puts_a_valueless_signals_error_in_the_region_status() -> None:
    import asyncio  # noqa: PLC0415

    from planner_kit import RecordingKube, region  # noqa: PLC0415

    from gridplace_operator.planning.planner import Planner  # noqa: PLC0415
    from gridplace_operator.planning.seams import ClusterGpus  # noqa: PLC0415
    from gridplace_operator.report.metrics import OperatorMetrics  # noqa: PLC0415

    world, kube = World(), RecordingKube()
    feed = {"file": {"url": "http://feed.example/ci.csv", "valueColumn": "gco2"}}
    world.observe_region(region("r1", feed), deleted=False)
    # No provider for file sources.
    planner = Planner(world, kube, OperatorMetrics(), gpus=ClusterGpus(kube, world))

    async def scenario() -> list[str]:
        arrived = asyncio.Event()
        planner.wake = arrived.set
        await planner.cycle(True)
        first = kube.condition("Region", None, "r1", "SignalsHealthy")["message"]
        await asyncio.wait_for(arrived.wait(), 10)  # the first read has failed
        await planner.cycle(True)
        return [first, kube.condition("Region", None, "r1", "SignalsHealthy")["message"]]

    pending, failed = asyncio.run(scenario())
    assert pending == "carbon intensity has no value and no fallback: no answer from the source yet"
    assert failed == (
        "carbon intensity has no value and no fallback: no provider for file sources is"
        " configured in this operator"
    )


def _invalid_spec_message(model: dict[str, Any]) -> str:
    from gridplace_operator.api.inference_deployment import (  # noqa: PLC0415
        InferenceDeploymentSpec,
    )
    from gridplace_operator.api.parsed import IdepRef, Rejection  # noqa: PLC0415
    from gridplace_operator.planning.problem import placement_model  # noqa: PLC0415

    spec = InferenceDeploymentSpec.model_validate(
        {
            "model": model,
            "slo": {"p95TimeToFirstTokenSeconds": 1.0},
            "demand": {"static": [{"zone": "us-east", "requestsPerSecond": 5}]},
        }
    )
    rejected = placement_model(IdepRef("ns", "m"), spec, {"us-east": 5.0})
    assert isinstance(rejected, Rejection), rejected
    assert rejected.reason == Reason.INVALID_SPEC
    return rejected.message


def test_a_model_the_catalogue_cannot_size_is_told_to_set_its_measured_performance() -> None:
    fix = (
        "set spec.model.performance.gpus, a replica's measured performance per GPU type"
        " (docs/api.md; the catalogue's models and GPU types are listed in docs/placement.md)"
    )
    assert _invalid_spec_message({"name": "acme/chat-13b", "gpuTypes": [H100]}) == (
        f"spec.model.name: 'acme/chat-13b' is not in the shipped profile catalogue: {fix}"
    )
    named = {"name": "acme/ft", "gpuTypes": [H100], "performance": {"profile": "acme/base"}}
    assert _invalid_spec_message(named).startswith(
        "spec.model.performance.profile: 'acme/base' is not in the shipped profile catalogue:"
    )
    chameleon = {"name": "facebook/chameleon-7b", "gpuTypes": [H100, "NVIDIA-L40S"]}
    assert _invalid_spec_message(chameleon) == (
        "spec.model.gpuTypes: the shipped profile catalogue has 'facebook/chameleon-7b' on"
        f" NVIDIA-A100-SXM4-40GB, NVIDIA-L40S, not on {H100}: {fix}"
    )
    seventy = {"name": "meta-llama/Meta-Llama-3.1-70B-Instruct", "gpuTypes": [H100]}
    assert _invalid_spec_message(seventy).startswith(
        "spec.model: the shipped profile catalogue has 'meta-llama/Meta-Llama-3.1-70B-Instruct'"
        f" with other GPUs per replica than 1 ({H100}: 4): set spec.model.tensorParallelSize or"
        " gpusPerReplica to one of them, or spec.model.performance.gpus"
    )


def test_the_autoscaler_status_reason_is_described_by_the_reasons_scaled_uses() -> None:
    from gridplace_operator.api.conditions import (  # noqa: PLC0415
        INFERENCE_DEPLOYMENT_CONDITIONS,
        ConditionType,
    )

    description = AutoscalerStatus.model_fields["reason"].description or ""
    scaled = {
        r.value for t, _, r, _ in INFERENCE_DEPLOYMENT_CONDITIONS if t == ConditionType.SCALED
    }
    named = set(description.rstrip(".").split(": ", 1)[1].replace(" or ", ", ").split(", "))
    assert named == scaled


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_resync_forgets_only_what_the_listing_lacks_and_no_event_mentioned_since() -> None:
    clock = Clock()
    world = World(clock=clock)
    world.observe_idep(obj("deleted-unseen"), deleted=False)
    world.observe_idep(obj("still-there"), deleted=False)
    world.observe_child({"kind": "Deployment", **obj("child")}, deleted=False)
    clock.now = 10.0  # the listing begins; "new" is created while it runs
    listed = World()
    listed.observe_idep(obj("still-there"), deleted=False)
    clock.now = 11.0
    world.observe_idep(obj("new"), deleted=False)
    assert world.resync(listed, listed_at=10.0) is Change.REPLAN
    assert set(world.ideps) == {("ns", "still-there"), ("ns", "new")}
    assert world.children == {}
    # Nothing more is missing: a second resync changes nothing.
    listed.observe_idep(obj("new"), deleted=False)
    assert world.resync(listed, listed_at=12.0) is Change.NONE


def test_a_child_lost_without_an_event_refreshes_without_a_replan() -> None:
    world = World()
    world.observe_child({"kind": "Service", **obj("svc")}, deleted=False)
    assert world.resync(World(), listed_at=world.clock() + 1) is Change.REFRESH
    # Its fingerprint went with it: seen again, it counts as a change.
    assert world.observe_child({"kind": "Service", **obj("svc")}, deleted=False) is Change.REFRESH


def test_a_spec_is_parsed_once_per_generation() -> None:
    world = World()
    bad = obj("a", spec={"model": {"name": "m"}})  # no slo, no gpuTypes: the schema's job
    world.observe_idep(bad, deleted=False)
    rejected = world.specs[("ns", "a")]
    assert isinstance(rejected, Rejection) and rejected.reason == Reason.INVALID_SPEC
    world.observe_idep({**bad, "status": {"replicas": 0}}, deleted=False)  # a status write
    assert world.specs[("ns", "a")] is rejected  # kept, not parsed again
    world.observe_idep(obj("a", generation=2, spec={}), deleted=False)
    assert world.specs[("ns", "a")] is not rejected
    world.observe_idep(obj("a"), deleted=True)
    assert world.specs == {}
