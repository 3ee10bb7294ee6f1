"""`gridplace-cluster`: build, start, inspect and stop the local Kubernetes control plane."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from kubernetes.client import CoreV1Api

from gridplace_e2e.cluster.build import BuildError, ensure_binaries
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
    commands.add_parser("build", help="build the cluster binaries that are not cached yet")
    up = commands.add_parser("up", help="start the cluster (idempotent) and create its GPU nodes")
    up.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY, help="topology YAML file")
    up.add_argument(
        "--kubeconfig", type=Path, default=None,
        help="where to write the kubeconfig (default <workdir>/clusters/<name>/kubeconfig.yaml)",
    )  # fmt: skip
    commands.add_parser("down", help="stop every process of the cluster and delete its state")
    commands.add_parser("status", help="what runs, the kubeconfig path and the Prometheus URL")
    commands.add_parser("inventory", help="GPU nodes by region and product, from the API server")
    args = parser.parse_args(argv)

    progress = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    kubeconfig = getattr(args, "kubeconfig", None)
    try:
        cluster = LocalCluster(args.name, args.workdir, kubeconfig=kubeconfig, progress=progress)
        if args.command == "build":
            binaries = ensure_binaries(progress)
            print(f"binaries in {binaries.bin_dir}")
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
    except (BuildError, ClusterError, TopologyError) as error:
        print(f"gridplace-cluster {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
