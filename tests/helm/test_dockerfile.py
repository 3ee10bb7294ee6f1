"""operator/Dockerfile without Docker: its build stage's COPY and `uv` steps are replayed in a
scratch folder (the same commands, on the same files), and the image's runtime settings are checked
against what the chart expects. No Dockerfile linter is packaged for Debian or PyPI, so these are
the checks."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helmchart import CHART, ROOT

DOCKERFILE = ROOT / "operator" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, rest))
    return result


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def test_runtime_stage_matches_the_chart() -> None:
    build, runtime = stages()
    assert build[0] == ("FROM", "python:3.11-slim-bookworm AS build")
    assert runtime[0] == ("FROM", "python:3.11-slim-bookworm")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    user = dict(runtime)["USER"]
    assert (
        user
        == f"{values['securityContext']['runAsUser']}:{values['securityContext']['runAsGroup']}"
    )
    assert dict(runtime)["ENTRYPOINT"] == '["gridplace"]'
    assert dict(runtime)["EXPOSE"].split() == [
        str(values["healthPort"]),
        str(values["metrics"]["port"]),
    ]
    assert ("COPY", "--from=build /opt/gridplace /opt/gridplace") in runtime
    assert not [rest for keyword, rest in runtime if keyword == "RUN" and "pip" in rest]


@pytest.mark.timeout(600)
def test_build_stage_installs_the_operator_and_nothing_else(tmp_path: Path) -> None:
    build = stages()[0]
    env = env_of(build)
    context = tmp_path / "src"
    venv = tmp_path / "venv"
    env = {**os.environ, **env, "UV_PROJECT_ENVIRONMENT": str(venv)}
    env.pop("VIRTUAL_ENV", None)
    context.mkdir()
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc")
    ran = 0
    for keyword, rest in build:
        if keyword == "COPY":
            *sources, target = rest.split()  # every target of a file here is a folder
            for source in map(ROOT.joinpath, sources):
                if source.is_dir():
                    shutil.copytree(source, context / target, ignore=ignored)
                else:
                    (context / target).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, context / target / source.name)
        elif keyword == "RUN" and rest.startswith("uv "):
            done = subprocess.run(
                shlex.split(rest), cwd=context, env=env, capture_output=True, text=True, check=False
            )
            assert done.returncode == 0, f"{rest}\n{done.stderr[-3000:]}"
            ran += 1
    assert ran == 2
    cli = subprocess.run(
        [str(venv / "bin" / "gridplace"), "run", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 0 and "--liveness" in cli.stdout
    installed = {
        p.name.split("-")[0].lower()
        for p in (venv / "lib").glob("python3*/site-packages/*.dist-info")
    }
    assert {"gridplace_operator", "gridplace_placement", "kopf", "ortools"} <= installed
    assert not installed & {"gridplace_e2e", "pytest", "ruff", "mypy", "lupa"}
