"""`gridplace simulate`: bad input ends with one line naming the file or field, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

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
