"""The public data ships in the repository: every file the examples name is in it, with its
attribution, and nothing points at a folder outside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gridplace_e2e import public_data
from gridplace_placement.scenario import ScenarioSpec
from gridplace_placement.scenario.data import DATA_DIR_ENV, data_directory

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "examples" / "scenarios").glob("*.yaml"))
README = public_data.PUBLIC_DATA / "README.md"


def test_there_are_example_scenarios() -> None:
    assert {"public.yaml", "public-november.yaml"} <= {p.name for p in SCENARIOS}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_every_data_file_of_an_example_scenario_is_in_the_repository(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    spec = ScenarioSpec.from_file(path)
    base = data_directory(path, spec)
    assert base == public_data.PUBLIC_DATA
    assert base.is_relative_to(ROOT)
    src = spec.sources
    for source in (src.carbon_intensity, src.power_price, src.rtt, src.demand_shape):
        assert (base / source.file).is_file(), source.file
    assert (base / src.request_mix.file).is_file()


def test_the_named_data_files_exist_and_are_attributed() -> None:
    readme = README.read_text()
    named = [
        value
        for value in vars(public_data).values()
        if isinstance(value, Path) and value.parent == public_data.PUBLIC_DATA
    ]
    assert len(named) == 6
    for path in named:
        assert path.is_file(), path
    for path in public_data.PUBLIC_DATA.iterdir():
        if path != README:
            assert f"`{path.name}`" in readme, f"{path.name} has no source and licence in README"
    assert 'attribute "Electricity Maps"' in readme and "ODbL" in readme


def _text_files() -> list[Path]:
    """The repository's sources, docs and configuration (caches and the virtualenv pruned)."""
    skip = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__", ".work"}
    suffixes = {".py", ".yaml", ".yml", ".md", ".toml", ".sh", ".cfg", ".txt"}
    found: list[Path] = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip]
        found += [Path(folder) / f for f in files if Path(f).suffix in suffixes or f == "Makefile"]
    return found


def test_nothing_names_the_data_outside_the_repository() -> None:
    outside = "/".join(("shared", "scenarios"))  # spelled so that this file does not match
    offenders = [
        str(p.relative_to(ROOT)) for p in _text_files() if outside in p.read_text(errors="ignore")
    ]
    assert offenders == []
