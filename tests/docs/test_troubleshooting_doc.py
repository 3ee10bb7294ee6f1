"""docs/troubleshooting.md has an entry for every condition reason the API defines, and names no
reason the API does not define, so the page cannot fall behind the code."""

from __future__ import annotations

import re
from pathlib import Path

from gridplace_operator.api.conditions import (
    INFERENCE_DEPLOYMENT_CONDITIONS,
    REGION_CONDITIONS,
    Reason,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"


def headings() -> list[str]:
    return [line[4:].strip() for line in DOC.read_text().splitlines() if line.startswith("### ")]


def test_every_reason_has_an_entry() -> None:
    documented = {word for heading in headings() for word in re.findall(r"[A-Za-z]+", heading)}
    missing = sorted(r.value for r in Reason if r.value not in documented)
    assert not missing, f"docs/troubleshooting.md has no entry for {missing}"


def test_every_reason_named_in_a_heading_exists() -> None:
    known = {r.value for r in Reason}
    words = {w for h in headings() for w in re.findall(r"\b[A-Z][A-Za-z]+\b", h)}
    unknown = sorted(words - known - {"Ready", "Placed", "Scaled", "SignalsHealthy", "on"})
    assert not unknown, f"headings name reasons the API does not define: {unknown}"


def test_every_documented_condition_reason_is_a_reason() -> None:
    """The tables the page's entries follow (rendered into docs/api.md) use only Reason values."""
    for _, _, reason, _ in (*INFERENCE_DEPLOYMENT_CONDITIONS, *REGION_CONDITIONS):
        assert isinstance(reason, Reason)
        assert f"### {reason.value}" in DOC.read_text() or reason.value in " ".join(headings())
