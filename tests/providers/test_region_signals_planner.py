"""The planner's side of the signals, without a cluster: the operator's providers against scripted
servers on 127.0.0.1, and Region status as the planner writes it. A Region that switches source
shows the new source's truth; a source that has not answered holds up no cycle, and its answer
wakes a re-plan."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from planner_kit import RecordingKube, gpu_node, inference_deployment, region
from scripted_server import Answer, ScriptedServer, text_answer
from signal_kit import Providers

from gridplace_e2e.cluster.local import poll
from gridplace_operator.api.parsed import IdepRef
from gridplace_operator.api.region import PowerPriceSource
from gridplace_operator.observe.world import World
from gridplace_operator.planning.planner import Planner
from gridplace_operator.planning.seams import ClusterGpus
from gridplace_operator.report.metrics import OperatorMetrics
from gridplace_operator.signals.sources import source_identity


def csv_now(value: float) -> str:
    """A series whose one row is in force now (and young enough to be fresh)."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return f"datetime_utc,gco2\n{hour:%Y-%m-%d %H:%M:%S},{value}\n"


STATIC = {"static": {"gCO2PerKWh": 100}}


def csv_source(url: str, fallback: float | None = None) -> dict[str, Any]:
    source: dict[str, Any] = {"file": {"url": url, "valueColumn": "gco2"}}
    if fallback is not None:
        source["fallback"] = {"gCO2PerKWh": fallback}
    return source


@dataclasses.dataclass
class Operator:
    """A planner as the operator runs it, with its wake-ups recorded."""

    world: World
    kube: RecordingKube
    planner: Planner
    arrived: asyncio.Event

    def carbon(self, name: str) -> dict[str, Any]:
        """The Region's carbon intensity as its status shows it ({} when it has no value)."""
        signals = self.kube.statuses[("Region", None, name)].get("signals") or {}
        found: dict[str, Any] = signals.get("carbonIntensity") or {}
        return found

    def healthy(self, name: str) -> tuple[str, str]:
        found = self.kube.condition("Region", None, name, "SignalsHealthy")
        return found["status"], found["reason"]

    def replans(self) -> float:
        value = self.planner.metrics.registry.get_sample_value(
            "gridplace_plans_total", {"outcome": "replan"}
        )
        return value or 0.0

    async def answered(self) -> None:
        """Until a source's first answer (or failure) has woken the planner."""
        await asyncio.wait_for(self.arrived.wait(), 10)
        self.arrived.clear()


@pytest.fixture
def operator(make_providers: Callable[..., Providers]) -> Operator:
    # As at start: refreshes in the background; one attempt and short timeouts keep tests fast.
    providers = make_providers(background_refresh=True, attempts=1, http_timeout_seconds=0.3)
    world, kube = World(), RecordingKube()
    planner = Planner(
        world, kube, OperatorMetrics(), gpus=ClusterGpus(kube, world), providers=providers.providers
    )
    arrived = asyncio.Event()
    planner.wake = arrived.set
    return Operator(world, kube, planner, arrived)


@pytest.mark.parametrize("fallback", [300.0, None])
def test_a_region_switched_to_a_failing_source_never_shows_the_old_sources_value(
    server: ScriptedServer, operator: Operator, fallback: float | None
) -> None:
    server.script("/ci.csv", Answer(500, b"down"))
    switched = region("r1", csv_source(f"{server.url}/ci.csv", fallback))

    async def scenario() -> None:
        operator.world.observe_region(region("r1", STATIC), deleted=False)
        await operator.planner.cycle(True)
        assert operator.carbon("r1")["source"] == "Static"
        operator.world.observe_region(switched, deleted=False)
        await operator.planner.cycle(True)  # the new source's first read is under way
        pending = operator.carbon("r1")
        assert pending.get("source") != "Static"
        if fallback is None:
            assert pending == {}
            assert operator.healthy("r1") == ("False", "Stale")
        else:
            assert (pending["source"], pending["value"]) == ("Fallback", fallback)
            assert pending["message"] == "no answer from the source yet"
        await operator.answered()
        await operator.planner.cycle(True)  # it failed: still nothing of the old source
        failed = operator.carbon("r1")
        if fallback is None:
            assert failed == {}
            assert operator.healthy("r1") == ("False", "Stale")
        else:
            assert (failed["source"], failed["value"]) == ("Fallback", fallback)
            assert "HTTP 500" in failed["message"]
            assert operator.healthy("r1") == ("False", "UsingFallback")

    asyncio.run(scenario())


def test_a_held_first_read_holds_up_no_cycle_and_its_answer_wakes_a_replan(
    server: ScriptedServer, operator: Operator
) -> None:
    release = threading.Event()
    server.script("/slow.csv", dataclasses.replace(text_answer(csv_now(42)), release=release))
    operator.world.observe_region(region("fast", STATIC), deleted=False)
    operator.world.observe_region(region("slow", csv_source(f"{server.url}/slow.csv")), False)
    for name in ("fast", "slow"):
        operator.world.observe_node(gpu_node(f"node-{name}", name), deleted=False)
    operator.world.observe_idep(inference_deployment("chat", "serving"), deleted=False)

    async def scenario() -> None:
        try:
            # The server holds its answer until released (10 s at most): a cycle that waited
            # for it would time out here.
            await asyncio.wait_for(operator.planner.cycle(True), 5)
            assert operator.carbon("fast")["source"] == "Static"
            assert operator.carbon("slow") == {}
            plan = operator.planner.memory.plans[IdepRef("serving", "chat")]
            assert {p.region for p in plan.pools} == {"fast"}  # planned with what is known
            assert poll(lambda: server.count("/slow.csv") == 1, 5)
        finally:
            release.set()
        await operator.answered()
        before = operator.replans()
        await operator.planner.cycle(False)  # a status refresh, made a re-plan by the answer
        assert operator.replans() == before + 1
        assert (operator.carbon("slow")["source"], operator.carbon("slow")["value"]) == ("File", 42)
        assert operator.healthy("slow") == ("True", "Fresh")
        assert server.count("/slow.csv") == 1  # read once, remembered since

    asyncio.run(scenario())


def test_a_source_that_never_answers_costs_its_region_its_timeout_and_no_more(
    server: ScriptedServer, operator: Operator
) -> None:
    server.script("/hang.csv", dataclasses.replace(text_answer(csv_now(42)), delay_seconds=5))
    operator.world.observe_region(region("fast", STATIC), deleted=False)
    operator.world.observe_region(region("hung", csv_source(f"{server.url}/hang.csv", 250)), False)

    async def scenario() -> None:
        await asyncio.wait_for(operator.planner.cycle(True), 5)
        pending = operator.carbon("hung")
        assert (pending["source"], pending["message"]) == (
            "Fallback",
            "no answer from the source yet",
        )
        assert operator.healthy("fast") == ("True", "Fresh")
        await operator.answered()  # the read gave up after its own timeout
        await asyncio.wait_for(operator.planner.cycle(True), 5)
        failed = operator.carbon("hung")
        assert failed["source"] == "Fallback"
        assert "no answer within 0.3s" in failed["message"]

    asyncio.run(scenario())


def test_a_sources_identity_is_where_its_value_comes_from() -> None:
    def identity(spec: dict[str, Any]) -> str:
        return source_identity(PowerPriceSource.model_validate(spec))

    csv = {"file": {"url": "http://127.0.0.1:9/p.csv", "valueColumn": "usd"}}
    same = identity(csv)
    # What to do with a value is not where it comes from: the last value survives these.
    assert identity({**csv, "maxAgeSeconds": 600, "fallback": {"usdPerMWh": 60}}) == same
    assert identity({"file": {**csv["file"], "valueColumn": "eur"}}) != same
    assert identity({**csv, "currency": "EUR"}) != same
    assert identity({"static": {"usdPerMWh": 60}}) != identity({"static": {"usdPerMWh": 61}})
    keyed = {"electricityMaps": {"zone": "DE", "apiKeySecretRef": {"name": "em", "key": "k"}}}
    assert '"name": "em"' in identity(keyed)  # the Secret is named, its value never read
