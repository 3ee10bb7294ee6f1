"""`gridplace plan`: the table and JSON outputs on the shipped example, and clean errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gridplace_operator.cli import main
from gridplace_operator.placement_commands import POLICIES
from gridplace_placement.plan import Plan
from gridplace_placement.problem import load_problem
from gridplace_placement.solver import POLICIES as SOLVER_POLICIES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plan-small.yaml"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_policy_choices_match_the_solver() -> None:
    assert POLICIES == SOLVER_POLICIES


def test_table_shows_every_model_zone_and_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "plan", str(EXAMPLE))
    assert code == 0
    problem = load_problem(EXAMPLE)
    for model in problem.models:
        assert f"{model.name}: " in out
        for zone in model.demand:
            assert f"  {zone} " in out
    assert "traffic split" in out
    assert "policy gridplace  status " in out
    assert "gCO2/h" in out and "gap " in out


@pytest.mark.parametrize("policy", ["gridplace", "latency-nearest", "lowest-carbon"])
def test_json_is_a_plan_within_capacity_and_demand(
    capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    code, out, _ = _run(capsys, "plan", str(EXAMPLE), "--output", "json", "--policy", policy)
    assert code == 0
    plan = Plan.model_validate_json(out)
    assert plan.policy == policy
    problem = load_problem(EXAMPLE)
    models = {m.name: m for m in problem.models}
    used: dict[tuple[str, str], int] = {}
    for pool in plan.pools:
        gpus = pool.replicas * models[pool.model].profiles[pool.gpu_type].gpus_per_replica
        used[(pool.region, pool.gpu_type)] = used.get((pool.region, pool.gpu_type), 0) + gpus
    capacity = {(r.name, g): n for r in problem.regions for g, n in r.gpus.items()}
    assert used
    for key, gpus in used.items():
        assert gpus <= capacity.get(key, 0), key
    for zone in plan.zones:
        routed = sum(
            r.rate_rps for r in plan.routes if (r.model, r.zone) == (zone.model, zone.zone)
        )
        assert routed + zone.unserved_rps == pytest.approx(models[zone.model].demand[zone.zone])


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = _run(capsys, "plan", str(tmp_path / "absent.yaml"))
    assert code == 2 and out == ""
    assert f"file not found: {tmp_path / 'absent.yaml'}" in err


def test_invalid_yaml_names_the_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n  {name: a\n")
    code, _, err = _run(capsys, "plan", str(bad))
    assert code == 2
    assert "is not valid YAML" in err and "line 3" in err


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "carbonIntensity: 380",
            "carbonIntensity: -380",
            "regions.0.carbonIntensity: Input should be greater than or equal to 0 (got -380)",
        ),
        (
            "us-east: {us-east-1: 5,",
            "us-east: {mars-1: 5,",
            "rttMs['us-east']: unknown region 'mars-1'",
        ),
        ("sloP95TtftSeconds: 0.8", "sloP95TtftSeconds: fast", "sloP95TtftSeconds: Input should be"),
    ],
)
def test_invalid_problem_names_field_and_value(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = EXAMPLE.read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new, 1))
    code, out, err = _run(capsys, "plan", str(bad))
    assert code == 2 and out == ""
    assert "invalid problem" in err
    assert message in err


def test_the_installed_command_reports_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("regions: []\nmodels: []\nrttMs: {}\n")
    result = subprocess.run(
        [str(Path(sys.executable).with_name("gridplace")), "plan", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2
    assert "regions: Tuple should have at least 1 item" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "gpus: {NVIDIA-H100-80GB-HBM3: 8}}\n  - {name: eu-central-1",
            "gpus: {NVIDIA-H100-80GB-HMB3: 8}}\n  - {name: eu-central-1",
            "regions.1.gpus: unknown GPU product 'NVIDIA-H100-80GB-HMB3' (did you mean"
            " 'NVIDIA-H100-80GB-HBM3'?)",
        ),
        (
            "{NVIDIA-H100-80GB-HBM3: 2.5,",
            "{H100: 2.5,",
            "regions.0.gpuHourPriceUsd: unknown GPU product 'H100' (did you mean"
            " 'NVIDIA-H100-80GB-HBM3'?)",
        ),
        (
            "gpuType: NVIDIA-H100-80GB-HBM3, replicas: 3",
            "gpuType: nvidia-h100-80gb-hbm3, replicas: 3",
            "current.0.gpuType: unknown GPU product 'nvidia-h100-80gb-hbm3' (did you mean"
            " 'NVIDIA-H100-80GB-HBM3'?)",
        ),
    ],
)
def test_a_misspelled_gpu_product_is_an_error_not_lost_capacity(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = EXAMPLE.read_text()
    assert old in text
    bad = tmp_path / "typo.yaml"
    bad.write_text(text.replace(old, new, 1))
    code, out, err = _run(capsys, "plan", str(bad))
    assert code == 2 and out == ""
    known = "; known: NVIDIA-A100-SXM4-40GB, NVIDIA-H100-80GB-HBM3, NVIDIA-L40S"
    assert err.splitlines() == [
        f"gridplace plan: error: {bad}: invalid problem",
        f"  {message}{known}",
    ]


def test_a_gpu_product_only_the_files_own_profiles_know_is_accepted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    problem = load_problem(EXAMPLE)
    h100 = problem.models[0].profiles["NVIDIA-H100-80GB-HBM3"]
    custom = h100.model_copy(update={"gpu_type": "ACME-X1"}).model_dump(by_alias=True)
    raw = problem.model_dump(by_alias=True, mode="json")
    raw["models"][1].update(gpuTypes=["ACME-X1"], profiles={"ACME-X1": custom}, profile=None)
    raw["regions"][0]["gpus"]["ACME-X1"] = 4
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, out, _ = _run(capsys, "plan", str(path), "--output", "json")
    assert code == 0
    plan = Plan.model_validate_json(out)
    assert {p.gpu_type for p in plan.pools if p.model == "mistral-7b-code"} == {"ACME-X1"}


def test_a_negative_price_is_noted_on_stderr(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "negative.yaml"
    path.write_text(
        EXAMPLE.read_text().replace("powerPriceUsdPerMwh: 95", "powerPriceUsdPerMwh: -12.5")
    )
    code, out, err = _run(capsys, "plan", str(path), "--output", "json")
    assert code == 0
    Plan.model_validate_json(out)  # stdout stays a plan
    assert err.splitlines() == [
        "gridplace plan: note: region eu-central-1 has a negative power price (-12.5 USD/MWh);"
        " the solver and the plan's costs count it as 0 (free power, never a reason for more"
        " replicas)"
    ]


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """stderr of a command line argparse refuses, which exits 2."""
    with pytest.raises(SystemExit) as stopped:
        main(list(argv))
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err


def test_kubernetes_manifests_are_named_and_sent_to_a_cluster(
    capsys: pytest.CaptureFixture[str],
) -> None:
    regions = ROOT / "examples" / "regions.yaml"
    code, out, err = _run(capsys, "plan", str(regions))
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith(
        f"gridplace plan: error: {regions} holds Kubernetes objects (Region us-east-1,"
        " Region us-west-1, Region eu-central-1 and 3 more), which are applied to a cluster"
        f" (kubectl apply -f {regions})"
    )
    assert "takes a placement problem file instead: models, regions and rttMs" in line
    assert "docs/placement.md" in line and "examples/plan-small.yaml" in line


def test_several_documents_are_not_one_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    two = tmp_path / "two.yaml"
    two.write_text(EXAMPLE.read_text() + "\n---\n" + EXAMPLE.read_text())
    code, _, err = _run(capsys, "plan", str(two))
    assert code == 2
    assert "a placement problem is one YAML mapping of models, regions and rttMs" in err
    assert "(2 YAML documents;" in err


def test_a_directory_is_named_as_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = _run(capsys, "plan", str(tmp_path))
    assert code == 2 and out == ""
    assert (
        err == f"gridplace plan: error: {tmp_path} is a directory, not a placement problem file\n"
    )


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan"])
def test_a_time_limit_that_is_not_seconds_names_the_flag_and_what_it_wants(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    err = _usage_error(capsys, "plan", str(EXAMPLE), "--time-limit", value)
    assert err.startswith("usage: gridplace plan ")
    assert err.splitlines()[-1] == (
        f"gridplace plan: error: argument --time-limit: expected a number of seconds above 0,"
        f" got '{value}'"
    )
    assert "_positive" not in err


def test_a_misspelt_flag_shows_the_usage_of_plan_and_the_flag_meant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _usage_error(capsys, "plan", str(EXAMPLE), "--time-limt", "3")
    assert err.startswith("usage: gridplace plan ")
    assert "COMMAND" not in err  # not the top-level usage
    assert err.splitlines()[-1] == (
        "gridplace plan: error: unrecognized arguments: --time-limt (did you mean --time-limit?) 3"
    )
    top = _usage_error(capsys, "--verbose")
    assert top.startswith("usage: gridplace [-h] [--version] COMMAND")


def test_a_zone_with_demand_left_unserved_does_not_read_slo_yes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = EXAMPLE.read_text()
    old = "demand: {us-east: 40,"
    assert old in text
    path = tmp_path / "short.yaml"
    path.write_text(text.replace(old, "demand: {us-east: 3000,", 1))
    code, out, _ = _run(capsys, "plan", str(path))
    assert code == 0
    header = next(line for line in out.splitlines() if "user zone" in line)
    assert header.split()[:5] == ["user", "zone", "demand", "unserved", "p95"]
    row = next(line for line in out.splitlines() if line.startswith("  us-east "))
    zone, demand, unserved, _p95, slo, *_ = row.split()
    plan = Plan.model_validate_json(_run(capsys, "plan", str(path), "--output", "json")[1])
    outcome = next(z for z in plan.zones if z.zone == "us-east" and z.model == "llama-8b-chat")
    assert outcome.unserved_rps > 1000  # the premise: most of it cannot be served
    assert (zone, float(demand), slo) == ("us-east", 3000.0, "NO")
    assert float(unserved) == pytest.approx(outcome.unserved_rps, abs=0.01)
    verdicts = {
        (cells[1], cells[2], cells[4])
        for cells in (line.split() for line in out.splitlines())
        if len(cells) > 4 and cells[0] in {"us-east", "us-west", "eu-central", "ap-northeast"}
    }
    assert ("0.00", "yes") in {(unserved, slo) for _, unserved, slo in verdicts}
    assert all(slo == "NO" for _, unserved, slo in verdicts if float(unserved) > 0)
