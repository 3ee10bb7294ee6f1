"""Starting and stopping the operator: the wiring of its parts (kube client, World, signal
providers, Planner, loop, leader election) and the background tasks beside the watches.

`handlers` registers this with kopf; nothing here decides anything.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import kopf

from gridplace_operator import labels
from gridplace_operator.autoscale.prometheus import Prometheus
from gridplace_operator.kube.client import CHILD_KINDS, CONCURRENCY, Kube, load_client_config
from gridplace_operator.kube.leader import LeaderElector
from gridplace_operator.kube.refs import KubeRefs
from gridplace_operator.observe.world import Change, World
from gridplace_operator.planning.loop import PlanningLoop
from gridplace_operator.planning.planner import Planner, PlannerSettings
from gridplace_operator.planning.seams import ClusterGpus
from gridplace_operator.report.metrics import OperatorMetrics
from gridplace_operator.signals.providers.build import build_providers
from gridplace_operator.signals.providers.settings import ProviderSettings

log = logging.getLogger(__name__)
OWNED = {labels.MANAGED_BY: labels.MANAGED_BY_VALUE}
# Retry delays of kopf's API calls and watches: about as long in all as kopf's default, never
# more than 5 s apart. A watch whose retries run out reconnects at once and starts again.
API_ERROR_BACKOFFS_S = (1.0, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0)


@dataclass(frozen=True)
class OperatorConfig:
    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    metrics_port: int = 8081
    metrics_address: str = "127.0.0.1"  # the chart passes 0.0.0.0 for in-cluster scraping
    plan_period_seconds: float = 60.0
    debounce_seconds: float = 1.0
    max_delay_seconds: float = 5.0
    resync_period_seconds: float = 300.0
    solve_time_limit_seconds: float = 120.0  # a safety net: work bounds the solve
    prometheus_url: str | None = None  # None: no autoscaler, replicas from declared demand
    prometheus_rate_window: str = "2m"
    autoscale_period_seconds: float = 15.0
    # None: no leader election (a single replica that always writes)
    lease_namespace: str | None = "default"
    lease_name: str = "gridplace-operator"


def _seed(kube: Kube, world: World, namespaces: tuple[str, ...]) -> None:
    """List everything once so the first plan sees the whole cluster, not a partial watch."""
    for body in kube.list_all("InferenceDeployment", namespaces=namespaces):
        world.observe_idep(body, deleted=False)
    for body in kube.list_all("Region"):
        world.observe_region(body, deleted=False)
    for body in kube.list_all("Node"):
        world.observe_node(body, deleted=False)
    for body in kube.list_all("Gateway", namespaces=namespaces):
        world.observe_gateway(body, deleted=False)
    for body in kube.list_all("Cluster"):  # Karmada's member clusters, in fleet mode
        world.observe_member(body, deleted=False)
    for kind in CHILD_KINDS:
        for body in kube.list_all(kind, label_selector=_selector(OWNED), namespaces=namespaces):
            world.observe_child(body, deleted=False)


def _selector(match: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in match.items())


async def start(settings: kopf.OperatorSettings, memo: kopf.Memo) -> None:
    """Build the operator's parts into `memo` and start its background tasks."""
    settings.posting.level = logging.WARNING  # gridplace writes its own, meaningful Events
    # kopf's default backoffs (1 .. 21 s, 54 s in all) leave a watch up to 21 s behind an API
    # server that came back; capped at 5 s, a change made after an outage is seen within seconds.
    settings.networking.error_backoffs = API_ERROR_BACKOFFS_S
    config: OperatorConfig = memo.get("config") or OperatorConfig()
    # API calls run in worker threads; the default pool (CPUs + 4) would serialise them.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=CONCURRENCY))
    metrics = OperatorMetrics()
    try:
        provider_settings = ProviderSettings.from_env(prometheus_url=config.prometheus_url)
    except ValueError as err:  # a malformed GRIDPLACE_* variable: stop, retrying cannot fix it
        raise kopf.PermanentError(str(err)) from err
    api_client = load_client_config(config.kubeconfig)
    kube = Kube(api_client, metrics)
    world = World()
    await asyncio.to_thread(_seed, kube, world, config.namespaces)
    planner = Planner(
        world,
        kube,
        metrics,
        gpus=ClusterGpus(kube, world),
        settings=PlannerSettings(
            solve_time_limit_seconds=config.solve_time_limit_seconds,
            rate_window=config.prometheus_rate_window,
        ),
        providers=build_providers(
            KubeRefs(
                api_client,
                provider_settings.namespace,
                ttl_seconds=provider_settings.secret_ttl_seconds,
                timeout_seconds=provider_settings.http_timeout_seconds,
            ),
            provider_settings,
        ),
        prometheus=Prometheus(config.prometheus_url) if config.prometheus_url else None,
    )

    async def cycle(replan: bool) -> None:
        if elector is None or elector.leading:  # a standby watches and waits
            await planner.cycle(replan)

    loop = PlanningLoop(
        cycle,
        period_seconds=config.plan_period_seconds,
        debounce_seconds=config.debounce_seconds,
        max_delay_seconds=config.max_delay_seconds,
    )
    planner.wake = lambda: loop.request(replan=True)  # a signal source's first answer
    elector = _elector(config, kube, planner, loop, metrics)
    if config.metrics_port:
        metrics.serve(config.metrics_port, config.metrics_address)
    memo.world, memo.loop, memo.planner, memo.elector = world, loop, planner, elector
    memo.task = asyncio.create_task(loop.run(), name="gridplace-planner")
    if elector is not None:
        memo.election = asyncio.create_task(elector.run(), name="gridplace-leader-election")
    memo.resync = asyncio.create_task(
        _resync(kube, world, loop, config), name="gridplace-world-resync"
    )
    if config.prometheus_url:  # the autoscaler decides on its own beat, between re-plans
        memo.ticker = asyncio.create_task(
            _autoscale_ticks(loop, config.autoscale_period_seconds, config.plan_period_seconds),
            name="gridplace-autoscaler-tick",
        )
    log.info(
        "gridplace started: %d InferenceDeployment(s), %d Region(s)",
        len(world.ideps),
        len(world.regions),
    )


async def _resync(kube: Kube, world: World, loop: PlanningLoop, config: OperatorConfig) -> None:
    """List everything again now and then and forget what is gone: kopf lists what exists when a
    watch reconnects, so a deletion made while it was away never arrives as an event."""
    while True:
        await asyncio.sleep(config.resync_period_seconds)
        listed, listed_at = World(), world.clock()
        try:
            await asyncio.to_thread(_seed, kube, listed, config.namespaces)
        except Exception as err:  # the next period tries again
            log.warning("listing for a resync failed: %s", err)
            continue
        change = world.resync(listed, listed_at)
        if change is not Change.NONE:
            log.info("resync: forgot objects deleted while a watch was away")
            loop.request(replan=change is Change.REPLAN)


async def _autoscale_ticks(loop: PlanningLoop, every: float, plan_period: float) -> None:
    """Wake the loop for an autoscaler decision; these wake-ups would starve the loop's own
    periodic re-plan, so every `plan_period` one of them asks for it instead."""
    last_replan = time.monotonic()
    while True:
        await asyncio.sleep(every)
        replan = time.monotonic() - last_replan >= plan_period
        if replan:
            last_replan = time.monotonic()
        loop.request(replan=replan)


def _elector(
    config: OperatorConfig,
    kube: Kube,
    planner: Planner,
    loop: PlanningLoop,
    metrics: OperatorMetrics,
) -> LeaderElector | None:
    """The Lease election, with every write of `kube` fenced by it; None when turned off."""
    if config.lease_namespace is None:
        return None
    running = asyncio.get_running_loop()

    def take_over(memory: str) -> None:  # called from the elector's thread
        running.call_soon_threadsafe(_take_over, planner, loop, memory)

    elector = LeaderElector(
        kube.rest,
        namespace=config.lease_namespace,
        name=config.lease_name,
        identity=f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
        on_acquired=take_over,
        memory=planner.lease_memory,
    )
    kube.may_write = elector.may_write
    metrics.leader.set_function(lambda: float(elector.leading))
    return elector


def _take_over(planner: Planner, loop: PlanningLoop, memory: str) -> None:
    planner.take_over(memory)
    loop.request(replan=True)


async def stop(memo: kopf.Memo) -> None:
    """Stop the background tasks and hand the Lease over at once."""
    for name in ("task", "ticker", "election", "resync"):
        task = memo.get(name)
        if task is not None:
            task.cancel()
    elector: LeaderElector | None = memo.get("elector")
    if elector is not None:  # a clean stop hands over at once instead of after the duration
        await asyncio.to_thread(elector.release)
