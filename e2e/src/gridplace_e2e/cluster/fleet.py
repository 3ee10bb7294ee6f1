"""A local Karmada fleet: a real Karmada control plane plus kwok-backed member clusters, all local
processes bound to 127.0.0.1.

The Karmada control plane (Karmada v1.16.0, see build.KARMADA_VERSION) is its own etcd and
kube-apiserver (the Kubernetes v1.34 binaries of the local cluster) with Karmada's CRDs, read at
run time from Karmada's module in the Go module cache, plus:

- karmada-aggregated-apiserver: serves ``cluster.karmada.io`` (Cluster objects are not CRDs) and
  the cluster proxy (``/apis/cluster.karmada.io/v1alpha1/clusters/<member>/proxy/...``), registered
  through an APIService whose ExternalName Service points at 127.0.0.1;
- karmada-controller-manager and karmada-scheduler;
- karmada-webhook. Karmada's controllers run without it, but not correctly: its mutating webhooks
  give every PropagationPolicy and ResourceBinding its permanent ID, and the binding controller
  finds a binding's Works by that ID. Without it every binding has the ID "", so one binding's
  clean-up (a deleted template, or Works in a cluster it no longer targets) deletes the Works of
  every other binding. It also fills the policies' defaults (e.g. the tolerations of NotReady and
  unreachable clusters that failover relies on). Its configurations are Karmada's own, with the
  service URL replaced by 127.0.0.1. The CRD conversion webhooks (ResourceBinding v1alpha1 ->
  v1alpha2) are left out: nothing here reads the old versions;
- a kube-controller-manager with the namespace and garbage-collector controllers only (Karmada
  relies on owner references, e.g. a ResourceBinding is owned by its resource template).

Certificates come from the ``openssl`` CLI: one CA signs the serving certificate of every
component (SANs 127.0.0.1, localhost and the aggregated API server's service name) and the admin
client certificate (``system:admin`` in ``system:masters``); a second CA signs the front-proxy
client certificate the API server uses towards the aggregated API server.

Members are LocalClusters named ``<fleet>-<member>``, each with its own topology, joined in Push
mode as ``karmadactl join`` does it: in the member, namespace ``karmada-cluster`` holds a
ServiceAccount ``karmada-<member>`` bound to cluster-admin (Karmada's credentials for the member)
and a ServiceAccount ``karmada-impersonator`` allowed to impersonate users, groups and service
accounts (the cluster proxy forwards requests as the caller); their tokens and the member's CA go
into Secrets in Karmada's ``karmada-cluster`` namespace that the Cluster object refers to.

State lives under ``<root>/fleets/<name>/`` (certificates, etcd data, kubeconfigs, one log per
program) and the members' under ``<root>/clusters/<fleet>-<member>/`` as for any LocalCluster.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from gridplace_e2e.cluster.build import (
    Binaries,
    KarmadaBinaries,
    Progress,
    ensure_binaries,
    ensure_karmada_binaries,
    karmada_module_dir,
)
from gridplace_e2e.cluster.local import (
    ClusterError,
    LocalCluster,
    _free_port,
    _terminate,
    api_server_ready,
    default_root,
    poll,
    read_state,
    run_kubectl,
    running_programs,
    save_state,
)
from gridplace_e2e.cluster.topology import DEFAULT_TOPOLOGY, load_topology

DEFAULT_FLEET_NAME = "gridplace-fleet"
TOPOLOGIES = DEFAULT_TOPOLOGY.parent

# The programs of the Karmada control plane, in start order; only these are ever stopped by down.
CONTROL_PLANE_PROGRAMS = (
    "etcd",
    "kube-apiserver",
    "karmada-aggregated-apiserver",
    "karmada-webhook",
    "kube-controller-manager",
    "karmada-controller-manager",
    "karmada-scheduler",
)
# Where Karmada keeps the members' credentials, and where the member keeps Karmada's accounts.
CREDENTIALS_NAMESPACE = "karmada-cluster"
KARMADA_NAMESPACES = ("karmada-system", CREDENTIALS_NAMESPACE)
AGGREGATED_SERVICE = "karmada-aggregated-apiserver"
IMPERSONATOR = "karmada-impersonator"
# Long enough for any test session or demo; the member's API server issues it (TokenRequest).
TOKEN_DURATION = "8760h"


@dataclass(frozen=True)
class FleetMember:
    name: str  # the Karmada Cluster's name, e.g. "eu"
    topology: Path  # its GPU nodes


DEFAULT_MEMBERS = (
    FleetMember("eu", TOPOLOGIES / "fleet-eu.yaml"),
    FleetMember("us", TOPOLOGIES / "fleet-us.yaml"),
    FleetMember("ap", TOPOLOGIES / "fleet-ap.yaml"),
)


@dataclass(frozen=True)
class FleetStatus:
    name: str
    api_server_ready: bool
    kubeconfig: Path
    clusters_ready: dict[str, bool]  # member -> its Cluster is Ready in Karmada
    member_kubeconfigs: dict[str, Path]
    processes: dict[int, str]  # pid -> program, control plane and members
    missing: list[str] = field(default_factory=list)  # control-plane programs not running

    @property
    def running(self) -> bool:
        return (
            self.api_server_ready
            and not self.missing
            and bool(self.clusters_ready)
            and all(self.clusters_ready.values())
        )

    def describe(self) -> str:
        members = ", ".join(
            f"{name} ({'Ready' if ready else 'not ready'})"
            for name, ready in self.clusters_ready.items()
        )
        lines = [
            f"fleet:       {self.name} ({'running' if self.running else 'not running'})",
            f"karmada:     {'ready' if self.api_server_ready else 'down'}"
            + (f", not running: {', '.join(self.missing)}" if self.missing else ""),
            f"kubeconfig:  {self.kubeconfig}",
            f"members:     {members or '-'}",
        ]
        lines += [f"  {name}: {path}" for name, path in self.member_kubeconfigs.items()]
        lines.append(f"processes:   {len(self.processes)}")
        return "\n".join(lines)


class LocalFleet:
    """Karmada plus member clusters under ``<root>/fleets/<name>/``; ``up`` is idempotent."""

    def __init__(
        self,
        name: str = DEFAULT_FLEET_NAME,
        root: Path | None = None,
        members: Sequence[FleetMember] = DEFAULT_MEMBERS,
        progress: Progress = print,
        prometheus: bool = False,
    ) -> None:
        self.name = name
        self.root = (root or default_root()).resolve()
        self.workdir = self.root / "fleets" / name
        self.pki = self.workdir / "pki"
        self.logs = self.workdir / "logs"
        self.member_specs = {member.name: member for member in members}
        self.members = {
            member.name: LocalCluster(f"{name}-{member.name}", self.root, progress=progress)
            for member in members
        }
        self.progress = progress
        self.prometheus = prometheus
        self._binaries: Binaries | None = None
        self._karmada: KarmadaBinaries | None = None

    # -- paths, binaries and recorded state -------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """The Karmada API server's kubeconfig (admin: system:admin in system:masters)."""
        return self.workdir / "kubeconfig.yaml"

    def member_kubeconfig(self, member: str) -> Path:
        return self.members[member].kubeconfig

    @property
    def member_kubeconfigs(self) -> dict[str, Path]:
        return {name: cluster.kubeconfig for name, cluster in self.members.items()}

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = ensure_binaries(self.progress)
        return self._binaries

    @property
    def karmada(self) -> KarmadaBinaries:
        if self._karmada is None:
            self._karmada = ensure_karmada_binaries(self.progress)
        return self._karmada

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """kubectl against the Karmada API server."""
        return run_kubectl(
            self.binaries.kubectl, self.kubeconfig, *args, input=input, check=check, timeout=timeout
        )

    def member_kubectl(
        self, member: str, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.members[member].kubectl(*args, input=input, check=check)

    # -- up ---------------------------------------------------------------------------------------

    def up(self, wait: float = 300) -> None:
        """Starts whatever is not running: the Karmada control plane (in a thread) while the
        members start one after the other, then joins every member and waits until its Cluster
        is Ready."""
        self.binaries  # noqa: B018 (build before the threads, which would race for the lock)
        self.karmada  # noqa: B018
        failure: list[BaseException] = []

        def control_plane() -> None:
            try:
                self.start_control_plane(wait)
            except BaseException as error:  # re-raised below, in the caller's thread
                failure.append(error)

        thread = threading.Thread(target=control_plane, name=f"{self.name}-karmada")
        thread.start()
        try:
            for name, cluster in self.members.items():
                topology = load_topology(self.member_specs[name].topology)
                cluster.start_control_plane()
                cluster.apply_topology(topology, wait)
                if self.prometheus:
                    cluster.start_prometheus(wait)
        finally:
            thread.join()
        if failure:
            raise failure[0]
        for name in self.members:
            self.join(name)
        for name in self.members:
            self.wait_cluster_ready(name, wait)

    def start_control_plane(self, wait: float = 300) -> None:
        """Starts the Karmada control plane unless all of it runs and answers."""
        if not self.missing_programs() and self.api_server_ready():
            return
        self.stop_control_plane()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        if not (self.pki / "admin.crt").is_file():
            make_pki(self.pki)
        ports = self._ports()
        self._write_kubeconfig(ports["apiserver"])
        self.progress(f"starting Karmada's control plane of fleet {self.name} ...")
        self._spawn("etcd", self._etcd_args(ports))
        self._spawn("kube-apiserver", self._apiserver_args(ports))
        if not poll(self.api_server_ready, wait, interval=1):
            raise ClusterError(f"Karmada's API server did not become ready\n{self._log_tails()}")
        self._install_karmada_api(ports)
        self._spawn("karmada-aggregated-apiserver", self._aggregated_args(ports))
        self._spawn("karmada-webhook", self._webhook_args(ports))
        self._spawn("kube-controller-manager", self._kube_controller_manager_args())
        self._spawn("karmada-controller-manager", self._controller_manager_args(ports))
        self._spawn("karmada-scheduler", self._scheduler_args(ports))
        self._wait_components(ports, wait)

    def _ports(self) -> dict[str, int]:
        """The ports of the last start when there was one (etcd keeps its peer URL in its data);
        else fresh free ones."""
        names = (
            "etcd", "etcd_peer", "apiserver", "aggregated", "webhook", "webhook_metrics",
            "webhook_health", "cm_metrics", "cm_health", "scheduler_metrics", "scheduler_health",
        )  # fmt: skip
        recorded = read_state(self.workdir).get("ports", {})
        ports = {name: int(recorded.get(name) or _free_port()) for name in names}
        save_state(self.workdir, ports=ports)
        return ports

    def _spawn(self, program: str, args: list[str]) -> None:
        binary = {
            "etcd": self.binaries.etcd,
            "kube-apiserver": self.binaries.kube_apiserver,
            "kube-controller-manager": self.binaries.kube_controller_manager,
            "karmada-aggregated-apiserver": self.karmada.aggregated_apiserver,
            "karmada-webhook": self.karmada.webhook,
            "karmada-controller-manager": self.karmada.controller_manager,
            "karmada-scheduler": self.karmada.scheduler,
        }[program]
        with (self.logs / f"{program}.log").open("ab") as log:
            subprocess.Popen(
                [str(binary), *args],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this command, like the members' processes
            )  # fmt: skip

    def _etcd_args(self, ports: dict[str, int]) -> list[str]:
        client, peer = f"http://127.0.0.1:{ports['etcd']}", f"http://127.0.0.1:{ports['etcd_peer']}"
        return [
            "--name=karmada",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=karmada={peer}",
            "--unsafe-no-fsync",  # test data only: no fsync on a busy 2-core machine
            "--quota-backend-bytes=2147483648",
        ]

    def _apiserver_args(self, ports: dict[str, int]) -> list[str]:
        pki = self.pki
        return [
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={pki / 'server.crt'}",
            f"--tls-private-key-file={pki / 'server.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--disable-admission-plugins=StorageObjectInUseProtection,ServiceAccount",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User",
        ]

    def _aggregated_args(self, ports: dict[str, int]) -> list[str]:
        kubeconfig = self.kubeconfig
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['aggregated']}",
            f"--tls-cert-file={self.pki / 'server.crt'}",
            f"--tls-private-key-file={self.pki / 'server.key'}",
        ]

    def _webhook_args(self, ports: dict[str, int]) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['webhook']}",
            f"--cert-dir={self.pki}",
            "--tls-cert-file-name=server.crt",
            "--tls-private-key-file-name=server.key",
            f"--metrics-bind-address=127.0.0.1:{ports['webhook_metrics']}",
            f"--health-probe-bind-address=127.0.0.1:{ports['webhook_health']}",
        ]

    def _kube_controller_manager_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            "--controllers=namespace,garbagecollector",
            "--leader-elect=false",
            "--secure-port=0",  # it serves nothing here
        ]

    def _controller_manager_args(self, ports: dict[str, int]) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--cluster-status-update-frequency=5s",
            # Karmada's defaults are 30 s each: a member is declared lost (and back) three times
            # sooner here, so failover tests take seconds, not minutes.
            "--cluster-failure-threshold=10s",
            "--cluster-success-threshold=10s",
            # A Work that could not reach its member (lost) is retried at most 5 s apart, not
            # up to 1000 s (Karmada's default): a member that comes back is cleaned up at once.
            "--rate-limiter-max-delay=5s",
            f"--metrics-bind-address=127.0.0.1:{ports['cm_metrics']}",
            f"--health-probe-bind-address=127.0.0.1:{ports['cm_health']}",
        ]

    def _scheduler_args(self, ports: dict[str, int]) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            f"--metrics-bind-address=127.0.0.1:{ports['scheduler_metrics']}",
            f"--health-probe-bind-address=127.0.0.1:{ports['scheduler_health']}",
        ]

    def _write_kubeconfig(self, port: int) -> None:
        def data(name: str) -> str:
            return base64.b64encode((self.pki / name).read_bytes()).decode()

        user = f"{self.name}-admin"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": self.name,
                    "cluster": {
                        "server": f"https://127.0.0.1:{port}",
                        "certificate-authority-data": data("ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": data("admin.crt"),
                        "client-key-data": data("admin.key"),
                    },
                }
            ],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": user}}],
            "current-context": self.name,
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    def _install_karmada_api(self, ports: dict[str, int]) -> None:
        """Namespaces, Karmada's CRDs, the APIService of cluster.karmada.io and the webhooks."""
        module = karmada_module_dir()
        ca = base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()
        namespaces = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            for name in KARMADA_NAMESPACES
        ]
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": AGGREGATED_SERVICE, "namespace": "karmada-system"},
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
        }
        api_service = {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1alpha1.cluster.karmada.io"},
            "spec": {
                "caBundle": ca,
                "group": "cluster.karmada.io",
                "groupPriorityMinimum": 2000,
                "version": "v1alpha1",
                "versionPriority": 10,
                "service": {
                    "name": AGGREGATED_SERVICE,
                    "namespace": "karmada-system",
                    "port": ports["aggregated"],
                },
            },
        }
        webhooks = (module / "artifacts" / "deploy" / "webhook-configuration.yaml").read_text()
        webhooks = webhooks.replace(
            "https://karmada-webhook.karmada-system.svc:443",
            f"https://127.0.0.1:{ports['webhook']}",
        ).replace("{{caBundle}}", ca)
        items = [*namespaces, service, api_service, *yaml.safe_load_all(webhooks)]
        self.progress("installing Karmada's CRDs, APIService and webhooks ...")
        crds = module / "charts" / "karmada" / "_crds" / "bases"
        self.kubectl("apply", "--server-side", "--force-conflicts", "-R", "-f", str(crds))
        self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )  # fmt: skip
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")

    def _wait_components(self, ports: dict[str, int], wait: float) -> None:
        def healthy(url: str) -> Callable[[], bool]:
            def check() -> bool:
                try:
                    return requests.get(url, timeout=5, verify=str(self.pki / "ca.crt")).ok
                except requests.RequestException:
                    return False

            return check

        checks: dict[str, Callable[[], bool]] = {
            "karmada-aggregated-apiserver (APIService Available)": self._api_service_available,
            # Its health-probe server has no checks; the webhook server itself answers this.
            "karmada-webhook": healthy(f"https://127.0.0.1:{ports['webhook']}/readyz/"),
            "karmada-controller-manager": healthy(f"http://127.0.0.1:{ports['cm_health']}/healthz"),
            "karmada-scheduler": healthy(f"http://127.0.0.1:{ports['scheduler_health']}/healthz"),
        }
        for what, check in checks.items():
            if not poll(check, wait, interval=1):
                raise ClusterError(f"{what} did not become ready\n{self._log_tails()}")
        if missing := self.missing_programs():
            raise ClusterError(f"not running: {', '.join(missing)}\n{self._log_tails()}")

    def _api_service_available(self) -> bool:
        result = self.kubectl(
            "get", "apiservice", "v1alpha1.cluster.karmada.io", "-o",
            "jsonpath={.status.conditions[?(@.type=='Available')].status}", check=False,
        )  # fmt: skip
        return result.stdout == "True"

    # -- joining members --------------------------------------------------------------------------

    def join(self, member: str) -> None:
        """Registers a member in Push mode (as ``karmadactl join`` does); idempotent. The tokens
        are issued anew each time."""
        cluster = self.members[member]
        account = f"karmada-{member}"
        in_member: list[dict[str, Any]] = [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": CREDENTIALS_NAMESPACE},
            },
            _service_account(account),
            _service_account(IMPERSONATOR),
            _cluster_role_binding(f"karmada-controller:{account}", "cluster-admin", account),
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": f"gridplace:{IMPERSONATOR}"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["users", "groups", "serviceaccounts"],
                        "verbs": ["impersonate"],
                    }
                ],
            },
            _cluster_role_binding(
                f"gridplace:{IMPERSONATOR}", f"gridplace:{IMPERSONATOR}", IMPERSONATOR
            ),
        ]
        cluster.kubectl(
            "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                  "items": in_member}),
        )  # fmt: skip

        def token(name: str) -> str:
            issued = cluster.kubectl(
                "create", "token", name, "-n", CREDENTIALS_NAMESPACE,
                f"--duration={TOKEN_DURATION}",
            )  # fmt: skip
            return issued.stdout.strip()

        server, ca = _kubeconfig_server_and_ca(cluster.kubeconfig)

        def secret(name: str, data: dict[str, bytes]) -> dict[str, Any]:
            return {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": CREDENTIALS_NAMESPACE},
                "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
            }

        impersonator = f"{member}-impersonator"
        in_karmada = [
            secret(member, {"token": token(account).encode(), "caBundle": ca}),
            secret(impersonator, {"token": token(IMPERSONATOR).encode()}),
            {
                "apiVersion": "cluster.karmada.io/v1alpha1",
                "kind": "Cluster",
                "metadata": {"name": member, "labels": {"gridplace.dev/fleet": self.name}},
                "spec": {
                    "syncMode": "Push",
                    "apiEndpoint": server,
                    "secretRef": {"namespace": CREDENTIALS_NAMESPACE, "name": member},
                    "impersonatorSecretRef": {
                        "namespace": CREDENTIALS_NAMESPACE,
                        "name": impersonator,
                    },
                },
            },
        ]
        self.progress(f"joining member {member} ({server}) ...")
        for item in in_karmada:  # the Cluster only after its Secrets
            self.kubectl("apply", "-f", "-", input=json.dumps(item))

    def cluster_ready(self, member: str) -> bool:
        result = self.kubectl(
            "get", "cluster", member, "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False,
        )  # fmt: skip
        return result.returncode == 0 and result.stdout == "True"

    def wait_cluster_ready(self, member: str, wait: float = 300) -> None:
        if not poll(lambda: self.cluster_ready(member), wait, interval=1):
            raise ClusterError(
                f"member {member} did not become Ready in Karmada within {wait:.0f}s\n"
                + self._log_tails(programs=("karmada-controller-manager",))
            )

    # -- failover: one member's API server --------------------------------------------------------

    def stop_member_api_server(self, member: str) -> None:
        """Stops one member's kube-apiserver (its other processes keep running)."""
        cluster = self.members[member]
        pids = [pid for pid, program in cluster.processes().items() if program == "kube-apiserver"]
        if not pids:
            raise ClusterError(f"member {member}: kube-apiserver is not running")
        for pid in pids:
            _terminate(pid)

    def start_member_api_server(self, member: str) -> None:
        """Restarts the member's control plane after stop_member_api_server (same ports, same
        certificates, so Karmada's credentials still hold)."""
        self.members[member].start_control_plane()

    # -- down and status --------------------------------------------------------------------------

    def processes(self) -> dict[int, str]:
        """Running programs of Karmada's control plane: those whose command line names this
        fleet's folder."""
        return running_programs(CONTROL_PLANE_PROGRAMS, [f"{self.workdir}/"])

    def all_processes(self) -> dict[int, str]:
        """Karmada's processes and every member's."""
        found = self.processes()
        for cluster in self.members.values():
            found.update(cluster.processes())
        return found

    def missing_programs(self) -> list[str]:
        running = set(self.processes().values())
        return [program for program in CONTROL_PLANE_PROGRAMS if program not in running]

    def api_server_ready(self) -> bool:
        return api_server_ready(self.kubeconfig, self.kubectl)

    def stop_control_plane(self, wait: float = 60) -> None:
        # The controllers first, the API server and etcd last.
        by_program: dict[str, list[int]] = {}
        for pid, program in self.processes().items():
            by_program.setdefault(program, []).append(pid)
        for program in reversed(CONTROL_PLANE_PROGRAMS):
            for pid in by_program.get(program, []):
                _terminate(pid)
        if not poll(lambda: not self.processes(), wait):
            raise ClusterError(f"fleet {self.name}: processes still run: {self.processes()}")

    def down(self) -> None:
        """Stops every process of the fleet (Karmada's and the members') and deletes its state;
        fine to call when down."""
        self.progress(f"stopping fleet {self.name} ...")
        self.stop_control_plane()
        for cluster in self.members.values():
            cluster.down()
        subprocess.run(["rm", "-rf", str(self.workdir)], check=True)

    def status(self) -> FleetStatus:
        ready = self.api_server_ready()
        return FleetStatus(
            name=self.name,
            api_server_ready=ready,
            kubeconfig=self.kubeconfig,
            clusters_ready={name: ready and self.cluster_ready(name) for name in self.members},
            member_kubeconfigs=self.member_kubeconfigs,
            processes=self.all_processes(),
            missing=self.missing_programs(),
        )

    def _log_tails(self, lines: int = 15, programs: Sequence[str] = CONTROL_PLANE_PROGRAMS) -> str:
        tails = []
        for program in programs:
            log = self.logs / f"{program}.log"
            if log.is_file():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                tails.append(f"--- {log} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(tails)


def _service_account(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": CREDENTIALS_NAMESPACE},
    }


def _cluster_role_binding(name: str, role: str, account: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [
            {"kind": "ServiceAccount", "name": account, "namespace": CREDENTIALS_NAMESPACE}
        ],
    }


def _kubeconfig_server_and_ca(kubeconfig: Path) -> tuple[str, bytes]:
    """The API server URL and CA certificate of a kubeconfig's current context."""
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    entry = cluster["cluster"]
    if "certificate-authority-data" in entry:
        ca = base64.b64decode(entry["certificate-authority-data"])
    else:
        path = Path(entry["certificate-authority"])
        ca = (path if path.is_absolute() else kubeconfig.parent / path).read_bytes()
    return str(entry["server"]), ca


def make_pki(pki: Path) -> None:
    """The Karmada control plane's keys and certificates (ECDSA P-256), with the openssl CLI."""
    if shutil.which("openssl") is None:
        raise ClusterError("the `openssl` command is needed for the fleet's certificates")
    pki.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        result = subprocess.run(
            ["openssl", *args], cwd=pki, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ClusterError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")

    def ca(name: str, subject: str) -> None:
        openssl("req", "-x509", *key, "-keyout", f"{name}.key", "-out", f"{name}.crt",
                "-days", "3650", "-subj", subject)  # fmt: skip

    def leaf(name: str, subject: str, signer: str, extensions: str) -> None:
        (pki / f"{name}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            + extensions
        )
        openssl("req", "-new", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", subject)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{signer}.crt", "-CAkey",
                f"{signer}.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "3650",
                "-extfile", f"{name}.ext")  # fmt: skip

    ca("ca", "/CN=gridplace-karmada-ca")
    ca("front-proxy-ca", "/CN=gridplace-karmada-front-proxy-ca")
    names = [
        "localhost", "karmada-apiserver", f"{AGGREGATED_SERVICE}.karmada-system.svc",
        f"{AGGREGATED_SERVICE}.karmada-system.svc.cluster.local",
        "karmada-webhook.karmada-system.svc",
    ]  # fmt: skip
    sans = ",".join([*(f"DNS:{name}" for name in names), "IP:127.0.0.1"])
    leaf("server", "/CN=karmada-apiserver", "ca",
         f"extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={sans}\n")  # fmt: skip
    leaf("admin", "/O=system:masters/CN=system:admin", "ca", "extendedKeyUsage=clientAuth\n")
    leaf("front-proxy-client", "/CN=front-proxy-client", "front-proxy-ca",
         "extendedKeyUsage=clientAuth\n")  # fmt: skip
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key")
    openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")
    for path in pki.glob("*.key"):
        path.chmod(0o600)
