"""`gridplace-cluster`: build, start, inspect and stop the local Kubernetes control plane, and the
local Karmada fleet (`fleet up|down|status`: Karmada plus kwok-backed member clusters)."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from kubernetes.client import CoreV1Api

from gridplace_e2e.cluster.build import BuildError, ensure_binaries, ensure_karmada_binaries
from gridplace_e2e.cluster.fleet import DEFAULT_FLEET_NAME, LocalFleet
from gridplace_e2e.cluster.local import (
    DEFAULT_NAME,
    ClusterError,
    LocalCluster,
    api_client,
    default_root,
)
from gridplace_e2e.cluster.topology import (
    DEFAULT_TOPOLOGY,
    GPU_RESOURCE,
    PRODUCT_LABEL,
    REGION_LABEL,
    TopologyError,
    load_topology,
)


def gpu_inventory(cluster: LocalCluster) -> str:
    """GPUs by region and product, as the API server reports the nodes' allocatable resources."""
    api = CoreV1Api(api_client(cluster.kubeconfig))
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for node in api.list_node().items:
        labels = (node.metadata and node.metadata.labels) or {}
        gpus = int(((node.status and node.status.allocatable) or {}).get(GPU_RESOURCE, "0"))
        if gpus:
            entry = totals[labels.get(REGION_LABEL, "?"), labels.get(PRODUCT_LABEL, "?")]
            entry[0] += 1
            entry[1] += gpus
    rows = [f"{'region':<16} {'gpu product':<24} {'nodes':>5} {'gpus':>5}"]
    for (region, product), (nodes, gpus) in sorted(totals.items()):
        rows.append(f"{region:<16} {product:<24} {nodes:>5} {gpus:>5}")
    all_nodes = sum(n for n, _ in totals.values())
    all_gpus = sum(g for _, g in totals.values())
    rows.append(f"{'total':<41} {all_nodes:>5} {all_gpus:>5}")
    return "\n".join(rows)


def run_fleet(fleet: LocalFleet, command: str) -> int:
    if command == "up":
        fleet.up()
        print(fleet.status().describe())
        print(f"use it:      export KUBECONFIG={fleet.kubeconfig}; kubectl get clusters")
    elif command == "down":
        fleet.down()
        print(f"fleet {fleet.name} is down")
    else:
        status = fleet.status()
        print(status.describe())
        return 0 if status.running else 3
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gridplace-cluster", description=__doc__)
    parser.add_argument(
        "--name", default=DEFAULT_NAME, help=f"cluster name (default {DEFAULT_NAME})"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None,
        help=f"root folder for cluster state (default {default_root()}, or $GRIDPLACE_STATE_DIR)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "build", help="build the binaries (cluster and fleet, Karmada's too) not cached yet"
    )
    up = commands.add_parser("up", help="start the cluster (idempotent) and create its GPU nodes")
    up.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY, help="topology YAML file")
    up.add_argument(
        "--kubeconfig", type=Path, default=None,
        help="where to write the kubeconfig (default <workdir>/clusters/<name>/kubeconfig.yaml)",
    )  # fmt: skip
    commands.add_parser("down", help="stop every process of the cluster and delete its state")
    commands.add_parser("status", help="what runs, the kubeconfig path and the Prometheus URL")
    commands.add_parser("inventory", help="GPU nodes by region and product, from the API server")
    fleet = commands.add_parser(
        "fleet",
        help="the local Karmada fleet: Karmada's control plane and member clusters eu, us, ap",
        description="The local Karmada fleet: Karmada's own etcd and API server with its"
        " aggregated API server, webhook, controller manager and scheduler, plus one kwok-backed"
        " member cluster per member (topologies e2e/topologies/fleet-*.yaml), joined in Push"
        " mode. Everything binds to 127.0.0.1; state lives in <workdir>/fleets/<fleet>/.",
    )
    fleet.add_argument(
        "fleet_command", choices=["up", "down", "status"],
        help="up: start what is not running and join the members (idempotent); down: stop"
        " every process of the fleet and delete its state; status: what runs, the kubeconfigs",
    )  # fmt: skip
    fleet.add_argument(
        "--fleet", default=DEFAULT_FLEET_NAME,
        help=f"fleet name (default {DEFAULT_FLEET_NAME}); members are <fleet>-<member>",
    )  # fmt: skip
    fleet.add_argument(
        "--prometheus", action="store_true", help="also start Prometheus for each member"
    )
    args = parser.parse_args(argv)

    progress = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    kubeconfig = getattr(args, "kubeconfig", None)
    try:
        cluster = LocalCluster(args.name, args.workdir, kubeconfig=kubeconfig, progress=progress)
        if args.command == "build":
            binaries = ensure_binaries(progress)
            karmada = ensure_karmada_binaries(progress)
            print(f"binaries in {binaries.bin_dir}, Karmada's in {karmada.scheduler.parent}")
        elif args.command == "up":
            cluster.up(load_topology(args.topology))
            print(cluster.status().describe())
            print(
                f"use it:      export KUBECONFIG={cluster.kubeconfig}"
                f" PATH={cluster.binaries.bin_dir}:$PATH; kubectl get nodes"
            )
        elif args.command == "down":
            cluster.down()
            print(f"cluster {args.name} is down")
        elif args.command == "status":
            status = cluster.status()
            print(status.describe())
            return 0 if status.api_server_ready and status.prometheus_ready else 3
        elif args.command == "inventory":
            print(gpu_inventory(cluster))
        elif args.command == "fleet":
            return run_fleet(
                LocalFleet(args.fleet, args.workdir, progress=progress, prometheus=args.prometheus),
                args.fleet_command,
            )
    except (BuildError, ClusterError, TopologyError) as error:
        print(f"gridplace-cluster {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
