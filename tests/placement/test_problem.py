from typing import Any

import pytest
from pydantic import ValidationError

from gridplace_placement.problem import Problem, load_problem

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-40GB"


def problem_data() -> dict[str, Any]:
    return {
        "models": [
            {
                "name": "chat",
                "profile": "meta-llama/Meta-Llama-3.1-8B-Instruct",
                "gpuTypes": [H100, A100],
                "sloP95TtftSeconds": 1.0,
                "demand": {"us": 20.0},
            }
        ],
        "regions": [
            {
                "name": "us-east-1",
                "gpus": {H100: 8, A100: 8},
                "carbonIntensity": 400,
                "powerPriceUsdPerMwh": 50,
            }
        ],
        "rttMs": {"us": {"us-east-1": 10}},
    }


def test_valid_problem_resolves_catalogue_profiles() -> None:
    problem = Problem.model_validate(problem_data())
    model = problem.models[0]
    assert set(model.profiles) == {H100, A100}
    assert model.profiles[H100].gpus_per_replica == 1
    assert model.replica_model(H100).slots > model.replica_model(A100).slots


def test_example_file_loads() -> None:
    problem = load_problem("examples/plan-small.yaml")
    assert problem.models and problem.regions


def mutate(path: list[str | int], value: Any) -> dict[str, Any]:
    data = problem_data()
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (["regions", 0, "gpus"], {H100: -1}, "gpus"),
        (["rttMs"], {"us": {"mars-1": 5}}, "'mars-1'"),
        (["models", 0, "demand"], {"eu": 3.0}, "zone 'eu' has demand 3.0 but no rttMs"),
        (["models", 0, "gpuTypes"], ["NVIDIA-L40S"], "no region has any of these GPU types"),
        (["models", 0, "minReplicas"], 5, "minReplicas=5 exceeds maxReplicas=2"),
        (["models", 0, "profile"], "no/such-model", "profile='no/such-model'"),
        (["models", 0, "gpuTypes"], ["NVIDIA-B200"], "no performance profile for 'NVIDIA-B200'"),
        (["models", 0, "tpotTargetSeconds"], 0.001, "tpotTargetSeconds=0.001"),
        (["regions", 0, "pue"], 0.5, "pue"),
        (["models", 0, "forbiddenRegions"], ["nowhere"], "unknown region 'nowhere'"),
    ],
)
def test_invalid_data_names_field_and_value(path: list[str | int], value: Any, needle: str) -> None:
    data = mutate(path, value)
    data["models"][0].setdefault("maxReplicas", 2)
    with pytest.raises(ValidationError) as err:
        Problem.model_validate(data)
    assert needle in str(err.value)


def test_duplicate_region_is_rejected() -> None:
    data = problem_data()
    data["regions"].append(dict(data["regions"][0]))
    with pytest.raises(ValidationError, match="duplicate name 'us-east-1'"):
        Problem.model_validate(data)


def test_current_placement_must_name_known_model() -> None:
    data = problem_data()
    data["current"] = [{"model": "ghost", "region": "us-east-1", "gpuType": H100, "replicas": 1}]
    with pytest.raises(ValidationError, match="unknown model 'ghost'"):
        Problem.model_validate(data)
