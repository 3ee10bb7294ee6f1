"""An InferenceDeployment as the operator reads it: who it is (`IdepRef`, the one key every
part of the operator uses), and its parsed spec or why it cannot be planned (`Rejection`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gridplace_operator.api.common import describe_validation_error
from gridplace_operator.api.conditions import Reason
from gridplace_operator.api.inference_deployment import InferenceDeploymentSpec


@dataclass(frozen=True)
class IdepRef:
    namespace: str
    name: str

    @property
    def key(self) -> str:
        """The model's name inside the joint placement problem (unique across namespaces)."""
        return f"{self.namespace}/{self.name}"

    @classmethod
    def of_key(cls, key: str) -> IdepRef:
        """The reference a placement model name (`key`) stands for."""
        namespace, name = key.split("/", 1)
        return cls(namespace, name)


@dataclass(frozen=True)
class Rejection:
    """Why an InferenceDeployment could not enter the problem."""

    reason: Reason
    message: str


def parse_spec(body: Mapping[str, Any]) -> InferenceDeploymentSpec | Rejection:
    try:
        return InferenceDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        return Rejection(Reason.INVALID_SPEC, describe_validation_error(err, "spec"))
