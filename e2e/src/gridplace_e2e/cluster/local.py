"""A real Kubernetes control plane as local processes: kwokctl's binary runtime runs etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and the kwok controller (fake nodes, no
kubelet); Prometheus runs beside it. Everything binds to 127.0.0.1.

State lives under a root folder (default ``~/.local/state/gridplace``):
``clusters/<name>/`` holds our files (kubeconfig, Prometheus config, data and file_sd targets,
logs) and ``kwok/clusters/<name>/`` holds kwokctl's. All clusters of one root share kwokctl's
folder, so kwokctl gives each one its own ports and clusters of different names coexist.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml
from kubernetes.client import ApiClient
from kubernetes.config import new_client_from_config

from gridplace_e2e.cluster import gateway_api
from gridplace_e2e.cluster.build import (
    ETCD_VERSION,
    KUBERNETES_VERSION,
    KWOK_VERSION,
    Binaries,
    Progress,
    ensure_binaries,
)
from gridplace_e2e.cluster.topology import Topology

DEFAULT_NAME = "gridplace"

CONTROL_PLANE_PROGRAMS = frozenset(
    {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller"}
)
# The programs a cluster runs; only these are ever stopped by `down`.
CLUSTER_PROGRAMS = CONTROL_PLANE_PROGRAMS | {"prometheus"}


class ClusterError(RuntimeError):
    """The local cluster could not be brought up, inspected or torn down; says which step."""


def read_state(workdir: Path) -> dict[str, Any]:
    """What a cluster or fleet recorded about itself (`state.json` in its folder)."""
    path = workdir / "state.json"
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def save_state(workdir: Path, **values: object) -> None:
    """Record `values` beside what is recorded already."""
    workdir.mkdir(parents=True, exist_ok=True)
    state = {**read_state(workdir), **values}
    (workdir / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def running_programs(programs: Collection[str], markers: Sequence[str]) -> dict[int, str]:
    """pid -> name of the running (not zombie) processes of `programs` whose command line names
    one of `markers` (a cluster's or a fleet's folders)."""
    found: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        program = Path(argv[0].decode(errors="replace")).name
        command = b" ".join(argv).decode(errors="replace")
        if (
            program in programs
            and any(marker in command for marker in markers)
            and _process_state(int(proc.name)) not in (None, "Z")
        ):
            found[int(proc.name)] = program
    return found


def api_server_ready(
    kubeconfig: Path, kubectl: Callable[..., subprocess.CompletedProcess[str]]
) -> bool:
    """Whether the API server `kubeconfig` points at answers /readyz with ok."""
    if not kubeconfig.is_file():
        return False
    try:
        result = kubectl("get", "--raw", "/readyz", check=False, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and result.stdout.strip() == "ok"


def default_root() -> Path:
    if explicit := os.environ.get("GRIDPLACE_STATE_DIR"):
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "gridplace"


@dataclass(frozen=True)
class ClusterStatus:
    name: str
    api_server_ready: bool
    prometheus_ready: bool
    kubeconfig: Path
    prometheus_url: str | None
    nodes: int
    processes: dict[int, str]  # pid -> program name

    def describe(self) -> str:
        running = self.api_server_ready and self.prometheus_ready
        programs = sorted(set(self.processes.values()))
        return "\n".join(
            [
                f"cluster:     {self.name} ({'running' if running else 'not running'})",
                f"api server:  {'ready' if self.api_server_ready else 'down'}"
                + (f", {self.nodes} nodes" if self.api_server_ready else ""),
                f"kubeconfig:  {self.kubeconfig}",
                f"prometheus:  {self.prometheus_url or '-'}"
                + (" (ready)" if self.prometheus_ready else " (down)"),
                f"processes:   {', '.join(programs) or 'none'}",
            ]
        )


class LocalCluster:
    def __init__(
        self,
        name: str = DEFAULT_NAME,
        root: Path | None = None,
        kubeconfig: Path | None = None,
        progress: Progress = print,
    ) -> None:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?", name):
            raise ClusterError(
                f"cluster name {name!r}: use up to 40 lowercase letters, digits, '-'"
            )
        self.name = name
        self.root = (root or default_root()).resolve()
        self.workdir = self.root / "clusters" / name
        self.kwok_workdir = self.root / "kwok"
        self.kwok_cluster_dir = self.kwok_workdir / "clusters" / name
        self._kubeconfig = kubeconfig.resolve() if kubeconfig else None
        self.progress = progress
        self._binaries: Binaries | None = None

    # -- paths and recorded state -------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        if self._kubeconfig is not None:
            return self._kubeconfig
        recorded = self._state().get("kubeconfig")
        return Path(str(recorded)) if recorded else self.workdir / "kubeconfig.yaml"

    @property
    def prometheus_dir(self) -> Path:
        return self.workdir / "prometheus"

    @property
    def file_sd_dir(self) -> Path:
        """Prometheus reads scrape targets from *.json / *.yaml files dropped here."""
        return self.prometheus_dir / "file_sd"

    @property
    def prometheus_url(self) -> str | None:
        port = self._state().get("prometheus_port")
        return f"http://127.0.0.1:{port}" if port else None

    def _state(self) -> dict[str, Any]:
        return read_state(self.workdir)

    def _save_state(self, **values: object) -> None:
        save_state(self.workdir, **values)

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = ensure_binaries(self.progress)
        return self._binaries

    def _env(self) -> dict[str, str]:
        # kwokctl calls `kubectl` from PATH; ours must win over any other kubectl installed.
        path = f"{self.binaries.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return dict(os.environ, PATH=path, KWOK_WORKDIR=str(self.kwok_workdir))

    # -- commands ---------------------------------------------------------------------------------

    def kwokctl_config(self) -> dict[str, object]:
        b = self.binaries
        return {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": {
                "runtime": "binary",
                "bindAddress": "127.0.0.1",
                "kubeVersion": KUBERNETES_VERSION,
                "etcdVersion": ETCD_VERSION.removeprefix("v"),
                "kwokVersion": KWOK_VERSION,
                "etcdBinary": str(b.etcd),
                "kubeApiserverBinary": str(b.kube_apiserver),
                "kubeControllerManagerBinary": str(b.kube_controller_manager),
                "kubeSchedulerBinary": str(b.kube_scheduler),
                "kwokControllerBinary": str(b.kwok),
                "kubectlBinary": str(b.kubectl),
                "cacheDir": str(self.kwok_workdir / "cache"),
            },
            # The default Service range (10.0.0.0/24) runs out at ~250 Services; every model
            # has one per region, so scale tests need far more.
            "componentsPatches": [
                {
                    "name": "kube-apiserver",
                    "extraArgs": [{"key": "service-cluster-ip-range", "value": "10.96.0.0/16"}],
                }
            ],
        }

    def kwokctl_create_args(self) -> list[str]:
        config = self.workdir / "kwokctl.yaml"
        self.workdir.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(self.kwokctl_config(), sort_keys=False))
        return [
            "create", "cluster", "--name", self.name, "--config", str(config),
            "--kubeconfig", str(self.kubeconfig), "--wait", "2m", "--timeout", "5m",
        ]  # fmt: skip

    def kwokctl(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binaries.kwokctl), *args],
            env=self._env(), capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(
            self.binaries.kubectl, self.kubeconfig, *args, input=input, check=check, timeout=timeout
        )

    def up(self, topology: Topology, wait: float = 300) -> None:
        """Starts whatever is not running yet, then makes the nodes match the topology."""
        self.start_control_plane()
        self.install_gateway_api()
        self.apply_topology(topology, wait)
        self.start_prometheus(wait)

    def start_control_plane(self) -> None:
        """Creates the cluster, or restarts it when any of its components is not running. kwokctl
        waits for the API server only; a component that exits right after the start (seen with
        kwok-controller on a busy machine) gets one more restart."""
        for attempt in range(2):
            self._start_control_plane_once()
            complete = poll(lambda: set(self.processes().values()) >= CONTROL_PLANE_PROGRAMS, 30)
            if complete:
                return
            missing = CONTROL_PLANE_PROGRAMS - set(self.processes().values())
            self.progress(f"{', '.join(sorted(missing))} not running after start {attempt + 1}")
        raise ClusterError(
            f"cluster {self.name}: {', '.join(sorted(missing))} did not stay up\n"
            f"{self._log_tails()}".rstrip()
        )

    def _start_control_plane_once(self) -> None:
        self._save_state(kubeconfig=str(self.kubeconfig))
        running = set(self.processes().values())
        if running >= CONTROL_PLANE_PROGRAMS and self.api_server_ready():
            return
        if (self.kwok_cluster_dir / "kwok.yaml").is_file():
            if running - {"prometheus"}:
                self.kwokctl("stop", "cluster", "--name", self.name)
                # A stopped component can still hold its port while it exits; a restart before
                # then fails to bind (kube-apiserver: "address already in use").
                poll(lambda: not set(self.processes().values()) - {"prometheus"}, 60)
            verb, args = "start", ["start", "cluster", "--name", self.name, "--wait", "2m"]
        else:
            verb, args = "create", self.kwokctl_create_args()
        self.progress(f"{verb} cluster {self.name} (kwokctl, binary runtime) ...")
        result = self.kwokctl(*args)
        if result.returncode != 0 or not self.api_server_ready():
            logs = self._log_tails()
            if verb == "create":  # leave nothing half-created behind
                self.kwokctl("delete", "cluster", "--name", self.name)
            raise ClusterError(
                f"kwokctl {verb} cluster {self.name} failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}{logs}".rstrip()
            )

    def install_gateway_api(self) -> None:
        """Gateway API's standard-channel CRDs (gateway_api.GATEWAY_API_VERSION), so routes are
        validated by the real schemas. Server-side apply: a restart re-applies them unchanged."""
        files = gateway_api.crd_files()
        self.progress(f"installing Gateway API {gateway_api.GATEWAY_API_VERSION} CRDs ...")
        args = [a for f in files for a in ("-f", str(f))]
        self.kubectl("apply", "--server-side", "--force-conflicts", *args)
        names = [f"crd/{f.name.removesuffix('.yaml').split('_', 1)[1]}.{f.name.split('_')[0]}"
                 for f in files]  # fmt: skip
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)

    def _log_tails(self, lines: int = 15) -> str:
        tails = []
        for log in sorted((self.kwok_cluster_dir / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"--- {log.name} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(tails)

    def apply_topology(self, topology: Topology, wait: float = 300) -> None:
        manifests = topology.node_manifests()
        self.progress(f"applying {len(manifests)} GPU nodes in {len(topology.regions)} regions ...")
        document = {"apiVersion": "v1", "kind": "List", "items": manifests}
        self.kubectl("apply", "-f", "-", input=json.dumps(document))
        names = [node["metadata"]["name"] for node in manifests]
        self.kubectl(
            "wait", "--for=condition=Ready", f"--timeout={int(wait)}s",
            *(f"node/{name}" for name in names), timeout=wait + 30,
        )  # fmt: skip

    def api_server_ready(self) -> bool:
        return api_server_ready(self.kubeconfig, self.kubectl)

    # -- Prometheus -------------------------------------------------------------------------------

    def prometheus_ready(self) -> bool:
        if (url := self.prometheus_url) is None or not self._prometheus_pid_alive():
            return False
        try:
            return requests.get(f"{url}/-/ready", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def _prometheus_pid_alive(self) -> bool:
        pid = self._state().get("prometheus_pid")
        return isinstance(pid, int) and pid in self.processes()

    def start_prometheus(self, wait: float = 120) -> None:
        """Starts Prometheus for this cluster unless it already runs (it needs no control plane)."""
        if self.prometheus_ready():
            return
        self._stop_prometheus()
        port = _free_port()
        config = self.prometheus_dir / "prometheus.yml"
        self.file_sd_dir.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(prometheus_config(port, self.file_sd_dir)))
        self.progress(f"starting Prometheus on 127.0.0.1:{port} ...")
        with (self.prometheus_dir / "prometheus.log").open("ab") as log:
            process = subprocess.Popen(
                [
                    str(self.binaries.prometheus),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.prometheus_dir / 'data'}",
                    "--storage.tsdb.retention.time=2d",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--web.enable-lifecycle",
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this command, like kwokctl's processes
            )  # fmt: skip
        self._save_state(prometheus_pid=process.pid, prometheus_port=port)
        if not poll(self.prometheus_ready, wait):
            raise ClusterError(
                f"Prometheus did not become ready on 127.0.0.1:{port} within {wait:.0f}s;"
                f" see {self.prometheus_dir / 'prometheus.log'}"
            )

    def _stop_prometheus(self) -> None:
        pid = self._state().get("prometheus_pid")
        if isinstance(pid, int) and pid in self.processes():
            _terminate(pid)

    # -- teardown and inspection ------------------------------------------------------------------

    def processes(self) -> dict[int, str]:
        """Running cluster programs whose command line names this cluster's folders."""
        markers = (f"{self.workdir}/", f"{self.kwok_cluster_dir}/")
        return running_programs(CLUSTER_PROGRAMS, markers)

    def down(self, wait: float = 60) -> None:
        """Stops every process of the cluster and deletes its state; fine to call when down."""
        if self.kwok_cluster_dir.is_dir():
            self.progress(f"deleting cluster {self.name} ...")
            result = self.kwokctl(
                "delete", "cluster", "--name", self.name, "--kubeconfig", str(self.kubeconfig)
            )
            if result.returncode != 0:
                self.progress(f"kwokctl delete cluster failed, stopping processes: {result.stderr}")
        self._stop_prometheus()
        for pid in self.processes():
            _terminate(pid)
        if not poll(lambda: not self.processes(), wait):
            raise ClusterError(f"processes of cluster {self.name} still run: {self.processes()}")
        for path in (self.kwok_cluster_dir, self.workdir):
            subprocess.run(["rm", "-rf", str(path)], check=True)

    def status(self) -> ClusterStatus:
        ready = self.api_server_ready()
        nodes = 0
        if ready:
            listed = self.kubectl("get", "nodes", "-o", "name", check=False)
            nodes = len(listed.stdout.split())
        return ClusterStatus(
            name=self.name,
            api_server_ready=ready,
            prometheus_ready=self.prometheus_ready(),
            kubeconfig=self.kubeconfig,
            prometheus_url=self.prometheus_url,
            nodes=nodes,
            processes=self.processes(),
        )


def abandoned_clusters(prefix: str, root: Path | None = None) -> list[str]:
    """Clusters named `<prefix>-<pid>[-suffix]` whose owning process (the pid) has ended."""
    root = (root or default_root()).resolve()
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+)(-[a-z0-9-]+)?")
    names = {
        folder.name
        for parent in (root / "clusters", root / "kwok" / "clusters")
        if parent.is_dir()
        for folder in parent.iterdir()
    }
    owners = {name: pattern.fullmatch(name) for name in sorted(names)}
    return [
        name
        for name, match in owners.items()
        if match and _process_state(int(match.group(1))) in (None, "Z")
    ]


def api_client(kubeconfig: Path) -> ApiClient:
    """A Kubernetes Python client for the cluster of this kubeconfig (its current context)."""
    client: ApiClient = new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    return client


def run_kubectl(
    kubectl: Path,
    kubeconfig: Path,
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Runs kubectl against one cluster; with check, a failure raises ClusterError with stderr."""
    result = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), *args],
        input=input, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def prometheus_config(port: int, file_sd_dir: Path) -> dict[str, object]:
    return {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
            {
                # Targets written by the test environment (e.g. simulated vLLM pods).
                "job_name": "file_sd",
                "file_sd_configs": [
                    {
                        "files": [str(file_sd_dir / "*.json"), str(file_sd_dir / "*.yaml")],
                        "refresh_interval": "5s",
                    }
                ],
            },
        ],
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(condition: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Calls condition until it holds or the deadline passes; returns whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def _process_state(pid: int) -> str | None:
    """The state letter of a process from /proc (R, S, Z, ...), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _terminate(pid: int, grace: float = 15) -> None:
    def gone() -> bool:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
        return _process_state(pid) in (None, "Z")

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if poll(gone, grace, interval=0.2):
            return
