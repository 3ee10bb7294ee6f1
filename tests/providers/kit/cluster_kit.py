"""Helpers of the tests that start local clusters (one cluster or a fleet): a plain GPU workload
and what local processes listen on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gridplace_e2e.cluster.topology import GPU_RESOURCE, REGION_LABEL

# 127.0.0.1 and ::1, as /proc/net/tcp and tcp6 write them.
LOOPBACK = frozenset({"0100007F", "00000000000000000000000001000000"})


def gpu_deployment(name: str, region: str, replicas: int, gpus: int = 1) -> dict[str, Any]:
    """A Deployment of `replicas` pods asking for `gpus` GPUs each, on the region's nodes."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {REGION_LABEL: region},
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:v0.10.0",
                            "resources": {"limits": {GPU_RESOURCE: str(gpus)}},
                        }
                    ],
                },
            },
        },
    }


def listening_addresses(pids: set[int]) -> set[str]:
    """host:port (hex, as the kernel writes it) of every TCP socket these processes listen on."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = fd.readlink().as_posix()
            except OSError:
                continue
            if match := re.fullmatch(r"socket:\[(\d+)\]", target):
                inodes.add(match.group(1))
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(fields[1])
    return found


def is_loopback(address: str) -> bool:
    return address.split(":", maxsplit=1)[0] in LOOPBACK
