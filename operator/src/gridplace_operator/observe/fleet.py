"""Member clusters of a Karmada fleet: whether each can hold replicas, and one GPU inventory
across them.

A Region with `spec.cluster` has its nodes in that member; gridplace reads them through Karmada's
cluster proxy and plans with them like the nodes of its own cluster. A member Karmada reports not
ready, or whose nodes cannot be read, makes its regions unavailable: they have no GPUs for the
next plan, which moves their replicas to the regions left. Pure functions over plain objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from gridplace_operator.api.conditions import Reason
from gridplace_operator.observe.inventory import Inventory, Unavailable

Obj = Mapping[str, Any]
# Node names are unique within a member only: in the fleet's inventory they are "member/node".
NODE_NAME_SEPARATOR = "/"


@dataclass(frozen=True)
class MemberState:
    """What gridplace reads of a Karmada `Cluster`: whether Karmada can reach it."""

    name: str
    ready: bool
    message: str

    @classmethod
    def from_api(cls, obj: Obj) -> MemberState:
        conditions = (obj.get("status") or {}).get("conditions") or []
        ready = [c for c in conditions if c.get("type") == "Ready"]
        if not ready:
            return cls(obj["metadata"]["name"], False, "Karmada has not reported on it yet")
        return cls(
            obj["metadata"]["name"],
            ready[0].get("status") == "True",
            str(ready[0].get("message") or ready[0].get("reason") or ""),
        )


def member_problem(name: str, state: MemberState | None) -> Unavailable | None:
    """Why the member cluster `name` cannot take replicas, or None when it can."""
    if state is None:
        return Unavailable(
            Reason.MEMBER_NOT_FOUND,
            f"no Karmada Cluster named {name!r} (spec.cluster names a member of the Karmada"
            " fleet gridplace runs against)",
        )
    if not state.ready:
        detail = f": {state.message}" if state.message else ""
        return Unavailable(
            Reason.MEMBER_NOT_READY, f"Karmada reports member cluster {name!r} not ready{detail}"
        )
    return None


def fleet_inventory(
    local: Inventory,
    members: Mapping[str, Inventory],
    unavailable: Mapping[str, Unavailable],
) -> Inventory:
    """One inventory of the local cluster's regions and every reachable member's; `unavailable`
    names the regions whose member cannot take replicas. A region lives in one cluster, so the
    pools do not overlap; nodes are renamed "member/node"."""
    pools = dict(local.pools)
    nodes_by_region = dict(local.nodes_by_region)
    ceded = {r: dict(by) for r, by in local.ceded.items()}
    nodes = list(local.nodes)
    for member, inventory in sorted(members.items()):
        pools.update(inventory.pools)
        nodes_by_region.update(inventory.nodes_by_region)
        ceded.update({r: dict(by) for r, by in inventory.ceded.items()})
        nodes += [
            replace(n, name=f"{member}{NODE_NAME_SEPARATOR}{n.name}") for n in inventory.nodes
        ]
    return Inventory(
        pools=pools,
        nodes_by_region=nodes_by_region,
        ceded=ceded,
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        unavailable={**local.unavailable, **unavailable},
    )
