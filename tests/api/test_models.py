"""The API models: examples validate, defaults fill in, every invalid case names field and rule."""

from __future__ import annotations

import csv
from typing import Any

import pytest
import yaml
from api_cases import BAD, EXAMPLES, IDEP, REGION, Bad, all_rules, example_documents, merged
from pydantic import ValidationError

from gridplace_e2e.public_data import RTT_MATRIX as SCENARIO_RTT
from gridplace_operator.api import (
    InferenceDeployment,
    Region,
    describe_validation_error,
    inference_deployment,
)
from gridplace_operator.api.common import ApiModel

KINDS: dict[str, type[ApiModel]] = {"InferenceDeployment": InferenceDeployment, "Region": Region}


def parse(body: dict[str, Any]) -> ApiModel:
    return KINDS[body["kind"]].model_validate(body)


@pytest.mark.parametrize(
    ("file", "body"), example_documents(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_example_validates_and_round_trips(file: str, body: dict[str, Any]) -> None:
    obj = parse(body)
    again = parse(obj.to_api())
    assert again == obj
    # What a user wrote comes back unchanged (defaults only add keys).
    assert _contains(obj.to_api(), body), file


def _contains(big: Any, small: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(_contains(big.get(k), v) for k, v in small.items())
    if isinstance(small, list):
        return len(big) == len(small) and all(
            _contains(b, s) for b, s in zip(big, small, strict=True)
        )
    return bool(big == small)


def test_examples_cover_both_kinds_and_every_placement_mode() -> None:
    docs = [body for _, body in example_documents()]
    regions = [Region.model_validate(d) for d in docs if d["kind"] == "Region"]
    ideps = [
        InferenceDeployment.model_validate(d) for d in docs if d["kind"] == "InferenceDeployment"
    ]
    assert len(regions) >= 6 and len(ideps) >= 3
    assert {d.spec.placement.mode for d in ideps} == {"Enforce", "Advise"}


def test_example_regions_carry_the_scenario_rtts() -> None:
    with SCENARIO_RTT.open() as handle:
        rows = list(csv.reader(handle))
    matrix = {r[0]: dict(zip(rows[0][1:], map(float, r[1:]), strict=True)) for r in rows[1:]}
    zone_region = {
        "us-east": "us-east-1",
        "us-west": "us-west-1",
        "eu-central": "eu-central-1",
        "ap-northeast": "ap-northeast-1",
        "ap-southeast": "ap-southeast-1",
        "au-southeast": "ap-southeast-2",
    }
    docs = yaml.safe_load_all((EXAMPLES / "regions.yaml").read_text())
    regions = [Region.model_validate(d) for d in docs if d]
    assert sorted(r.metadata.name for r in regions) == sorted(zone_region.values())
    for r in regions:
        assert {e.zone for e in r.spec.rtt} == set(zone_region)
        for entry in r.spec.rtt:
            assert entry.ms == matrix[zone_region[entry.zone]][r.metadata.name]


def test_defaults_fill_in_a_minimal_inference_deployment() -> None:
    spec = InferenceDeployment.model_validate(IDEP).spec
    assert spec.model.image == inference_deployment.DEFAULT_IMAGE
    assert spec.model.effective_gpus_per_replica() == 1
    assert (spec.scaling.min_replicas, spec.scaling.max_replicas, spec.scaling.replicas) == (
        1,
        10,
        None,
    )
    assert spec.placement.mode == "Enforce"
    assert spec.placement.availability.regions_needed() == 1
    assert spec.placement.weights.carbon == 1.0
    assert spec.demand.mean_output_tokens == 256


def test_gpus_per_replica_defaults_to_tensor_parallel_size() -> None:
    body = merged(IDEP, {"spec": {"model": {"tensorParallelSize": 4}}})
    assert InferenceDeployment.model_validate(body).spec.model.effective_gpus_per_replica() == 4


def test_region_node_selector_defaults_to_the_region_label() -> None:
    r = Region.model_validate(REGION)
    assert r.node_selector() == {"topology.kubernetes.io/region": "test-region"}
    custom = Region.model_validate(merged(REGION, {"spec": {"nodeSelector": {"dc": "a"}}}))
    assert custom.node_selector() == {"dc": "a"}


def test_survive_region_loss_needs_two_regions() -> None:
    body = merged(IDEP, {"spec": {"placement": {"availability": {"surviveRegionLoss": True}}}})
    assert (
        InferenceDeployment.model_validate(body).spec.placement.availability.regions_needed() == 2
    )


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
def test_invalid_object_is_rejected_naming_field_and_rule(case: Bad) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(case.body)
    text = describe_validation_error(caught.value)
    assert case.message in text
    problem = next(p for p in text.split("; ") if case.message in p)
    assert problem.startswith(case.field) or case.field in problem, problem


def test_error_description_names_value_and_path() -> None:
    body = merged(
        IDEP, {"spec": {"demand": {"static": [{"zone": "us-east", "requestsPerSecond": -2}]}}}
    )
    with pytest.raises(ValidationError) as caught:
        InferenceDeployment.model_validate(body)
    assert describe_validation_error(caught.value) == (
        "spec.demand.static[0].requestsPerSecond:"
        " Input should be greater than or equal to 0 (got -2)"
    )
    with pytest.raises(ValidationError) as caught:
        inference_deployment.ScalingSpec.model_validate({"minReplicas": 3, "maxReplicas": 2})
    assert describe_validation_error(caught.value, "spec.scaling") == (
        "spec.scaling: minReplicas must not exceed maxReplicas (minReplicas=3, maxReplicas=2)"
    )


def test_every_cel_rule_has_an_invalid_case() -> None:
    messages = {case.message for case in BAD}
    uncovered = [
        r.message
        for r in all_rules()
        if not any(r.message in m or m in r.message for m in messages)
    ]
    assert uncovered == []
    assert len(all_rules()) >= 17
