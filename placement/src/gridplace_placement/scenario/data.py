"""Load a scenario's data files into hourly series for its period."""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gridplace_placement.scenario.spec import ScenarioSpec

FloatArray = npt.NDArray[np.float64]
DATA_DIR_ENV = "GRIDPLACE_SCENARIO_DATA_DIR"
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ScenarioData:
    """Everything a replay needs, hour by hour (index 0 is the period start)."""

    spec: ScenarioSpec
    hours: list[datetime]
    carbon_g_per_kwh: dict[str, FloatArray]  # region -> hourly intensity
    price_usd_per_mwh: dict[str, FloatArray]  # region -> hourly price
    rtt_ms: dict[str, dict[str, float]]  # user zone -> region -> RTT
    demand_rps: dict[str, dict[str, FloatArray]]  # model -> user zone -> hourly rate
    mean_prompt_tokens: float
    mean_output_tokens: float


def _open_text(path: Path) -> io.TextIOBase:
    if not path.is_file():
        raise FileNotFoundError(f"scenario data file not found: {path}")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return io.TextIOWrapper(path.open("rb"), encoding="utf-8")


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[dict[str, str]]:
    with _open_text(path) as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
        yield from reader


def _parse_time(text: str, path: Path) -> datetime:
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"{path}: cannot parse time {text!r} (expected e.g. 2023-01-01 00:00:00)")


def load_hourly(
    path: Path,
    *,
    column: str,
    zones: set[str],
    start: datetime,
    hours: int,
    time_column: str = "datetime_utc",
    zone_column: str = "zone",
) -> dict[str, FloatArray]:
    """Hourly values per zone over [start, start + hours); every hour must be present."""
    series = {zone: np.full(hours, np.nan) for zone in zones}
    for row in _rows(path, (time_column, zone_column, column)):
        zone = row[zone_column]
        if zone not in series:
            continue
        index = int((_parse_time(row[time_column], path) - start) / timedelta(hours=1))
        if 0 <= index < hours:
            try:
                series[zone][index] = float(row[column])
            except ValueError as err:
                raise ValueError(f"{path}: {column}={row[column]!r} is not a number") from err
    for zone, values in series.items():
        gaps = np.flatnonzero(np.isnan(values))
        if gaps.size:
            first = start + timedelta(hours=int(gaps[0]))
            raise ValueError(
                f"{path}: zone {zone!r} has no {column} for {gaps.size} hour(s) of the period,"
                f" first at {first:%Y-%m-%d %H:%M} UTC"
            )
    return series


def load_rtt_matrix(path: Path, regions: list[str]) -> dict[str, dict[str, float]]:
    """RTT in ms between the given regions, from a square matrix CSV (row = source)."""
    matrix: dict[str, dict[str, float]] = {}
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader)
        columns = {name: i for i, name in enumerate(header)}
        for row in reader:
            if row and row[0] in regions:
                present = [dst for dst in regions if dst in columns]
                matrix[row[0]] = {dst: float(row[columns[dst]]) for dst in present}
    for src in regions:
        got = matrix.get(src, {})
        lacking = [dst for dst in regions if dst not in got]
        if lacking:
            raise ValueError(f"{path}: no RTT from {src!r} to {lacking}")
    return matrix


def load_hourly_shape(
    path: Path,
    *,
    category: str,
    category_column: str,
    offset_column: str,
    rate_column: str,
) -> FloatArray:
    """A load shape averaged to whole hours and scaled so that its busiest hour is 1."""
    buckets: dict[int, list[float]] = {}
    for row in _rows(path, (category_column, offset_column, rate_column)):
        if row[category_column] != category:
            continue
        hour = int(float(row[offset_column]) // 3600)
        buckets.setdefault(hour, []).append(float(row[rate_column]))
    if not buckets:
        raise ValueError(f"{path}: no rows with {category_column}={category!r}")
    length = max(buckets) + 1
    if len(buckets) != length:
        raise ValueError(f"{path}: the shape of {category!r} has gaps between its hours")
    shape = np.array([np.mean(buckets[h]) for h in range(length)], dtype=np.float64)
    peak = float(shape.max())
    if peak <= 0:
        raise ValueError(f"{path}: the shape of {category!r} is zero everywhere")
    return shape / peak


def load_token_mix(path: Path, prompt_column: str, output_column: str) -> tuple[float, float]:
    """Mean prompt and output tokens per request of a trace."""
    prompts: list[float] = []
    outputs: list[float] = []
    for row in _rows(path, (prompt_column, output_column)):
        prompts.append(float(row[prompt_column]))
        outputs.append(float(row[output_column]))
    if not prompts:
        raise ValueError(f"{path}: the request trace is empty")
    return float(np.mean(prompts)), float(np.mean(outputs))


def data_directory(path: Path, spec: ScenarioSpec, override: Path | None = None) -> Path:
    """The data files' directory: `override`, else $GRIDPLACE_SCENARIO_DATA_DIR, else the
    scenario's `dataDir` relative to the scenario file."""
    if override is not None:
        return override
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env)
    return (path.parent / spec.data_dir).resolve()


def load_scenario(path: Path, data_dir: Path | None = None) -> ScenarioData:
    """Read a scenario file and every data file it names (see `data_directory`)."""
    if not path.is_file():
        raise FileNotFoundError(f"scenario file not found: {path}")
    spec = ScenarioSpec.from_file(path)
    base = data_directory(path, spec, data_dir)
    src = spec.sources
    files = (src.carbon_intensity, src.power_price, src.rtt, src.demand_shape, src.request_mix)
    for source in files:
        if not (base / source.file).is_file():
            raise FileNotFoundError(
                f"scenario data file not found: {base / source.file} (data directory {base};"
                f" point to another with --data-dir or ${DATA_DIR_ENV})"
            )
    start, hours = spec.period.start, spec.period.hours
    zones = {r.grid_zone for r in spec.regions}
    carbon, price = (
        load_hourly(
            base / source.file,
            column=source.column,
            zones=zones,
            start=start,
            hours=hours,
            time_column=source.time_column,
            zone_column=source.zone_column,
        )
        for source in (src.carbon_intensity, src.power_price)
    )
    region_names = [r.name for r in spec.regions]
    rtt = load_rtt_matrix(base / src.rtt.file, region_names)
    shape = load_hourly_shape(
        base / src.demand_shape.file,
        category=src.demand_shape.category,
        category_column=src.demand_shape.category_column,
        offset_column=src.demand_shape.offset_column,
        rate_column=src.demand_shape.rate_column,
    )
    prompt, output = load_token_mix(
        base / src.request_mix.file, src.request_mix.prompt_column, src.request_mix.output_column
    )
    total_share = sum(z.share for z in spec.user_zones)
    utc_hours = np.arange(hours) + start.hour
    demand: dict[str, dict[str, FloatArray]] = {}
    for model in spec.models:
        demand[model.name] = {}
        for zone in spec.user_zones:
            # The shape starts at local midnight in each zone, so zones peak at different UTC hours.
            local = (utc_hours + round(zone.utc_offset_hours)) % shape.size
            demand[model.name][zone.name] = (
                model.peak_requests_per_second * zone.share / total_share * shape[local]
            )
    return ScenarioData(
        spec=spec,
        hours=[start + timedelta(hours=h) for h in range(hours)],
        carbon_g_per_kwh={r.name: carbon[r.grid_zone] for r in spec.regions},
        price_usd_per_mwh={r.name: price[r.grid_zone] for r in spec.regions},
        rtt_ms={z.name: dict(rtt[z.near_region]) for z in spec.user_zones},
        demand_rps=demand,
        mean_prompt_tokens=prompt,
        mean_output_tokens=output,
    )
