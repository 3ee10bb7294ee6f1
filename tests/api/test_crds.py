"""The generated CRDs: current with the models, structural, documented, and well-formed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from api_cases import ROOT, all_rules
from pydantic import BaseModel, Field

from gridplace_operator import cli
from gridplace_operator.api import crdgen
from gridplace_operator.api.crdgen import KINDS, Kind, SchemaError, structural
from gridplace_operator.api.inference_deployment import PlacementSpec, ScalingSpec

CRDS = ROOT / "crds"
REFERENCE = ROOT / "docs" / "api.md"
# Keys Kubernetes rejects in a structural schema (or that pydantic emits and must be rewritten).
FORBIDDEN_KEYS = {
    "$ref", "$defs", "definitions", "anyOf", "allOf", "oneOf", "not", "title", "const",
    "patternProperties", "uniqueItems", "readOnly", "writeOnly", "examples",
}  # fmt: skip


def test_committed_crds_and_reference_are_current() -> None:
    stale = crdgen.drift(CRDS, REFERENCE)
    assert stale == [], f"run `gridplace crds --reference docs/api.md`; out of date: {stale}"


def test_cli_check_fails_on_drift_and_write_fixes_it(tmp_path: Path) -> None:
    out = tmp_path / "crds"
    assert cli.main(["crds", "--output-dir", str(out), "--check"]) == 1
    assert cli.main(["crds", "--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(k.file_name for k in KINDS)
    assert cli.main(["crds", "--output-dir", str(out), "--check"]) == 0
    path = out / KINDS[0].file_name
    path.write_text(path.read_text().replace("minimum: 1", "minimum: 2", 1))
    assert cli.main(["crds", "--output-dir", str(out), "--check"]) == 1


def _crd(kind: Kind) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CRDS / kind.file_name).read_text())
    return loaded


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schema_is_structural_and_documented(kind: Kind) -> None:
    schema = _crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _nodes(schema):
        assert not FORBIDDEN_KEYS & node.keys(), (path, FORBIDDEN_KEYS & node.keys())
        assert "type" in node, f"{path}: no type"
        if path == ".metadata":
            assert node == {"type": "object"}, "the API server rejects anything else here"
        elif not path.endswith(("[]", "{}")) or node["type"] == "object":
            assert node.get("description"), f"{path}: no description"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("additionalProperties", {}) is not False, path
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(bound, True) is True, f"{path}: {bound} must be boolean in OpenAPI v3"
        if node["type"] == "array":
            assert "maxItems" in node, f"{path}: unbounded list (CEL cost, etcd size)"
            assert node.get("x-kubernetes-list-type") in {"map", "set", "atomic"}, path
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in item["required"], f"{path}: map key {key} must be required"
        bounded = "format" in node or "enum" in node or path in {".apiVersion", ".kind"}
        if node["type"] == "string" and not bounded:
            assert "maxLength" in node, f"{path}: unbounded string"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_status_has_no_defaults_and_spec_objects_default_to_empty(kind: Kind) -> None:
    schema = _crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert all("default" not in node for _, node in _nodes(schema["properties"]["status"]))
    spec = schema["properties"]["spec"]
    if kind is crdgen.INFERENCE_DEPLOYMENT:
        # Omitted objects default to the models' defaults in full, so CEL rules can read them.
        placement = spec["properties"]["placement"]
        assert spec["properties"]["scaling"]["default"] == ScalingSpec().to_api()
        assert PlacementSpec.model_validate(placement["default"]) == PlacementSpec()
        assert "forbiddenRegions" not in placement["default"]
        assert placement["default"]["availability"]["minRegions"] == 1
        for name in ("availability", "weights", "churn"):
            assert placement["properties"][name]["default"] == placement["default"][name]
        assert set(spec["required"]) == {"model", "slo", "demand"}


def _resolve_json_path(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in path.split("[", maxsplit=1)[0].strip(".").split("."):
        node = node["properties"][part] if part != "metadata" else {"type": "object"}
    return node


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_printer_columns_and_scale_point_at_real_fields(kind: Kind) -> None:
    version = _crd(kind)["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names[0] == "Ready" and names[-1] == "Age"
    for column in version["additionalPrinterColumns"]:
        if column["jsonPath"].startswith(".metadata"):
            continue
        node = _resolve_json_path(schema, column["jsonPath"])
        if "[?(" not in column["jsonPath"]:
            assert node["type"] == column["type"], column
    assert version["subresources"]["status"] == {}
    scale = version["subresources"].get("scale")
    assert (scale is not None) == (kind is crdgen.INFERENCE_DEPLOYMENT)
    if scale:
        assert _resolve_json_path(schema, scale["specReplicasPath"])["type"] == "integer"
        assert _resolve_json_path(schema, scale["statusReplicasPath"])["type"] == "integer"
        assert _resolve_json_path(schema, scale["labelSelectorPath"])["type"] == "string"


def test_names_and_scope() -> None:
    idep, region = (_crd(k)["spec"] for k in (crdgen.INFERENCE_DEPLOYMENT, crdgen.REGION))
    assert (idep["group"], idep["scope"], idep["names"]["shortNames"]) == (
        "gridplace.dev",
        "Namespaced",
        ["idep"],
    )
    assert (region["scope"], region["names"]["shortNames"]) == ("Cluster", ["gpr"])
    assert idep["names"]["categories"] == region["names"]["categories"] == ["gridplace"]


def test_every_cel_rule_of_the_models_is_in_the_crds() -> None:
    in_crds = {
        (rule["rule"], rule["message"])
        for kind in KINDS
        for _, node in _nodes(_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        for rule in node.get("x-kubernetes-validations", [])
    }
    in_models = {(r.rule, r.message) for r in all_rules()}
    assert in_crds == in_models
    assert len(in_models) >= 20


class _Union(BaseModel):
    value: int | str = Field(description="either")


class _Exclusive(BaseModel):
    ratio: float = Field(gt=0, lt=1, description="a share")
    labels: dict[str, str] = Field(default_factory=dict, description="labels")
    note: str | None = Field(default=None, max_length=5, description="optional")


def test_structural_rewrites_pydantic_constructs() -> None:
    schema = structural(_Exclusive.model_json_schema())
    ratio = schema["properties"]["ratio"]
    assert (ratio["minimum"], ratio["exclusiveMinimum"], ratio["maximum"]) == (0, True, 1)
    assert ratio["exclusiveMaximum"] is True
    assert schema["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert schema["properties"]["note"] == {
        "type": "string",
        "description": "optional",
        "maxLength": 5,
    }
    assert "additionalProperties" not in schema and "title" not in schema


def test_structural_refuses_real_unions() -> None:
    with pytest.raises(SchemaError, match="only optional values"):
        structural(_Union.model_json_schema())
