"""Guards for the project layout that tools cannot enforce on their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_operator_folder_is_not_a_package() -> None:
    # `operator` is a standard-library module; a package of that name at the root would shadow it
    # for pytest and mypy.
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert (ROOT / "operator" / "src" / "gridplace_operator" / "__init__.py").is_file()


def test_every_import_contract_holds() -> None:
    """The walls between the parts (pyproject.toml, `[tool.importlinter]`) all stand, and the
    ones docs/operator.md names are among them."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 broken" in result.stdout
    for wall in (
        "The placement engine knows nothing of Kubernetes or the operator",
        "The API imports nothing else of the operator",
        "Signals never reach into planning or reconcile",
        "Reconcile is pure",
        "Only kube/ talks to the API server",
    ):
        assert f"{wall}" in result.stdout, wall


def test_every_part_of_the_operator_says_what_lives_there() -> None:
    package = ROOT / "operator" / "src" / "gridplace_operator"
    for init in package.glob("*/__init__.py"):
        text = init.read_text()
        assert text.startswith('"""'), f"{init.parent.name}/ has no docstring"


def test_placement_does_not_import_kubernetes_at_runtime() -> None:
    code = (
        "import sys, gridplace_placement, pkgutil, importlib\n"
        "for m in pkgutil.walk_packages(gridplace_placement.__path__, 'gridplace_placement.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [n for n in ('kopf', 'kubernetes', 'gridplace_operator') if n in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
