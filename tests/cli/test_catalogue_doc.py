"""The list of shipped profiles in docs/placement.md is the catalogue the package ships: a model
named there must be one `spec.model.name` or `performance.profile` can use, on the GPU types and
sizes shown. On a mismatch the failure prints the table to paste."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from gridplace_placement.profiles import catalogue

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = ("placement.md", "getting-started.md")  # both list the catalogue for their readers
BEGIN = "<!-- catalogue: begin -->"
END = "<!-- catalogue: end -->"


def catalogue_table() -> str:
    """One row per model: the GPUs per replica its profiles have on each GPU type."""
    sizes: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for model, profiles in catalogue().items():
        for p in profiles:
            sizes[model][p["gpuType"]].add(int(p["gpusPerReplica"]))
    gpus = sorted({gpu for by_gpu in sizes.values() for gpu in by_gpu})
    rows = [
        "| model | " + " | ".join(gpus) + " |",
        "| --- |" + " --- |" * len(gpus),
    ]
    for model in sorted(sizes, key=str.lower):
        cells = [", ".join(map(str, sorted(sizes[model].get(g, ())))) or "–" for g in gpus]
        rows.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


@pytest.mark.parametrize("page", PAGES)
def test_the_documented_catalogue_is_the_shipped_one(page: str) -> None:
    doc = DOCS / page
    text = doc.read_text()
    assert BEGIN in text and END in text, f"{doc} lost its catalogue markers"
    documented = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    expected = catalogue_table()
    assert documented == expected, f"replace the table in {doc} with:\n{expected}"


def test_the_table_has_every_model_and_gpu_type() -> None:
    table = catalogue_table()
    shipped = catalogue()
    assert len(table.splitlines()) == 2 + len(shipped)
    for model in shipped:
        assert f"| `{model}` |" in table
