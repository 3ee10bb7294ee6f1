"""The gridplace API (`gridplace.dev/v1alpha1`), defined once as pydantic models.

The CRDs in `crds/` and the reference in `docs/api.md` are generated from these models.
"""

from gridplace_operator.api.common import (
    API_VERSION,
    GROUP,
    VERSION,
    CelRule,
    Condition,
    describe_validation_error,
)
from gridplace_operator.api.conditions import ConditionType, Reason
from gridplace_operator.api.inference_deployment import (
    InferenceDeployment,
    InferenceDeploymentSpec,
    InferenceDeploymentStatus,
)
from gridplace_operator.api.region import Region, RegionSpec, RegionStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "CelRule",
    "Condition",
    "ConditionType",
    "InferenceDeployment",
    "InferenceDeploymentSpec",
    "InferenceDeploymentStatus",
    "Reason",
    "Region",
    "RegionSpec",
    "RegionStatus",
    "describe_validation_error",
]
