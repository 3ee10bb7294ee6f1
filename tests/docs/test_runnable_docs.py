"""Every shell block of README.md and docs/*.md marked runnable is run, so the docs cannot drift.

Markers are HTML comments on the line before a fenced block (Markdown renders them invisibly):

- `<!-- runnable -->` before a ```sh block: the block runs in bash (`-euo pipefail`) from the
  repository root and must exit 0;
- `<!-- runnable: output -->` before a ```console block: each `$ ` line is a command (a trailing
  backslash continues it) and the lines up to the next one are its output, stdout and stderr
  together, compared line by line (trailing spaces ignored). A line `...` stands for any number of
  lines; `$ echo $?` checks the exit code of the command before it. `ignore=REGEX` after `output`
  drops matching lines on both sides (timings);
- `<!-- runnable: cluster -->` before a ```sh block: as `runnable`, against the test cluster
  (KUBECONFIG and its kubectl set); the test is marked `cluster`.

Commands run with the project's environment first on PATH (`gridplace` and the other entry
points), and with helm when a block calls it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridplace_e2e.cluster.build import BuildError, ensure_binaries
from gridplace_e2e.cluster.handle import ClusterHandle

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!-- runnable(?::\s*(?P<kind>output|cluster)(?P<options>[^>]*))? -->$")
TIMEOUT_S = 120


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    kind: str  # "run", "output" or "cluster"
    ignore: str | None
    text: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def runnable_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks = []
    for index, line in enumerate(lines):
        match = MARKER.match(line.strip())
        if not match:
            continue
        fence = lines[index + 1] if index + 1 < len(lines) else ""
        kind = match["kind"] or "run"
        expected_fence = "```console" if kind == "output" else "```sh"
        assert fence.strip() == expected_fence, (
            f"{path.name}:{index + 1}: a `{line.strip()}` marker must stand right before a"
            f" {expected_fence} block, found {fence!r}"
        )
        end = next(i for i in range(index + 2, len(lines)) if lines[i].strip() == "```")
        options = (match["options"] or "").strip().lstrip(",").strip()
        ignore = options.removeprefix("ignore=") if options.startswith("ignore=") else None
        assert not options or ignore, f"{path.name}:{index + 1}: unknown option {options!r}"
        text = "\n".join(lines[index + 2 : end])
        blocks.append(Block(path, index + 2, kind, ignore, text))
    return blocks


BLOCKS = [block for path in DOCS for block in runnable_blocks(path)]


def environment(extra_path: list[Path], kubeconfig: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"COLUMNS", "LINES", "KUBECONFIG"}}
    path = [str(Path(sys.executable).parent), *map(str, extra_path), env.get("PATH", "")]
    env["PATH"] = os.pathsep.join(path)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return env


def helm_path(block: Block) -> list[Path]:
    if not re.search(r"(^|\s|\|)helm\s", block.text):
        return []
    try:
        return [ensure_binaries(progress=lambda _: None).bin_dir]
    except BuildError as err:
        pytest.fail(f"helm could not be built: {err}", pytrace=False)


def run_script(block: Block, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, (
        f"{block.id}: exit code {done.returncode}\n{done.stdout}\n{done.stderr}"
    )


def commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of a console block."""
    result: list[tuple[str, list[str]]] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        assert lines[i].startswith("$ "), f"{block.id}: expected a `$ ` line, got {lines[i]!r}"
        command = lines[i][2:]
        while command.endswith("\\"):
            i += 1
            command = command + "\n" + lines[i]
        i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        while output and not output[-1].strip():
            output.pop()
        result.append((command, output))
    return result


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; a `...` line in `expected` takes any number of lines."""
    if not expected:
        return not actual
    if expected[0].strip() == "...":
        return any(matches(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


def compare(block: Block, env: dict[str, str]) -> None:
    last_code: int | None = None
    for command, expected in commands(block):
        if command.strip() == "echo $?":
            assert last_code is not None, f"{block.id}: `echo $?` before any command"
            assert expected == [str(last_code)], f"{block.id}: exit code {last_code}"
            continue
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        last_code = done.returncode
        actual = [line.rstrip() for line in done.stdout.splitlines()]
        wanted = [line.rstrip() for line in expected]
        if block.ignore:
            drop = re.compile(block.ignore)
            actual = [line for line in actual if not drop.search(line)]
            wanted = [line for line in wanted if not drop.search(line)]
        assert matches(wanted, actual), (
            f"{block.id}: `{command}` printed\n"
            + "\n".join(actual)
            + "\n\nthe doc shows\n"
            + "\n".join(wanted)
        )


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind != "cluster"], ids=lambda b: b.id)
def test_runnable_block(block: Block) -> None:
    env = environment(helm_path(block))
    if block.kind == "output":
        compare(block, env)
    else:
        run_script(block, env)


@pytest.mark.cluster
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "cluster"], ids=lambda b: b.id)
def test_runnable_cluster_block(block: Block, cluster: ClusterHandle) -> None:
    run_script(block, environment([cluster.bin_dir], cluster.kubeconfig))


def test_the_marked_blocks_are_found() -> None:
    """The markers are where the docs show commands a reader can run without a cluster: the
    CLI's errors and plan, and the chart's rendering; losing them would silently test nothing."""
    found = {(b.path.name, b.kind) for b in BLOCKS}
    assert ("cli.md", "output") in found
    assert ("getting-started.md", "output") in found
    assert ("getting-started.md", "cluster") in found
    assert len(BLOCKS) >= 6


def test_the_comparison_can_fail() -> None:
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "b"], ["a", "b"])
    assert not matches(["a", "...", "d"], ["a", "b", "c"])
    assert not matches(["a", "b"], ["a", "b", "c"])
    block = Block(ROOT / "docs" / "x.md", 1, "output", None, "$ echo one\ntwo")
    with pytest.raises(AssertionError, match="printed"):
        compare(block, environment([]))
    failing = Block(ROOT / "docs" / "x.md", 1, "output", None, "$ false\n$ echo $?\n0")
    with pytest.raises(AssertionError, match="exit code 1"):
        compare(failing, environment([]))
