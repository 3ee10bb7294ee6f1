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
from gridplace_placement.scenario.data import load_hourly, load_hourly_shape, load_rtt_matrix

START = datetime(2023, 1, 1, tzinfo=UTC)


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
            {"name": "r1", "gridZone": "Z1", "gpus": {"H100": 8}},
            {"name": "r2", "gridZone": "Z2", "gpus": {"H100": 8}},
        ],
        "userZones": [
            {"name": "near-r1", "nearRegion": "r1", "share": 3, "utcOffsetHours": 0},
            {"name": "near-r2", "nearRegion": "r2", "share": 1, "utcOffsetHours": 2},
        ],
        "models": [
            {
                "name": "m",
                "profile": "p",
                "gpuTypes": ["H100"],
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
