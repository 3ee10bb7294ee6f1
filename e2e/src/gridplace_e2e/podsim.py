"""Back every Running pod of gridplace's vLLM Deployments with a real simulator process.

The local cluster's pods are fake (kwok runs no containers). `PodSimulators.sync()` lists the pods
labelled by gridplace and, for each Running one, starts a `gridplace-vllm-sim` on 127.0.0.1 that
serves the pod's `--model`, with step costs of the pod's GPU type and few batch slots so it queues
under load. It writes a Prometheus file_sd target per pod with the labels a PodMonitor
would set in a real cluster (namespace, inference_deployment, region, gpu_type, pod) and stops the
process and removes the target when the pod goes away. `ClusterRouter` sends each user zone's
requests to the simulators of the regions named in the InferenceDeployment's `status.traffic`,
in proportion to the planned split, so the load follows gridplace's decisions.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from gridplace_e2e.loadgen.runner import Route
from gridplace_e2e.vllmsim.process import SimProcess, start_simulator

log = logging.getLogger(__name__)

IDEP_LABEL = "gridplace.dev/inference-deployment"
REGION_LABEL = "gridplace.dev/region"
GPU_LABEL = "gridplace.dev/gpu-type"
TARGET_PREFIX = "podsim-"


@dataclass(frozen=True)
class SimLatency:
    """Simulator timing flags (milliseconds) and scheduler limits for one GPU type.

    A step lasts `inter_token_latency_ms + inter_token_latency_per_seq_ms x decodes +
    prefill_time_per_token_ms x prompt tokens`; `time_to_first_token_ms` is the fixed time a
    request spends before it reaches the scheduler (see docs/vllm-simulator.md)."""

    time_to_first_token_ms: float
    prefill_time_per_token_ms: float
    inter_token_latency_ms: float
    inter_token_latency_per_seq_ms: float
    max_num_seqs: int
    max_num_batched_tokens: int = 8192

    def flags(self, model: str) -> list[str]:
        return [
            f"--model={model}",
            f"--time-to-first-token={self.time_to_first_token_ms}",
            f"--prefill-time-per-token={self.prefill_time_per_token_ms}",
            f"--inter-token-latency={self.inter_token_latency_ms}",
            f"--inter-token-latency-per-seq={self.inter_token_latency_per_seq_ms}",
            f"--max-num-seqs={self.max_num_seqs}",
            f"--max-num-batched-tokens={self.max_num_batched_tokens}",
        ]


# An 8B-parameter model in BF16 on each GPU. Prefill is compute-bound: 2 x 8e9 FLOP per prompt
# token at half the GPU's dense BF16 peak (H100 SXM 989, A100 312, L40S 362 TFLOP/s). Decode is
# bound by memory bandwidth: the step's base reads the 16 GB of weights, each decoding sequence
# its KV cache of a 2k-token context (0.27 GB), at 80 % of the bandwidth (3.35, 1.56, 0.86 TB/s).
# So the L40S prefills faster than the A100 but decodes slower. The 5 ms before the scheduler is
# the frontend's work and the same everywhere. The slots are few on purpose, so that a replica
# queues at a few requests per second: with Azure code-completion requests (2k-token prompts on
# average) an L40S or A100 replica saturates at 2-3 req/s, an H100 at about 9.
GPU_LATENCY: Mapping[str, SimLatency] = {
    "NVIDIA-H100-80GB-HBM3": SimLatency(5, 0.03, 6, 0.1, 4),
    "NVIDIA-A100-SXM4-40GB": SimLatency(5, 0.1, 13, 0.22, 4),
    "NVIDIA-L40S": SimLatency(5, 0.09, 23, 0.4, 4),
}
DEFAULT_LATENCY = GPU_LATENCY["NVIDIA-L40S"]


@dataclass(frozen=True)
class PodKey:
    namespace: str
    name: str


@dataclass(frozen=True)
class BackedPod:
    """A pod, the facts the simulator was started from, and its process."""

    key: PodKey
    inference_deployment: str
    region: str
    gpu_type: str
    model: str
    sim: SimProcess = field(compare=False)

    @property
    def address(self) -> str:
        return self.sim.base_url.removeprefix("http://")


def pod_model(pod: Mapping[str, Any]) -> str | None:
    """The model a gridplace vLLM pod serves: `vllm serve <model>`'s positional argument (the
    first argument when it is not a flag), or a `--model=` argument of older pods."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        args = [a for a in container.get("args") or [] if isinstance(a, str)]
        if args and not args[0].startswith("-"):
            return args[0]
        for arg in args:
            if arg.startswith("--model="):
                return arg.removeprefix("--model=")
    return None


def target_group(pod: BackedPod) -> list[dict[str, Any]]:
    """The file_sd entry of one backed pod, with the labels the autoscaler's queries group by."""
    return [
        {
            "targets": [pod.address],
            "labels": {
                "namespace": pod.key.namespace,
                "inference_deployment": pod.inference_deployment,
                "region": pod.region,
                "gpu_type": pod.gpu_type,
                "pod": pod.key.name,
            },
        }
    ]


def write_target(directory: Path, pod: BackedPod) -> Path:
    """Write atomically: Prometheus re-reads the directory and must never see half a file."""
    path = directory / f"{TARGET_PREFIX}{pod.key.namespace}-{pod.key.name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(target_group(pod)))
    tmp.replace(path)
    return path


class PodSimulators:
    """Keeps one simulator per Running gridplace pod; call `sync()` (or `start()` to poll)."""

    def __init__(
        self,
        api: client.ApiClient,
        file_sd_dir: Path,
        *,
        namespace: str | None = None,
        latency: Mapping[str, SimLatency] = GPU_LATENCY,
        start: Callable[[Sequence[str]], SimProcess] = start_simulator,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._dir = file_sd_dir
        self._namespace = namespace
        self._latency = latency
        self._start = start
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stoppers: list[threading.Thread] = []
        self.pods: dict[PodKey, BackedPod] = {}

    def _running_pods(self) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"label_selector": IDEP_LABEL}
        if self._namespace:
            listed = self._core.list_namespaced_pod(self._namespace, **kwargs)
        else:
            listed = self._core.list_pod_for_all_namespaces(**kwargs)
        pods = self._core.api_client.sanitize_for_serialization(listed)["items"]
        return [
            p
            for p in pods
            if (p.get("status") or {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
        ]

    def sync(self) -> None:
        """Start simulators for new Running pods; stop those whose pod is gone or not running.

        The lock guards only the bookkeeping: listing pods, starting a process and draining a
        stopping one take seconds on a busy machine, and `endpoints()` is called by the load
        generator for every request, from its event loop. Waiting on the lock there would stall
        every request in flight and then release the held-back ones in a burst, a load spike the
        autoscaler would rightly react to."""
        wanted: dict[PodKey, dict[str, Any]] = {}
        for pod in self._running_pods():
            meta = pod["metadata"]
            if pod_model(pod) is not None:
                wanted[PodKey(meta["namespace"], meta["name"])] = pod
        with self._lock:
            new = [key for key in wanted if key not in self.pods]
            gone = [self._forget(key) for key in set(self.pods) - set(wanted)]
        for backed in gone:  # drains its requests in flight; nothing routes to it any more
            stopper = threading.Thread(target=backed.sim.stop, name="podsim-stop", daemon=True)
            stopper.start()
            self._stoppers.append(stopper)
            log.info("pod %s/%s gone: simulator stopping", backed.key.namespace, backed.key.name)
        for key in new:
            self._back(key, wanted[key])

    def _back(self, key: PodKey, pod: Mapping[str, Any]) -> None:
        lbl = pod["metadata"].get("labels") or {}
        gpu = lbl.get(GPU_LABEL, "")
        model = pod_model(pod)
        assert model is not None
        sim = self._start(self._latency.get(gpu, DEFAULT_LATENCY).flags(model))
        backed = BackedPod(key, lbl.get(IDEP_LABEL, ""), lbl.get(REGION_LABEL, ""), gpu, model, sim)
        with self._lock:
            self.pods[key] = backed
            write_target(self._dir, backed)
        log.info("pod %s/%s -> simulator %s", key.namespace, key.name, sim.base_url)

    def _forget(self, key: PodKey) -> BackedPod:
        """Take a pod out of routing and scraping (under the lock); its process still runs."""
        backed = self.pods.pop(key)
        path = self._dir / f"{TARGET_PREFIX}{key.namespace}-{key.name}.json"
        path.unlink(missing_ok=True)
        return backed

    def endpoints(self, namespace: str, inference_deployment: str) -> dict[str, list[str]]:
        """Simulator base URLs of one InferenceDeployment by region."""
        with self._lock:
            out: dict[str, list[str]] = {}
            for pod in self.pods.values():
                if (pod.key.namespace, pod.inference_deployment) == (
                    namespace,
                    inference_deployment,
                ):
                    out.setdefault(pod.region, []).append(pod.sim.base_url)
            return {region: sorted(urls) for region, urls in out.items()}

    def start(self, period_s: float = 1.0) -> None:
        """Poll in a background thread until `close()`."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.sync()
                except Exception:  # a failed list is retried on the next tick
                    log.exception("pod simulator sync failed")
                self._stop.wait(period_s)

        self._thread = threading.Thread(target=loop, name="podsim", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop polling, every simulator, and remove their targets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            gone = [self._forget(key) for key in list(self.pods)]
        for backed in gone:
            backed.sim.stop()
        for stopper in self._stoppers:
            stopper.join(timeout=30)


def split(traffic: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """`status.traffic` as zone -> region -> requests per second."""
    out: dict[str, dict[str, float]] = {}
    for route in traffic:
        rate = float(route.get("requestsPerSecond") or 0.0)
        if rate > 0:
            out.setdefault(str(route["zone"]), {})[str(route["region"])] = rate
    return out


@dataclass
class ClusterRouter:
    """Routes a zone's request to a region by the planned split, then round-robin over the
    region's simulators. `traffic` and `endpoints` are read on every request, so the load follows
    re-plans and new replicas as they come."""

    traffic: Callable[[], Mapping[str, Mapping[str, float]]]
    endpoints: Callable[[], Mapping[str, Sequence[str]]]
    seed: int = 0
    _rng: random.Random = field(init=False)
    _turn: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def region_for(self, zone: str) -> str:
        endpoints = self.endpoints()
        weights = {r: w for r, w in self.traffic().get(zone, {}).items() if endpoints.get(r)}
        if not weights:  # no plan for this zone yet: any region with a simulator
            weights = {r: 1.0 for r, urls in endpoints.items() if urls}
        if not weights:
            raise ValueError(f"no simulator serves zone {zone!r} yet")
        regions = sorted(weights)
        return self._rng.choices(regions, weights=[weights[r] for r in regions])[0]

    def __call__(self, zone: str) -> Route:
        region = self.region_for(zone)
        urls = self.endpoints()[region]
        turn = self._turn.get(region, 0)
        self._turn[region] = turn + 1
        return Route(urls[turn % len(urls)], region)
