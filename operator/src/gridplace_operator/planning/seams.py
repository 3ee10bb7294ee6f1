"""The two places a plan meets the clusters it runs on: where the GPUs are (`GpuInventory`) and
where decisions are written (`Actuator`).

`kube.client.Kube` writes; `ClusterGpus` counts the GPUs of the cluster gridplace runs against
and, in a Karmada fleet, of the member clusters its Regions name. The planner knows only these
two interfaces.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Protocol

import urllib3

from gridplace_operator.api.conditions import Reason
from gridplace_operator.kube.client import ApiError, Kube
from gridplace_operator.observe.fleet import fleet_inventory, member_problem
from gridplace_operator.observe.inventory import Inventory, Unavailable, build_inventory
from gridplace_operator.observe.world import World

log = logging.getLogger(__name__)


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
    async def read(
        self, selectors: Mapping[str, Mapping[str, str]], members: Mapping[str, str]
    ) -> Inventory:
        """The GPUs free for gridplace per region (chosen by its node selector), GPU type and
        node; `members` names the member cluster of each region that has one (fleet mode)."""


class ClusterGpus:
    """The GPUs of the cluster gridplace runs against and of its Karmada member clusters.

    The local cluster's: its Nodes as the watch mirrors them, minus the GPUs its pods of other
    owners hold (listed at each re-plan: pods are not watched). A member's: its Nodes and Pods,
    listed through Karmada's cluster proxy at each re-plan; a member Karmada reports not ready
    leaves its regions without GPUs (and says why), one that does not answer while Karmada still
    reports it ready is planned with its last answer.
    """

    def __init__(self, kube: Kube, world: World) -> None:
        self.kube, self.world = kube, world
        # Each member's last answer: a read that fails while Karmada still reports the member
        # Ready plans with it (Karmada's failure threshold decides when a member is lost; one
        # slow answer must not move replicas away and back).
        self._last: dict[str, tuple[list[Any], list[Any]]] = {}

    async def read(
        self, selectors: Mapping[str, Mapping[str, str]], members: Mapping[str, str]
    ) -> Inventory:
        local = {r: s for r, s in selectors.items() if r not in members}
        pods = await self.kube.list_gpu_pods() if local or not members else []
        here = build_inventory(self.world.nodes.values(), pods, local)
        if not members:
            return here
        regions_of: dict[str, list[str]] = defaultdict(list)
        for region, member in sorted(members.items()):
            regions_of[member].append(region)
        read = await asyncio.gather(*(self._member(m) for m in regions_of))
        inventories: dict[str, Inventory] = {}
        unavailable: dict[str, Unavailable] = {}
        for (member, regions), answer in zip(regions_of.items(), read, strict=True):
            if isinstance(answer, Unavailable):
                unavailable.update(dict.fromkeys(regions, answer))
            else:
                nodes, member_pods = answer
                wanted = {r: selectors[r] for r in regions if r in selectors}
                inventories[member] = build_inventory(nodes, member_pods, wanted)
        return fleet_inventory(here, inventories, unavailable)

    async def _member(self, member: str) -> tuple[list[Any], list[Any]] | Unavailable:
        problem = member_problem(member, self.world.members.get(member))
        if problem is not None:
            self._last.pop(member, None)
            return problem
        try:
            nodes = await self.kube.list_member_nodes(member)
            pods = await self.kube.list_gpu_pods(member)
        except (ApiError, OSError, urllib3.exceptions.HTTPError) as err:
            last = self._last.get(member)
            log.warning(
                "member cluster %s: its nodes could not be read (%s); %s",
                member,
                _short(err),
                "planning with its last inventory" if last else "no inventory known yet",
            )
            if last is not None:
                return last
            return Unavailable(
                Reason.MEMBER_NOT_READY,
                f"the nodes of member cluster {member!r} could not be read through Karmada's"
                f" cluster proxy: {_short(err)}",
            )
        self._last[member] = (nodes, pods)
        return nodes, pods


def _short(err: Exception) -> str:
    status = getattr(err, "status", None)
    reason = getattr(err, "reason", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return str(err).splitlines()[0][:200]
