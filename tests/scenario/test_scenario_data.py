"""Scenario loading: hourly series, RTT, load shape and token mix, with clear errors on bad data."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from gridplace_placement.scenario import ScenarioSpec, load_scenario
from gridplace_placement.scenario.data import (
    load_hourly,
    load_hourly_shape,
    load_rtt_matrix,
    load_token_mix,
)

START = datetime(2023, 1, 1, tzinfo=UTC)
H100 = "NVIDIA-H100-80GB-HBM3"
PROFILE = "meta-llama/Meta-Llama-3.1-8B-Instruct"


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def _hourly_csv(path: Path, zones: dict[str, list[float]], column: str) -> Path:
    lines = [f"datetime_utc,zone,{column}"]
    for zone, values in zones.items():
        lines += [f"2023-01-01 {h:02d}:00:00,{zone},{v}" for h, v in enumerate(values)]
    return _write(path, "\n".join(lines) + "\n")


def test_hourly_series_reads_the_period_only(tmp_path: Path) -> None:
    path = _hourly_csv(tmp_path / "ci.csv.gz", {"DE": [1, 2, 3, 4], "SG": [9, 9, 9, 9]}, "ci")
    series = load_hourly(path, column="ci", zones={"DE"}, start=START.replace(hour=1), hours=2)
    assert list(series) == ["DE"]
    assert series["DE"].tolist() == [2.0, 3.0]


def test_hourly_series_names_the_missing_hour(tmp_path: Path) -> None:
    path = _hourly_csv(tmp_path / "ci.csv", {"DE": [1, 2]}, "ci")
    with pytest.raises(ValueError, match=r"zone 'DE' has no ci for 1 hour.*2023-01-01 02:00"):
        load_hourly(path, column="ci", zones={"DE"}, start=START, hours=3)


def test_hourly_series_names_a_missing_column(tmp_path: Path) -> None:
    path = _hourly_csv(tmp_path / "ci.csv", {"DE": [1]}, "ci")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['price'\]"):
        load_hourly(path, column="price", zones={"DE"}, start=START, hours=1)


def test_rtt_matrix_requires_every_pair(tmp_path: Path) -> None:
    path = _write(tmp_path / "rtt.csv", "src,a,b\na,1,20\nb,21,2\n")
    assert load_rtt_matrix(path, ["a", "b"]) == {
        "a": {"a": 1.0, "b": 20.0},
        "b": {"a": 21.0, "b": 2.0},
    }
    with pytest.raises(ValueError, match=r"no RTT from 'a' to \['c'\]"):
        load_rtt_matrix(path, ["a", "c"])


def test_load_shape_is_hourly_and_peaks_at_one(tmp_path: Path) -> None:
    rows = ["category_model,t_offset_s,total_rate_req_s"]
    rows += [f"m,{600 * i},{10 if i < 6 else 30}" for i in range(12)]
    rows += ["other,0,1000"]
    path = _write(tmp_path / "shape.csv", "\n".join(rows) + "\n")
    shape = load_hourly_shape(
        path,
        category="m",
        category_column="category_model",
        offset_column="t_offset_s",
        rate_column="total_rate_req_s",
    )
    assert shape.tolist() == pytest.approx([1 / 3, 1.0])


def _scenario(tmp_path: Path, **overrides: object) -> Path:
    _hourly_csv(tmp_path / "ci.csv", {"Z1": [100.0] * 4, "Z2": [500.0] * 4}, "ci_direct_gco2_kwh")
    _hourly_csv(tmp_path / "price.csv", {"Z1": [50.0] * 4, "Z2": [20.0] * 4}, "price_usd_mwh")
    _write(tmp_path / "rtt.csv", "src,r1,r2\nr1,2,80\nr2,81,3\n")
    shape = ["category_model,t_offset_s,total_rate_req_s"]
    shape += [f"c,{3600 * h},{r}" for h, r in enumerate([1, 2, 4, 2])]
    _write(tmp_path / "shape.csv", "\n".join(shape) + "\n")
    _write(tmp_path / "trace.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\nt,100,10\nt,300,30\n")
    spec: dict[str, object] = {
        "name": "tiny",
        "period": {"start": "2023-01-01T00:00:00Z", "hours": 4},
        "sources": {
            "carbonIntensity": {"file": "ci.csv", "column": "ci_direct_gco2_kwh"},
            "powerPrice": {"file": "price.csv", "column": "price_usd_mwh"},
            "rtt": {"file": "rtt.csv"},
            "demandShape": {"file": "shape.csv", "category": "c"},
            "requestMix": {"file": "trace.csv"},
        },
        "regions": [
            {"name": "r1", "gridZone": "Z1", "gpus": {H100: 8}},
            {"name": "r2", "gridZone": "Z2", "gpus": {H100: 8}},
        ],
        "userZones": [
            {"name": "near-r1", "nearRegion": "r1", "share": 3, "utcOffsetHours": 0},
            {"name": "near-r2", "nearRegion": "r2", "share": 1, "utcOffsetHours": 2},
        ],
        "models": [
            {
                "name": "m",
                "profile": PROFILE,
                "gpuTypes": [H100],
                "p95TimeToFirstTokenSeconds": 1,
                "peakRequestsPerSecond": 40,
            }
        ],
    }
    spec.update(overrides)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_scenario_builds_shifted_demand_per_zone(tmp_path: Path) -> None:
    data = load_scenario(_scenario(tmp_path))
    assert data.carbon_g_per_kwh["r2"].tolist() == [500.0] * 4
    assert data.rtt_ms == {"near-r1": {"r1": 2.0, "r2": 80.0}, "near-r2": {"r1": 81.0, "r2": 3.0}}
    assert (data.mean_prompt_tokens, data.mean_output_tokens) == (200.0, 20.0)
    # 3/4 of the peak at zone offset 0, 1/4 with the shape shifted by two hours.
    assert data.demand_rps["m"]["near-r1"].tolist() == pytest.approx([7.5, 15, 30, 15])
    assert data.demand_rps["m"]["near-r2"].tolist() == pytest.approx([10, 5, 2.5, 5])
    assert np.all(data.demand_rps["m"]["near-r1"] <= 30.0)


def test_scenario_rejects_a_zone_near_an_unknown_region(tmp_path: Path) -> None:
    bad = [{"name": "z", "nearRegion": "mars-1", "share": 1, "utcOffsetHours": 0}]
    with pytest.raises(ValidationError, match=r"userZones\[z\]\.nearRegion: 'mars-1'"):
        ScenarioSpec.from_file(_scenario(tmp_path, userZones=bad))


def test_scenario_names_a_missing_data_file(tmp_path: Path) -> None:
    path = _scenario(tmp_path)
    (tmp_path / "rtt.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"rtt\.csv"):
        load_scenario(path)


def test_times_with_a_utc_offset_are_normalised_to_utc(tmp_path: Path) -> None:
    rows = [
        "datetime_utc,zone,ci",
        "2023-01-01T00:00:00+00:00,DE,1",
        "2023-01-01T01:00:00Z,DE,2",
        "2023-01-01T04:00:00+02:00,DE,3",  # 02:00 UTC
        "2022-12-31T22:00:00-05:00,DE,4",  # 03:00 UTC
        "2023-01-01 04:00:00,DE,5",  # no offset: UTC, as the column says
    ]
    path = _write(tmp_path / "ci.csv", "\n".join(rows) + "\n")
    series = load_hourly(path, column="ci", zones={"DE"}, start=START, hours=5)
    assert series["DE"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_a_time_that_does_not_parse_names_file_row_and_column(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ci.csv", "datetime_utc,zone,ci\n2023-01-01 00:00:00,DE,1\n1/2/23,DE,2\n"
    )
    with pytest.raises(ValueError, match=r"ci\.csv, row 3, column 'datetime_utc': cannot parse"):
        load_hourly(path, column="ci", zones={"DE"}, start=START, hours=2)


def test_a_time_between_two_hours_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "ci.csv", "datetime_utc,zone,ci\n2023-01-01T00:30:00Z,DE,1\n")
    with pytest.raises(ValueError, match=r"row 2.*00:30:00 UTC is not on a whole hour"):
        load_hourly(path, column="ci", zones={"DE"}, start=START, hours=1)


def test_a_duplicated_hour_with_another_value_names_file_rows_and_time(tmp_path: Path) -> None:
    rows = [
        "datetime_utc,zone,ci",
        "2023-01-01 00:00:00,DE,100",
        "2023-01-01 01:00:00,DE,110",
        "2023-01-01T01:00:00Z,DE,999",
    ]
    path = _write(tmp_path / "ci.csv.gz", "\n".join(rows) + "\n")
    with pytest.raises(
        ValueError,
        match=r"ci\.csv\.gz, row 4: zone 'DE' has a second ci for 2023-01-01 01:00 UTC: 999,"
        r" but row 3 gives 110",
    ):
        load_hourly(path, column="ci", zones={"DE"}, start=START, hours=2)


def test_a_duplicated_hour_with_the_same_value_is_accepted(tmp_path: Path) -> None:
    rows = ["datetime_utc,zone,ci", "2023-01-01 00:00:00,DE,100", "2023-01-01T00:00:00Z,DE,100.0"]
    path = _write(tmp_path / "ci.csv", "\n".join(rows) + "\n")
    assert load_hourly(path, column="ci", zones={"DE"}, start=START, hours=1)["DE"].tolist() == [
        100.0
    ]


def test_negative_prices_are_kept(tmp_path: Path) -> None:
    path = _hourly_csv(tmp_path / "price.csv", {"DE": [12.5, -3.25, -40.0]}, "price")
    series = load_hourly(path, column="price", zones={"DE"}, start=START, hours=3)
    assert series["DE"].tolist() == [12.5, -3.25, -40.0]


@pytest.mark.parametrize(
    ("cell", "why"),
    [
        ("", "empty cell, expected a number"),
        ("n/a", "'n/a' is not a number"),
        ("inf", "'inf' is not a finite number"),
    ],
)
def test_a_bad_cell_names_file_row_and_column(tmp_path: Path, cell: str, why: str) -> None:
    rows = ["datetime_utc,zone,ci", "2023-01-01 00:00:00,DE,1", f"2023-01-01 01:00:00,DE,{cell}"]
    path = _write(tmp_path / "ci.csv", "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=rf"ci\.csv, row 3, column 'ci': {why}"):
        load_hourly(path, column="ci", zones={"DE"}, start=START, hours=2)


def test_empty_cells_of_the_other_files_are_named_too(tmp_path: Path) -> None:
    rtt = _write(tmp_path / "rtt.csv", "src,a,b\na,1,20\nb,,2\n")
    with pytest.raises(ValueError, match=r"rtt\.csv, row 3, column 'a': empty cell"):
        load_rtt_matrix(rtt, ["a", "b"])
    short = _write(tmp_path / "short.csv", "src,a,b\na,1\nb,3,2\n")
    with pytest.raises(ValueError, match=r"short\.csv, row 2, column 'b': empty cell"):
        load_rtt_matrix(short, ["a", "b"])
    shape = _write(tmp_path / "shape.csv", "category_model,t_offset_s,total_rate_req_s\nm,0,\n")
    with pytest.raises(ValueError, match=r"shape\.csv, row 2, column 'total_rate_req_s'"):
        load_hourly_shape(
            shape,
            category="m",
            category_column="category_model",
            offset_column="t_offset_s",
            rate_column="total_rate_req_s",
        )
    trace = _write(tmp_path / "trace.csv", "ContextTokens,GeneratedTokens\n100,10\n200,\n")
    with pytest.raises(ValueError, match=r"trace\.csv, row 3, column 'GeneratedTokens'"):
        load_token_mix(trace, "ContextTokens", "GeneratedTokens")


def test_a_file_that_is_not_gzip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "ci.csv.gz"
    path.write_text("datetime_utc,zone,ci\n")
    with pytest.raises(ValueError, match=r"ci\.csv\.gz: cannot read it as CSV text"):
        load_hourly(path, column="ci", zones={"DE"}, start=START, hours=1)


def test_a_misspelled_gpu_product_is_named_with_the_known_ones(tmp_path: Path) -> None:
    regions = [
        {"name": "r1", "gridZone": "Z1", "gpus": {"NVIDIA-H100-80GB-HBM": 8}},
        {"name": "r2", "gridZone": "Z2", "gpus": {H100: 8}},
    ]
    with pytest.raises(ValidationError) as err:
        ScenarioSpec.from_file(_scenario(tmp_path, regions=regions))
    assert (
        "regions[r1].gpus: unknown GPU product 'NVIDIA-H100-80GB-HBM' (did you mean"
        " 'NVIDIA-H100-80GB-HBM3'?); known: NVIDIA-A100-SXM4-40GB, NVIDIA-H100-80GB-HBM3,"
        " NVIDIA-L40S"
    ) in str(err.value)


def test_a_misspelled_gpu_type_or_profile_of_a_model_is_named(tmp_path: Path) -> None:
    model = {
        "name": "m",
        "profile": "meta-llama/Meta-Llama-3.1-8B-Instruc",
        "gpuTypes": ["h100"],
        "p95TimeToFirstTokenSeconds": 1,
        "peakRequestsPerSecond": 40,
    }
    with pytest.raises(ValidationError) as err:
        ScenarioSpec.from_file(_scenario(tmp_path, models=[model]))
    message = str(err.value)
    assert "models[m].gpuTypes: unknown GPU product 'h100'" in message
    assert "did you mean 'NVIDIA-H100-80GB-HBM3'?" in message
    assert (
        "models[m].profile: unknown performance profile 'meta-llama/Meta-Llama-3.1-8B-Instruc'"
        " (did you mean 'meta-llama/Meta-Llama-3.1-8B-Instruct'?)"
    ) in message


def test_a_period_start_between_two_hours_is_refused(tmp_path: Path) -> None:
    period = {"start": "2023-01-01T00:30:00+00:00", "hours": 4}
    with pytest.raises(ValidationError, match=r"not on a whole hour"):
        ScenarioSpec.from_file(_scenario(tmp_path, period=period))


def test_a_period_start_with_an_offset_is_utc(tmp_path: Path) -> None:
    period = {"start": "2023-01-01T02:00:00+02:00", "hours": 4}
    data = load_scenario(_scenario(tmp_path, period=period))
    assert data.hours[0] == START
