"""Names gridplace writes onto the objects it owns, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIELD_MANAGER = "gridplace"
CONTROLLER_NAME = "gridplace.dev/operator"

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "gridplace"
PART_OF = "app.kubernetes.io/part-of"
INFERENCE_DEPLOYMENT = "gridplace.dev/inference-deployment"
REGION = "gridplace.dev/region"
GPU_TYPE = "gridplace.dev/gpu-type"
# Hash of everything gridplace decided for a child; equal hash = nothing to write.
SPEC_HASH = "gridplace.dev/spec-hash"

# Well-known node labels gridplace reads.
NODE_REGION = "topology.kubernetes.io/region"
NODE_GPU_PRODUCT = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"


def pool_of(child: Mapping[str, Any]) -> tuple[str, str]:
    """(region, GPU type) of a child gridplace owns, read from its labels."""
    found = (child.get("metadata") or {}).get("labels") or {}
    return (found.get(REGION, ""), found.get(GPU_TYPE, ""))
