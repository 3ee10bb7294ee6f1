"""Building blocks shared by the gridplace API kinds.

Every model is a pydantic v2 model whose JSON Schema becomes the CRD's OpenAPI schema (see
`gridplace_operator.api.crdgen`). Cross-field rules are declared once as `CelRule`s: the CRD carries
them as `x-kubernetes-validations`, and the models' validators check the same rule in Python with
the same message, so the operator can name the broken rule in a `Ready=False` condition.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel, to_snake

GROUP = "gridplace.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Names end up in child object names (`<deployment>-<region>`), Services and label values, so
# they must be DNS-1035 labels: lowercase, start with a letter, at most 63 characters together.
DNS_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# Label values such as `nvidia.com/gpu.product` (e.g. NVIDIA-H100-80GB-HBM3).
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"


def is_dns_label(value: str, max_length: int = 63) -> bool:
    return len(value) <= max_length and re.fullmatch(DNS_LABEL_PATTERN, value) is not None


Name = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
GpuType = Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_VALUE_PATTERN)]
ShortText = Annotated[str, Field(max_length=253)]


@dataclass(frozen=True)
class CelRule:
    """A cross-field rule: CEL for the API server, a Python predicate for the operator.

    `check` receives the validated model and returns True when the rule holds; `field_path` is
    relative to the object the rule sits on and names the field the error is reported against;
    `values` shows the offending values in the operator's message. The API server's message is
    the static one: a CEL `messageExpression` that formats values costs more than the API
    server's per-CRD CEL budget allows.
    """

    rule: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None
    values: Callable[[Any], str] | None = None

    def explain(self, model: Any) -> str:
        return f"{self.message} ({self.values(model)})" if self.values else self.message

    def to_schema(self) -> dict[str, str]:
        entry = {"rule": self.rule, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        return entry


def object_name_rule(max_length: int) -> CelRule:
    """metadata.name is a DNS-1035 label short enough to prefix the names of child objects."""
    return CelRule(
        rule=f"self.metadata.name.size() <= {max_length}"
        f" && self.metadata.name.matches('{DNS_LABEL_PATTERN}')",
        message=(
            f"metadata.name must be a DNS-1035 label of at most {max_length} characters"
            " (it becomes part of child object names)"
        ),
        values=lambda o: f'got "{o.metadata.name}"',
        check=lambda o: is_dns_label(o.metadata.name, max_length),
    )


def list_map(*keys: str) -> dict[str, Any]:
    """`json_schema_extra` for a list of named objects merged by `keys` (server-side apply)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


LIST_SET: dict[str, Any] = {"x-kubernetes-list-type": "set"}
LIST_ATOMIC: dict[str, Any] = {"x-kubernetes-list-type": "atomic"}


def default_instance(model: type[ApiModel]) -> dict[str, Any]:
    """`json_schema_extra` for an optional object field: when omitted, the API server stores the
    model's defaults in full (a bare `{}` would not pass the object's CEL rules)."""
    return {"default": _without_empty_lists(model().to_api())}


def _without_empty_lists(value: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _without_empty_lists(v) if isinstance(v, dict) else v
        for k, v in value.items()
        if v != []
    }


def _add_cel_rules(schema: dict[str, Any], model: type[Any]) -> None:
    rules: tuple[CelRule, ...] = getattr(model, "cel_rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [r.to_schema() for r in rules]


class ApiModel(BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields rejected.

    A subclass lists its cross-field rules in `cel_rules`; they go into its schema and are
    checked after field validation.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra=_add_cel_rules,
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @model_validator(mode="after")
    def _cel_rules_hold(self) -> Self:
        problems = [*self._duplicate_list_keys(), *(r.explain(self) for r in self.broken_rules())]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _duplicate_list_keys(self) -> list[str]:
        """What the API server rejects as `Duplicate value` in map- and set-typed lists."""
        problems = []
        for name, field in type(self).model_fields.items():
            extra = field.json_schema_extra
            items = getattr(self, name)
            if not isinstance(extra, dict) or not isinstance(items, list):
                continue
            list_type = extra.get("x-kubernetes-list-type")
            if list_type == "map":
                keys = [str(k) for k in extra["x-kubernetes-list-map-keys"]]  # type: ignore[union-attr]
                what = "/".join(keys)
                seen = [tuple(getattr(i, to_snake(k)) for k in keys) for i in items]
            elif list_type == "set":
                what = "entry"
                seen = [(i,) for i in items]
            else:
                continue
            dupes = sorted({key for key in seen if seen.count(key) > 1})
            if dupes:
                shown = ", ".join("/".join(map(str, key)) for key in dupes)
                problems.append(f"{field.alias or name}: duplicate {what} {shown}")
        return problems

    def broken_rules(self) -> list[CelRule]:
        """The rules declared on this model (not on nested ones) that this instance breaks."""
        return [r for r in self.cel_rules if not r.check(self)]

    def to_api(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals omitted."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ObjectMeta(BaseModel):
    """The part of `metadata` gridplace reads; everything else passes through untouched."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class SecretKeyRef(ApiModel):
    """A key of a Secret."""

    name: Name = Field(description="Name of the Secret.")
    key: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="Key within the Secret's data."
    )
    namespace: Name | None = Field(
        default=None,
        description=(
            "Namespace of the Secret. Defaults to the namespace gridplace runs in for"
            " cluster-scoped objects, and to the object's own namespace otherwise."
        ),
    )


class SecretRef(ApiModel):
    """A whole Secret."""

    name: Name = Field(description="Name of the Secret.")
    namespace: Name | None = Field(
        default=None,
        description="Namespace of the Secret. Defaults to the namespace gridplace runs in.",
    )


class ConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap."""

    name: Name = Field(description="Name of the ConfigMap.")
    key: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="Key within the ConfigMap's data."
    )
    namespace: Name | None = Field(
        default=None,
        description="Namespace of the ConfigMap. Defaults to the namespace gridplace runs in.",
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One aspect of the object's state, following the Kubernetes condition conventions."""

    type: Annotated[str, Field(min_length=1, max_length=316)] = Field(
        description="Condition type, e.g. Ready."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]\w*$")] = Field(
        description="One CamelCase word for machines, e.g. InsufficientCapacity."
    )
    message: Annotated[str, Field(max_length=32768)] = Field(
        default="", description="What happened and what to do, for people."
    )
    last_transition_time: datetime = Field(
        description="When status last changed (not when the condition was last written)."
    )
    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="metadata.generation this condition was computed from."
    )


def _field_path(parts: tuple[int | str, ...]) -> str:
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part:
            path += f".{part}" if path else part
    return path


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    """One `path.to.field: message` per problem, `; `-separated, for conditions and Events."""
    lines = []
    for item in error.errors():
        path = _field_path((prefix, *item["loc"]))
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        else:
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] not in {"value_error", "missing"}:
                message = f"{message} (got {item['input']!r})"
        lines.append(f"{path}: {message}" if path else message)
    return "; ".join(lines)
