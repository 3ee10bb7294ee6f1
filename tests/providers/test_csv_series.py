"""The value in force in a CSV series: the last row at or before now."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gridplace_operator.signals.providers.csv_series import parse_series
from gridplace_operator.signals.sources import SignalError

CSV = """datetime_utc,zone,price_usd_mwh
2026-11-27 10:00:00,DE,80.5
2026-11-27 11:00:00,DE,95.0
2026-11-27 12:00:00,DE,70.25
2026-11-27 10:00:00,FR,30
2026-11-27T11:00:00+01:00,FR,31
"""


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 27, hour, minute, tzinfo=UTC)


def test_the_row_in_force_is_the_last_at_or_before_now() -> None:
    series = parse_series(
        CSV,
        time_column="datetime_utc",
        value_column="price_usd_mwh",
        zone_column="zone",
        zone="DE",
    )
    assert series.at(at(10)) == (at(10), 80.5)
    assert series.at(at(11, 59)) == (at(11), 95.0)
    assert series.at(at(23)) == (at(12), 70.25)  # past the end: the last row stays in force


def test_times_with_an_offset_are_converted_to_utc() -> None:
    series = parse_series(
        CSV,
        time_column="datetime_utc",
        value_column="price_usd_mwh",
        zone_column="zone",
        zone="FR",
    )
    assert series.times == (at(10),)  # 11:00+01:00 is 10:00 UTC: the later row wins
    assert series.values == (31.0,)


def test_a_forecast_that_starts_after_now_says_so() -> None:
    series = parse_series(
        CSV, time_column="datetime_utc", value_column="price_usd_mwh", zone_column="zone", zone="DE"
    )
    with pytest.raises(SignalError, match="no row at or before 2026-11-27T09:00:00Z: the first"):
        series.at(at(9))


def test_a_missing_column_is_named_but_not_the_columns_there() -> None:
    with pytest.raises(
        SignalError, match=r"^column 'price' not found in the header \(3 columns\)$"
    ):
        parse_series(CSV, time_column="datetime_utc", value_column="price")


def test_an_unknown_zone_counts_the_zones_in_the_file() -> None:
    with pytest.raises(SignalError, match=r"^no rows with zone='PL' \(2 other zones\)$"):
        parse_series(
            CSV,
            time_column="datetime_utc",
            value_column="price_usd_mwh",
            zone_column="zone",
            zone="PL",
        )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2026-11-27 13:00:00,DE,n/a", "^line 5: price_usd_mwh is not a finite number$"),
        ("2026-11-27 13:00:00,DE,nan", "^line 5: price_usd_mwh is not a finite number$"),
        ("yesterday,DE,12", "^line 5: datetime_utc is not an ISO 8601 time$"),
    ],
)
def test_bad_rows_are_named_by_line_and_column_without_their_value(row: str, message: str) -> None:
    text = "\n".join([*CSV.splitlines()[:4], row])
    with pytest.raises(SignalError, match=message):
        parse_series(
            text,
            time_column="datetime_utc",
            value_column="price_usd_mwh",
            zone_column="zone",
            zone="DE",
        )


def test_a_file_without_rows_is_an_error() -> None:
    with pytest.raises(SignalError, match="no data rows"):
        parse_series("datetime_utc,v\n", time_column="datetime_utc", value_column="v")
