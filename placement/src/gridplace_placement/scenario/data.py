"""Load a scenario's data files into hourly series for its period.

Data from elsewhere is messy: a cell left empty, a timestamp with a UTC offset, an hour exported
twice. Every value read names its file, row (the line number, the header being row 1) and column
when it cannot be used, so that the user can fix the file instead of guessing.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gridplace_placement.scenario.spec import ScenarioSpec

FloatArray = npt.NDArray[np.float64]
DATA_DIR_ENV = "GRIDPLACE_SCENARIO_DATA_DIR"
HOUR = timedelta(hours=1)


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


@contextmanager
def _open_text(path: Path) -> Iterator[io.TextIOBase]:
    """The file as UTF-8 text (gunzipped if it ends in .gz). A file that is not such text, or
    not CSV, is a ValueError naming it, like any other bad data."""
    if not path.is_file():
        raise FileNotFoundError(f"scenario data file not found: {path}")
    try:
        with (
            gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as raw,
            io.TextIOWrapper(raw, encoding="utf-8") as handle,
        ):
            yield handle
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: cannot read it as CSV text: {err}") from None


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """The rows of a CSV with their row number (its last line in the file; the header is 1)."""
    with _open_text(path) as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
        for row in reader:
            yield reader.line_num, row


def _cell(path: Path, row: int, column: str) -> str:
    """Where a value sits, for error messages."""
    return f"{path}, row {row}, column {column!r}"


def _number(text: str | None, path: Path, row: int, column: str) -> float:
    """A finite number from a CSV cell; an empty, non-numeric or infinite cell is an error that
    names the cell, since a default would silently change the replay."""
    if text is None or not text.strip():
        raise ValueError(f"{_cell(path, row, column)}: empty cell, expected a number")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{_cell(path, row, column)}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{_cell(path, row, column)}: {text!r} is not a finite number")
    return value


def _parse_time(text: str | None, path: Path, row: int, column: str) -> datetime:
    """An ISO-8601 time in UTC. A time with an offset (`Z`, `+00:00`, `+02:00`) is converted to
    UTC; a time without one is taken as UTC, as the time column's name says."""
    try:
        value = datetime.fromisoformat((text or "").strip())
    except ValueError:
        raise ValueError(
            f"{_cell(path, row, column)}: cannot parse time {text!r} (expected ISO 8601, e.g."
            " 2023-01-01 00:00:00, 2023-01-01T00:00:00Z or 2023-01-01T01:00:00+01:00)"
        ) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _hour_index(when: datetime, start: datetime, hours: int, where: str) -> int | None:
    """The hour of the period a time falls on, None outside the period. A time between two
    whole hours of the period is an error (at `where`): averaging sub-hourly data is the user's
    choice to make, not the loader's."""
    steps, rest = divmod(when - start, HOUR)
    if not 0 <= steps < hours:
        return None
    if rest:
        raise ValueError(
            f"{where}: {when:%Y-%m-%d %H:%M:%S} UTC is not on a whole hour; the series must be"
            " hourly"
        )
    return int(steps)


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
    """Hourly values per zone over [start, start + hours); every hour must be present.

    An hour given twice with the same value is accepted (exports that overlap repeat rows); with
    a different value it is an error naming both rows, since either choice would be a guess."""
    series = {zone: np.full(hours, np.nan) for zone in zones}
    first_row: dict[tuple[str, int], int] = {}
    for line, row in _rows(path, (time_column, zone_column, column)):
        zone = row[zone_column]
        if zone not in series:
            continue
        when = _parse_time(row[time_column], path, line, time_column)
        index = _hour_index(when, start, hours, _cell(path, line, time_column))
        if index is None:
            continue
        value = _number(row[column], path, line, column)
        seen = first_row.setdefault((zone, index), line)
        if seen != line and series[zone][index] != value:
            raise ValueError(
                f"{path}, row {line}: zone {zone!r} has a second {column} for"
                f" {when:%Y-%m-%d %H:%M} UTC: {value:g}, but row {seen} gives"
                f" {series[zone][index]:g}"
            )
        series[zone][index] = value
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
        header = next(reader, [])
        columns = {name: i for i, name in enumerate(header)}
        present = [dst for dst in regions if dst in columns]
        for row in reader:
            if row and row[0] in regions:
                matrix[row[0]] = {
                    dst: _number(_at(row, columns[dst]), path, reader.line_num, dst)
                    for dst in present
                }
    for src in regions:
        got = matrix.get(src, {})
        lacking = [dst for dst in regions if dst not in got]
        if lacking:
            raise ValueError(f"{path}: no RTT from {src!r} to {lacking}")
    return matrix


def _at(row: list[str], index: int) -> str | None:
    """A cell of a short row is missing, not an IndexError."""
    return row[index] if index < len(row) else None


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
    for line, row in _rows(path, (category_column, offset_column, rate_column)):
        if row[category_column] != category:
            continue
        hour = int(_number(row[offset_column], path, line, offset_column) // 3600)
        rate = _number(row[rate_column], path, line, rate_column)
        buckets.setdefault(hour, []).append(rate)
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
    for line, row in _rows(path, (prompt_column, output_column)):
        prompts.append(_number(row[prompt_column], path, line, prompt_column))
        outputs.append(_number(row[output_column], path, line, output_column))
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
