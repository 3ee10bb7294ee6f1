"""The autoscaling benchmark (bench/autoscale.py, a script) loaded as a module for its tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]
NAME = "bench_autoscale"


def autoscale_bench() -> ModuleType:
    """The module, loaded once per test session."""
    if NAME in sys.modules:
        return sys.modules[NAME]
    spec = importlib.util.spec_from_file_location(NAME, ROOT / "bench" / "autoscale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module
