"""A CSV time series and the value in force at a time: the last row at or before it, so history
and forecast files work the same way."""

from __future__ import annotations

import bisect
import csv
import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from gridplace_operator.signals.sources import SignalError


@dataclass(frozen=True)
class Series:
    times: tuple[datetime, ...]  # sorted, UTC
    values: tuple[float, ...]

    def at(self, now: datetime) -> tuple[datetime, float]:
        """The row in force at `now`."""
        index = bisect.bisect_right(self.times, now) - 1
        if index < 0:
            raise SignalError(
                f"no row at or before {now:%Y-%m-%dT%H:%M:%SZ}: the first row is at"
                f" {self.times[0]:%Y-%m-%dT%H:%M:%SZ}"
            )
        return self.times[index], self.values[index]


def parse_time(text: str) -> datetime:
    """ISO 8601; a time without an offset is UTC."""
    parsed = datetime.fromisoformat(text.strip())
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_series(
    text: str,
    *,
    time_column: str,
    value_column: str,
    zone_column: str | None = None,
    zone: str | None = None,
) -> Series:
    """The rows of `text` (of `zone`, when given) as a sorted series; SignalError names the
    column and line that are wrong but quotes nothing of the file: it may come from any URL, and
    the message goes to status."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    for column in (time_column, value_column, zone_column):
        if column is not None and column not in header:
            raise SignalError(f"column {column!r} not found in the header ({len(header)} columns)")
    rows: dict[datetime, float] = {}
    zones: set[str] = set()
    for line, row in enumerate(reader, start=2):
        if zone_column is not None:
            zones.add(row[zone_column])
            if row[zone_column] != zone:
                continue
        raw_time, raw_value = row[time_column] or "", row[value_column] or ""
        try:
            at = parse_time(raw_time)
        except ValueError:
            raise SignalError(f"line {line}: {time_column} is not an ISO 8601 time") from None
        try:
            value = float(raw_value)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise SignalError(f"line {line}: {value_column} is not a finite number")
        rows[at] = value
    if not rows:
        if zone_column is not None:
            raise SignalError(f"no rows with {zone_column}={zone!r} ({len(zones)} other zones)")
        raise SignalError("the file has no data rows")
    times = tuple(sorted(rows))
    return Series(times=times, values=tuple(rows[t] for t in times))
