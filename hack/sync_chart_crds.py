"""Copies the generated CRDs (crds/, written by `gridplace crds`) into the Helm chart.

The chart templates its copy (charts/gridplace/files/crds/) so that `helm upgrade` updates the CRDs
and `crds.keep` decides what `helm uninstall` does. `--check` writes nothing and exits 1 when the
copy is out of date, naming the files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "crds"
CHART_COPY = ROOT / "charts" / "gridplace" / "files" / "crds"


def expected(source: Path = SOURCE) -> dict[str, str]:
    """File name -> content the chart's copy must have."""
    return {path.name: path.read_text() for path in sorted(source.glob("*.yaml"))}


def drift(source: Path = SOURCE, target: Path = CHART_COPY) -> list[str]:
    """Names of the files that are missing, different or extra in the chart's copy."""
    want = expected(source)
    have = {path.name: path.read_text() for path in sorted(target.glob("*.yaml"))}
    return sorted(name for name in want.keys() | have.keys() if want.get(name) != have.get(name))


def sync(source: Path = SOURCE, target: Path = CHART_COPY) -> list[str]:
    want = expected(source)
    target.mkdir(parents=True, exist_ok=True)
    for extra in sorted(p for p in target.glob("*.yaml") if p.name not in want):
        extra.unlink()
    for name, text in want.items():
        (target / name).write_text(text)
    return sorted(want)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on drift")
    args = parser.parse_args()
    if args.check:
        stale = drift()
        for name in stale:
            print(
                f"out of date: {CHART_COPY.relative_to(ROOT) / name} "
                "(run `uv run python hack/sync_chart_crds.py`)",
                file=sys.stderr,
            )
        return 1 if stale else 0
    for name in sync():
        print(f"wrote {CHART_COPY.relative_to(ROOT) / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
