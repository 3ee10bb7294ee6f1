"""`gridplace simulate`: bad input ends with one line naming the file or field, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gridplace_operator.cli import main
from gridplace_placement.scenario.data import DATA_DIR_ENV

PUBLIC = Path(__file__).resolve().parents[2] / "examples" / "scenarios" / "public.yaml"


def test_missing_scenario(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["simulate", str(tmp_path / "nope.yaml"), "--output-dir", str(tmp_path)]) == 2
    assert f"scenario file not found: {tmp_path / 'nope.yaml'}" in capsys.readouterr().err


def test_missing_data_names_the_file_and_the_override(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        ["simulate", str(PUBLIC), "--data-dir", str(tmp_path), "--output-dir", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'carbon_intensity_hourly_2022-2023.csv.gz'}" in err
    assert "--data-dir" in err and DATA_DIR_ENV in err
    assert not (tmp_path / "simulation.json").exists()


def test_data_dir_from_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    assert main(["simulate", str(PUBLIC), "--output-dir", str(tmp_path)]) == 2
    assert f"data directory {tmp_path / 'elsewhere'}" in capsys.readouterr().err


def test_invalid_scenario_names_field_and_value(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(PUBLIC.read_text().replace("utcOffsetHours: 9}", "utcOffsetHours: 19}", 1))
    assert main(["simulate", str(bad), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "invalid scenario" in err
    assert "userZones.3.utcOffsetHours: Input should be less than or equal to 14 (got 19)" in err


H100 = "NVIDIA-H100-80GB-HBM3"


def _two_hour_scenario(root: Path, ci_rows: list[str], **overrides: object) -> Path:
    """One region over two hours; `ci_rows` are the carbon intensity file's data rows."""
    (root / "ci.csv").write_text("\n".join(["datetime_utc,zone,ci", *ci_rows]) + "\n")
    prices = [f"2023-03-01 0{h}:00:00,Z,{p}" for h, p in enumerate([40, -5])]
    (root / "price.csv").write_text("\n".join(["datetime_utc,zone,price", *prices]) + "\n")
    (root / "rtt.csv").write_text("src,r\nr,3\n")
    (root / "shape.csv").write_text("category_model,t_offset_s,total_rate_req_s\nc,0,1\nc,3600,2\n")
    (root / "trace.csv").write_text("ContextTokens,GeneratedTokens\n800,200\n")
    spec: dict[str, object] = {
        "name": "two-hours",
        "period": {"start": "2023-03-01T00:00:00+00:00", "hours": 2},
        "sources": {
            "carbonIntensity": {"file": "ci.csv", "column": "ci"},
            "powerPrice": {"file": "price.csv", "column": "price"},
            "rtt": {"file": "rtt.csv"},
            "demandShape": {"file": "shape.csv", "category": "c"},
            "requestMix": {"file": "trace.csv"},
        },
        "regions": [{"name": "r", "gridZone": "Z", "gpus": {H100: 8}}],
        "userZones": [{"name": "u", "nearRegion": "r", "share": 1, "utcOffsetHours": 0}],
        "models": [
            {
                "name": "m",
                "profile": "meta-llama/Meta-Llama-3.1-8B-Instruct",
                "gpuTypes": [H100],
                "p95TimeToFirstTokenSeconds": 1.0,
                "peakRequestsPerSecond": 10,
            }
        ],
        **overrides,
    }
    path = root / "scenario.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


GOOD_CI = ["2023-03-01T00:00:00Z,Z,300", "2023-03-01T01:00:00+00:00,Z,310"]


def _simulate(capsys: pytest.CaptureFixture[str], path: Path, tmp_path: Path) -> tuple[int, str]:
    code = main(
        ["simulate", str(path), "--output-dir", str(tmp_path / "out"), "--quiet", "--no-bound"]
    )
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("ci_rows", "message"),
    [
        (
            [*GOOD_CI, "2023-03-01 01:00:00,Z,999"],
            "ci.csv, row 4: zone 'Z' has a second ci for 2023-03-01 01:00 UTC: 999, but row 3"
            " gives 310",
        ),
        (
            ["2023-03-01 00:00:00,Z,300", "2023-03-01 01:00:00,Z,"],
            "ci.csv, row 3, column 'ci': empty cell, expected a number",
        ),
        (
            ["2023-03-01 00:00:00,Z,300", "yesterday,Z,1"],
            "ci.csv, row 3, column 'datetime_utc': cannot parse time 'yesterday'",
        ),
    ],
)
def test_bad_data_is_one_line_with_file_row_and_column(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ci_rows: list[str], message: str
) -> None:
    code, err = _simulate(capsys, _two_hour_scenario(tmp_path, ci_rows), tmp_path)
    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith(f"gridplace simulate: error: {tmp_path / 'ci.csv'}")
    assert message in line


def test_a_misspelled_gpu_product_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    regions = [{"name": "r", "gridZone": "Z", "gpus": {"NVIDIA-H100-80GB": 8}}]
    code, err = _simulate(capsys, _two_hour_scenario(tmp_path, GOOD_CI, regions=regions), tmp_path)
    assert code == 2
    assert "invalid scenario" in err
    assert (
        "regions[r].gpus: unknown GPU product 'NVIDIA-H100-80GB' (did you mean"
        " 'NVIDIA-H100-80GB-HBM3'?)"
    ) in err
    assert "Traceback" not in err


def test_times_with_offsets_replay(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _ = _simulate(capsys, _two_hour_scenario(tmp_path, GOOD_CI), tmp_path)
    assert code == 0


def test_more_hours_than_the_scenario_has_is_an_error_saying_how_many(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _two_hour_scenario(tmp_path, GOOD_CI)
    out_dir = tmp_path / "out"
    code = main(["simulate", str(path), "--hours", "100000", "--output-dir", str(out_dir)])
    assert code == 2
    assert capsys.readouterr().err == (
        f"gridplace simulate: error: --hours 100000 is more than the 2 hours of {path}"
        " (period.hours); give at most 2, or leave --hours out to replay them all\n"
    )
    assert not out_dir.exists()  # nothing replayed, nothing written
    assert (
        main(["simulate", str(path), "--hours", "2", "--output-dir", str(out_dir), "--quiet"]) == 0
    )


def test_a_directory_is_named_as_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["simulate", str(tmp_path), "--output-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        f"gridplace simulate: error: {tmp_path} is a directory, not a scenario file\n"
    )


@pytest.mark.parametrize("value", ["two", "0", "1.5"])
def test_hours_that_are_not_a_whole_number_name_the_flag(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["simulate", str(PUBLIC), "--hours", value])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: gridplace simulate ")
    assert err.splitlines()[-1] == (
        f"gridplace simulate: error: argument --hours: expected a whole number of at least 1,"
        f" got '{value}'"
    )
