"""Pure planning of a load run: the trace, user zones, arrival times and the loopback rule."""

from __future__ import annotations

import csv
import ipaddress
import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

TRACE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


@dataclass(frozen=True)
class TraceRow:
    offset_s: float  # arrival time after the first row of the trace
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Zone:
    name: str
    rtt_ms: float
    weight: float = 1.0
    targets: tuple[str, ...] = ()  # base URLs for this zone; empty means the run's default targets


@dataclass(frozen=True)
class Step:
    duration_s: float
    rate_rps: float


@dataclass(frozen=True)
class PlannedRequest:
    at_s: float  # when the user in `zone` issues it, from the start of the run
    prompt_tokens: int
    output_tokens: int
    zone: str
    step: int | None = None  # index of the load step it belongs to (step mode only)


@dataclass(frozen=True)
class LoadPlan:
    requests: tuple[PlannedRequest, ...]
    zones: tuple[Zone, ...]
    steps: tuple[Step, ...] = field(default=())


def read_trace(path: Path, limit: int | None = None) -> list[TraceRow]:
    """Read an Azure LLM inference trace (TIMESTAMP, ContextTokens, GeneratedTokens).

    Rows are returned in arrival order with offsets from the earliest row; `limit` keeps the
    first rows of the file. Raises ValueError naming the line, the column and the bad value.
    """
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in TRACE_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)}; expected {TRACE_COLUMNS}"
            )
        parsed: list[tuple[datetime, int, int]] = []
        for line, record in enumerate(itertools.islice(reader, limit), start=2):
            parsed.append(
                (
                    _field(path, line, record, "TIMESTAMP", datetime.fromisoformat),
                    _field(path, line, record, "ContextTokens", _positive_int),
                    _field(path, line, record, "GeneratedTokens", _positive_int),
                )
            )
    if not parsed:
        raise ValueError(f"{path}: the trace has no rows")
    parsed.sort(key=lambda row: row[0])
    start = parsed[0][0]
    return [TraceRow((at - start).total_seconds(), p, g) for at, p, g in parsed]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _field(
    path: Path, line: int, record: Mapping[str, str], column: str, convert: Callable[[str], T]
) -> T:
    raw = record.get(column) or ""
    try:
        return convert(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}:{line}: column {column} has bad value {raw!r} ({exc})") from None


def parse_zone(text: str) -> Zone:
    """Parse `name=rtt_ms[:weight]`, e.g. `eu-central=12:2`."""
    name, sep, rest = text.partition("=")
    rtt_text, _, weight_text = rest.partition(":")
    try:
        rtt, weight = float(rtt_text), float(weight_text or 1)
    except ValueError:
        rtt = weight = math.nan
    if not sep or not name or not rtt >= 0 or not weight > 0:
        raise ValueError(f"zone {text!r} must look like name=rtt_ms[:weight], rtt >= 0, weight > 0")
    return Zone(name, rtt, weight)


def load_zones(path: Path) -> tuple[Zone, ...]:
    """Zones from YAML: `zones: [{name, rtt_ms, weight?, targets?}]`."""
    import yaml  # noqa: PLC0415 - only the YAML form needs it

    data = yaml.safe_load(path.read_text())
    entries = data.get("zones") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty list under 'zones'")
    zones = []
    for index, entry in enumerate(entries):
        where = f"{path}: zones[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"{where} must be a mapping with a string 'name'")
        rtt, weight = entry.get("rtt_ms", 0), entry.get("weight", 1)
        if not isinstance(rtt, int | float) or rtt < 0:
            raise ValueError(f"{where}.rtt_ms must be a number >= 0, got {rtt!r}")
        if not isinstance(weight, int | float) or weight <= 0:
            raise ValueError(f"{where}.weight must be a number > 0, got {weight!r}")
        targets = entry.get("targets", [])
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ValueError(f"{where}.targets must be a list of URLs, got {targets!r}")
        for target in targets:
            require_loopback(target)
        zones.append(Zone(entry["name"], float(rtt), float(weight), tuple(targets)))
    return _unique(zones)


def rtt_matrix(regions: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The RTT matrix (zone -> region -> ms) of Region manifests: each Region's `spec.rtt`."""
    matrix: dict[str, dict[str, float]] = {}
    for region in regions:
        if region.get("kind") != "Region":
            continue
        name = region["metadata"]["name"]
        for entry in region.get("spec", {}).get("rtt") or []:
            ms = entry.get("ms")
            if isinstance(ms, bool) or not isinstance(ms, int | float) or ms < 0:
                raise ValueError(f"Region {name}: rtt of zone {entry.get('zone')!r} is {ms!r}")
            matrix.setdefault(str(entry["zone"]), {})[name] = float(ms)
    return matrix


def load_rtt_matrix(path: Path) -> dict[str, dict[str, float]]:
    """The RTT matrix of a file of Region manifests (e.g. examples/regions.yaml)."""
    import yaml  # noqa: PLC0415 - only the YAML form needs it

    return rtt_matrix(d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict))


def _unique(zones: Sequence[Zone]) -> tuple[Zone, ...]:
    names = [z.name for z in zones]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"zone name(s) given more than once: {', '.join(duplicates)}")
    return tuple(zones)


def parse_steps(text: str) -> tuple[Step, ...]:
    """Parse `duration_s:rate_rps,...`, e.g. `60:2,60:8,120:2`."""
    steps = []
    for part in text.split(","):
        duration_text, _, rate_text = part.partition(":")
        try:
            step = Step(float(duration_text), float(rate_text))
        except ValueError:
            step = Step(math.nan, math.nan)
        if not step.duration_s > 0 or not step.rate_rps >= 0:
            raise ValueError(
                f"step {part!r} must look like duration_s:rate_rps, duration > 0, rate >= 0"
            )
        steps.append(step)
    return tuple(steps)


def require_loopback(url: str) -> str:
    """Return `url` if it points at this machine (127.0.0.0/8, ::1, localhost), else raise."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if parts.scheme not in {"http", "https"} or not local:
        raise ValueError(
            f"target {url!r} refused: load is only sent to http(s) addresses on this machine "
            "(127.0.0.0/8, [::1] or localhost)"
        )
    return url


def natural_rate(rows: Sequence[TraceRow]) -> float:
    """Mean arrival rate of the trace rows in requests per second."""
    span = rows[-1].offset_s - rows[0].offset_s
    if len(rows) < 2 or span <= 0:
        raise ValueError("a target rate needs at least two trace rows at different times")
    return (len(rows) - 1) / span


def replay_plan(
    rows: Sequence[TraceRow],
    zones: Sequence[Zone],
    *,
    rate_multiplier: float,
    max_requests: int,
    max_duration_s: float,
    seed: int,
) -> LoadPlan:
    """Replay the trace's arrivals sped up by `rate_multiplier`, within the bounds."""
    if rate_multiplier <= 0:
        raise ValueError(f"rate multiplier must be > 0, got {rate_multiplier}")
    rng = random.Random(seed)
    requests = []
    for row in rows[:max_requests]:
        at = row.offset_s / rate_multiplier
        if at > max_duration_s:
            break
        requests.append(PlannedRequest(at, row.prompt_tokens, row.output_tokens, _zone(zones, rng)))
    return LoadPlan(tuple(requests), _unique(zones))


def step_plan(
    rows: Sequence[TraceRow],
    zones: Sequence[Zone],
    *,
    steps: Sequence[Step],
    max_requests: int,
    max_duration_s: float,
    seed: int,
) -> LoadPlan:
    """Poisson arrivals at each step's rate; request sizes are taken from the trace in order."""
    rng = random.Random(seed)
    sizes = itertools.cycle(rows)
    requests: list[PlannedRequest] = []
    start = 0.0
    for index, step in enumerate(steps):
        at = start
        while step.rate_rps > 0 and len(requests) < max_requests:
            at += rng.expovariate(step.rate_rps)
            if at >= start + step.duration_s or at > max_duration_s:
                break
            row = next(sizes)
            zone = _zone(zones, rng)
            requests.append(PlannedRequest(at, row.prompt_tokens, row.output_tokens, zone, index))
        start += step.duration_s
    return LoadPlan(tuple(requests), _unique(zones), tuple(steps))


def _zone(zones: Sequence[Zone], rng: random.Random) -> str:
    return rng.choices([z.name for z in zones], weights=[z.weight for z in zones])[0]


def step_starts(steps: Iterable[Step]) -> list[float]:
    return list(itertools.accumulate((s.duration_s for s in steps), initial=0.0))[:-1]
