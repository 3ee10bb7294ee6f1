"""The two places a plan meets the clusters it runs on: where the GPUs are (`GpuInventory`) and
where decisions are written (`Actuator`).

Today one cluster is both: `kube.client.Kube` writes, and `ClusterGpus` counts the GPUs of its
Nodes (as the watch mirrors them) minus what other owners' pods hold. A fleet of member clusters
is another implementation of the same two interfaces; the planner knows only these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from gridplace_operator.kube.client import Kube
from gridplace_operator.observe.inventory import Inventory, build_inventory
from gridplace_operator.observe.world import World


class Actuator(Protocol):
    """Writes the plan's children, the status of gridplace's objects and Events."""

    async def apply(self, obj: Mapping[str, Any], *, force: bool = True) -> None:
        """Create or update a child (server-side apply); `force=False` for a child not known
        to be gridplace's, which then fails on a conflict instead of taking it over."""

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete a child; one already gone is done."""

    async def apply_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> bool:
        """Write an object's status; False when the object is gone."""

    async def exists(self, kind: str, namespace: str | None, name: str) -> bool:
        """Whether the object still exists (a deletion no watch delivered)."""

    async def event(
        self,
        regarding: Mapping[str, Any],
        *,
        reason: str,
        message: str,
        warning: bool = False,
    ) -> None:
        """Record an Event about an object (best effort)."""


class GpuInventory(Protocol):
    async def read(self, selectors: Mapping[str, Mapping[str, str]]) -> Inventory:
        """The GPUs free for gridplace per region (chosen by its node selector), GPU type and
        node."""


class ClusterGpus:
    """One cluster's GPUs: its Nodes as the watch mirrors them, minus the GPUs its pods of
    other owners hold (listed at each re-plan: pods are not watched)."""

    def __init__(self, kube: Kube, world: World) -> None:
        self.kube, self.world = kube, world

    async def read(self, selectors: Mapping[str, Mapping[str, str]]) -> Inventory:
        pods = await self.kube.list_gpu_pods()
        return build_inventory(self.world.nodes.values(), pods, selectors)
