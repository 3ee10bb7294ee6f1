"""Runs the Argo CD health checks that gitops/argocd/argocd-cm-health.yaml ships, in a real Lua
interpreter (lupa), the way Argo CD does: the object as the global `obj`, a table returned."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from helmchart import ROOT
from lupa import LuaRuntime

HEALTH_CONFIG = ROOT / "gitops" / "argocd" / "argocd-cm-health.yaml"


def scripts() -> dict[str, str]:
    """Kind -> Lua source, from the keys `resource.customizations.health.<group>_<kind>`."""
    data: dict[str, str] = yaml.safe_load(HEALTH_CONFIG.read_text())["data"]
    prefix = "resource.customizations.health.gridplace.dev_"
    return {key.removeprefix(prefix): lua for key, lua in data.items() if key.startswith(prefix)}


def health(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(status, message) that Argo CD would show for `obj`."""
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(dict(obj), recursive=True)
    result: Any = lua.execute(scripts()[obj["kind"]])
    return str(result["status"]), str(result["message"])
