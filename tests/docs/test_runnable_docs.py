"""Every shell block of README.md and docs/*.md marked runnable is run, so the docs cannot drift.

Markers are HTML comments on the line before a fenced block (Markdown renders them invisibly):

- `<!-- runnable -->` before a ```sh block: the block runs in bash (`-euo pipefail`) from the
  repository root and must exit 0;
- `<!-- runnable: output -->` before a ```console block: each `$ ` line is a command (a trailing
  backslash continues it) and the lines up to the next one are its output, stdout and stderr
  together, compared line by line (trailing spaces ignored). A line `...` stands for any number of
  lines; `$ echo $?` checks the exit code of the command before it. Options after `output`,
  separated by `, `: `ignore=REGEX` drops matching lines on both sides (figures a solve under a
  time limit varies), `mask=REGEX` replaces each match with `*` on both sides (timings);
- `<!-- runnable: cluster -->` before a ```sh block: as `runnable`, against the test cluster
  (KUBECONFIG, its kubectl and helm set); the test is marked `cluster`. The blocks share the names
  a reader uses (release `gridplace` in `gridplace-system`, namespace `serving`), so each starts
  from the state its page assumes (`CLUSTER_STATES`), and the module leaves the cluster as the
  other cluster tests expect it (the CRDs applied, no release, no `serving`).

Every other shell block (```sh, ```bash, ```shell, ```console) must be listed in `NOT_RUNNABLE`
with the reason, so that a new command in the docs is either run or consciously left out.

Commands run with the project's environment first on PATH (`gridplace` and the other entry
points), and with helm when a block calls it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridplace_e2e.cluster.build import BuildError, ensure_binaries
from gridplace_e2e.cluster.handle import ClusterHandle
from gridplace_e2e.cluster.local import poll

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!-- runnable(?::\s*(?P<kind>output|cluster)(?P<options>[^>]*))? -->$")
OPTION = re.compile(r"(?:^|,\s*)(?P<key>ignore|mask)=")
SHELL_FENCE = re.compile(r"^```(sh|bash|shell|console)$")
TIMEOUT_S = 120


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    kind: str  # "run", "output" or "cluster"
    ignore: str | None
    text: str
    mask: str | None = None

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
        options = parse_options((match["options"] or "").strip(), f"{path.name}:{index + 1}")
        text = "\n".join(lines[index + 2 : end])
        blocks.append(
            Block(path, index + 2, kind, options.get("ignore"), text, options.get("mask"))
        )
    return blocks


def parse_options(text: str, where: str) -> dict[str, str]:
    """`, ignore=REGEX, mask=REGEX` (either, both or none) into {"ignore": ..., "mask": ...}."""
    starts = list(OPTION.finditer(text))
    assert (starts[0].start() if starts else len(text)) == 0, f"{where}: unknown option {text!r}"
    options = {}
    ends = [after.start() for after in starts[1:]] + [len(text)] if starts else []
    for here, end in zip(starts, ends, strict=True):
        value = text[here.end() : end]
        assert value and here["key"] not in options, f"{where}: bad option {text!r}"
        options[here["key"]] = value
    return options


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
        if block.mask:
            hide = re.compile(block.mask)
            actual = [hide.sub("*", line) for line in actual]
            wanted = [hide.sub("*", line) for line in wanted]
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


# What a cluster block expects to find, by (file, first line): "crds" the CRDs applied by hand and
# no `serving` namespace (README's quickstart beside `gridplace run`); "no-release" no release and
# no `serving`, the CRDs either absent or handed to the release (install.md); "release" the chart
# installed. A block not listed needs nothing (it only reads).
CLUSTER_STATES = {
    ("README.md", "kubectl apply -f examples/regions.yaml"): "crds",
    ("docs/getting-started.md", "helm install gridplace charts/gridplace"): "no-release",
    ("docs/install.md", "helm install gridplace charts/gridplace"): "no-release",
    ("docs/install.md", "helm upgrade gridplace charts/gridplace"): "release",
    ("docs/install.md", "helm uninstall gridplace -n gridplace-system"): "release",
    ("docs/install.md", "kubectl label crd inferencedeployments.gridplace.dev"): "crds",
}
RELEASE, RELEASE_NAMESPACE, SERVING = "gridplace", "gridplace-system", "serving"
CRD_NAMES = sorted(p.stem for p in (ROOT / "crds").glob("*.yaml"))


def cluster_state(block: Block) -> str | None:
    first = block.text.strip().splitlines()[0]
    states = [
        s
        for (f, start), s in CLUSTER_STATES.items()
        if block.id.startswith(f + ":") and first.startswith(start)
    ]
    assert len(states) <= 1, f"{block.id}: more than one CLUSTER_STATES entry"
    return states[0] if states else None


class DocsCluster:
    """The session's cluster, brought into the state a page assumes before its block runs."""

    def __init__(self, cluster: ClusterHandle) -> None:
        self.cluster = cluster
        self.env = environment([cluster.bin_dir], cluster.kubeconfig)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.cluster.bin_dir / "helm"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        assert not check or done.returncode == 0, f"helm {' '.join(args)}: {done.stderr}"
        return done

    def released(self) -> bool:
        found = self.helm("status", RELEASE, "-n", RELEASE_NAMESPACE, check=False)
        return found.returncode == 0

    def uninstall(self) -> None:
        if self.released():
            self.helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait")

    def gone(self, *namespaces: str) -> None:
        kubectl = self.cluster.kubectl
        for name in namespaces:
            kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")

        def absent() -> bool:
            found = kubectl("get", "namespace", "-o", "name", check=False).stdout.split()
            return not {f"namespace/{name}" for name in namespaces} & set(found)

        assert poll(absent, 120), f"namespaces {namespaces} were not deleted"

    def crds(self, *, helm_labels: bool) -> None:
        """The CRDs applied and established; handed to the release, or plain."""
        kubectl = self.cluster.kubectl

        def deleting() -> bool:
            found = kubectl("get", "crd", *CRD_NAMES, "-o", "json", check=False)
            items = json.loads(found.stdout)["items"] if found.returncode == 0 else []
            return any(item["metadata"].get("deletionTimestamp") for item in items)

        assert poll(lambda: not deleting(), 120), "the CRDs are still being deleted"
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        kubectl("wait", "--for=condition=Established", "crd", *CRD_NAMES, "--timeout=60s")
        if helm_labels:
            kubectl("label", "--overwrite", "crd", *CRD_NAMES, "app.kubernetes.io/managed-by=Helm")
            kubectl(
                "annotate",
                "--overwrite",
                "crd",
                *CRD_NAMES,
                f"meta.helm.sh/release-name={RELEASE}",
                f"meta.helm.sh/release-namespace={RELEASE_NAMESPACE}",
            )
        else:
            kubectl("label", "crd", *CRD_NAMES, "app.kubernetes.io/managed-by-")
            kubectl(
                "annotate",
                "crd",
                *CRD_NAMES,
                "meta.helm.sh/release-name-",
                "meta.helm.sh/release-namespace-",
            )

    def prepare(self, state: str | None) -> None:
        if state == "crds":
            self.gone(SERVING)
            self.crds(helm_labels=False)
        elif state == "no-release":
            self.uninstall()
            self.gone(SERVING)
            self.crds(helm_labels=True)
        elif state == "release" and not self.released():
            self.prepare("no-release")
            self.helm(
                "install",
                RELEASE,
                str(ROOT / "charts" / "gridplace"),
                "-n",
                RELEASE_NAMESPACE,
                "--create-namespace",
                "--wait",
                "--timeout=120s",
            )

    def restore(self) -> None:
        """What the other cluster tests expect: no release, no `serving`, the CRDs as applied."""
        self.uninstall()
        examples = str(ROOT / "examples" / "regions.yaml")
        self.cluster.kubectl("delete", "-f", examples, "--ignore-not-found", check=False)
        self.gone(SERVING, RELEASE_NAMESPACE)
        self.crds(helm_labels=False)


@pytest.fixture(scope="module")
def docs_cluster(cluster: ClusterHandle) -> Iterator[DocsCluster]:
    docs = DocsCluster(cluster)
    docs.restore()  # what an earlier run that crashed may have left
    yield docs
    docs.restore()


@pytest.mark.cluster
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "cluster"], ids=lambda b: b.id)
def test_runnable_cluster_block(block: Block, docs_cluster: DocsCluster) -> None:
    docs_cluster.prepare(cluster_state(block))
    run_script(block, docs_cluster.env)


def test_every_cluster_state_names_a_marked_block() -> None:
    cluster_blocks = [b for b in BLOCKS if b.kind == "cluster"]
    for (file, start), state in CLUSTER_STATES.items():
        assert state in {"crds", "no-release", "release"}
        assert any(
            b.path == ROOT / file and b.text.strip().startswith(start) for b in cluster_blocks
        ), f"CLUSTER_STATES names no `runnable: cluster` block of {file} starting {start!r}"


FIRST_INSTALL = "installs from PyPI into the reader's virtualenv (network, minutes)"
USERS_CLUSTER = "changes the reader's own cluster (their node, registry, secret or files)"
MAKE = "make demo/test build, start and test everything (minutes to tens of minutes)"
SUITE = "runs a test suite of its own (minutes); pytest runs those tests anyway"
BENCH = "a benchmark: minutes of solving, and it rewrites docs/img"
SERVER = "starts a server that runs until stopped"
NEEDS_VLLM = "needs a vLLM server on 127.0.0.1:8000 (test_measure_profile.py runs the script)"
HYPOTHETICAL = "reads an invalid file the comment describes (tests/cli checks these messages)"

# Shell blocks that are not run, by (file, first line): every other block must be marked.
NOT_RUNNABLE: dict[tuple[str, str], str] = {
    (
        "README.md",
        "make demo   # sets everything up and runs the local demo on the embedded default cluster",
    ): MAKE,
    (
        "docs/development.md",
        "make demo   # build what is missing, start the cluster, print its"
        " GPU inventory, run the operator",
    ): MAKE,
    (
        "docs/development.md",
        "kind create cluster --name gridplace --image kindest/node:v1.34.0"
        " --kubeconfig /tmp/kind.yaml",
    ): "needs kind, a container runtime and GitHub (network)",
    (
        "docs/development.md",
        "uv run gridplace-cluster [--name NAME] [--workdir DIR] build | up |"
        " down | status | inventory",
    ): "a synopsis, not a command",
    ("docs/cli.md", "python3 -m venv ~/.venvs/gridplace"): FIRST_INSTALL,
    ("docs/getting-started.md", "python3 -m venv ~/.venvs/gridplace"): FIRST_INSTALL,
    (
        "docs/cli.md",
        "$ gridplace plan typo.yaml           # gpus: {NVIDIA-H100-80GB-HMB3: 8}",
    ): HYPOTHETICAL,
    ("docs/cli.md", "$ gridplace plan bad.yaml            # carbonIntensity: -380"): HYPOTHETICAL,
    (
        "docs/cli.md",
        "unserved demand (policy, UTC hours, model/zone, peak, reason):",
    ): "output of a scenario with unserved demand, no command",
    (
        "docs/cli.md",
        "uv run gridplace crds --reference docs/api.md   # crds/*.yaml and docs/api.md",
    ): "rewrites generated files in the checkout; tests/api checks they are current",
    (
        "docs/getting-started.md",
        "docker build -f operator/Dockerfile -t"
        " registry.example.com/platform/gridplace-operator:0.1.0 .",
    ): USERS_CLUSTER,
    (
        "docs/getting-started.md",
        "kubectl label node gpu-node-17 topology.kubernetes.io/region=dc-frankfurt",
    ): USERS_CLUSTER,
    ("docs/getting-started.md", "kubectl apply -f my-regions.yaml"): USERS_CLUSTER,
    ("docs/getting-started.md", "kubectl create namespace serving"): USERS_CLUSTER,
    (
        "docs/getting-started.md",
        "vllm serve my-org/my-model --max-num-seqs 64 --max-num-batched-tokens 8192 --port 8000",
    ): "needs vLLM and a GPU",
    (
        "docs/getting-started.md",
        "python3 scripts/measure_profile.py --url http://127.0.0.1:8000 --model my-org/my-model \\",
    ): NEEDS_VLLM,
    (
        "docs/getting-started.md",
        "make cluster-up                       # prints `export KUBECONFIG=...`; run that line",
    ): "starts a second local cluster and leaves the operator running in the background",
    (
        "docs/fleet.md",
        "kubectl create secret generic karmada-kubeconfig -n gridplace-system \\",
    ): USERS_CLUSTER,
    (
        "docs/signals.md",
        "kubectl -n gridplace-system create secret generic electricity-maps"
        ' --from-literal=token="$EMAPS_TOKEN"',
    ): USERS_CLUSTER,
    (
        "docs/operator.md",
        "gridplace run --kubeconfig ~/.kube/config            # watch every namespace",
    ): SERVER,
    (
        "docs/vllm-simulator.md",
        "uv run gridplace-vllm-sim --model meta-llama/Llama-3.1-8B-Instruct --port 8000 \\",
    ): SERVER,
    (
        "docs/vllm-simulator.md",
        "uv run gridplace-loadgen --trace"
        " examples/scenarios/data/AzureLLMInferenceTrace_conv_2023-11-16.csv \\",
    ): "needs the simulator above running; up to 120 s of load",
    ("docs/vllm-simulator.md", "uv run pytest tests/vllmsim -q"): SUITE,
    (
        "docs/autoscaling.md",
        "GRIDPLACE_TEST_CLUSTER=gp-loop uv run pytest tests/closed_loop -q   # about 6 minutes",
    ): SUITE,
    (
        "docs/reliability.md",
        "uv run pytest -m faults -s           # the fault suite; one JSON line per fault",
    ): SUITE,
    ("docs/signals.md", "GRIDPLACE_TEST_CLUSTER=gp-<you> uv run pytest tests/providers -q"): SUITE,
    (
        "docs/autoscaling.md",
        "uv run python bench/autoscale.py --replay"
        " examples/scenarios/data/AzureLLMInferenceTrace_conv_2023-11-16.csv --replay-copies 10",
    ): BENCH,
    (
        "docs/benchmarks.md",
        "$ uv run python bench/placement_quality.py --plot docs/img/placement-quality-public.png",
    ): BENCH,
}


def shell_blocks(path: Path) -> list[tuple[int, str, bool]]:
    """(line of the opening fence, first line, marked) of every shell block of a page."""
    lines = path.read_text().splitlines()
    found = []
    index = 0
    while index < len(lines):
        if SHELL_FENCE.match(lines[index].strip()):
            end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
            body = [line.strip() for line in lines[index + 1 : end] if line.strip()]
            marked = index > 0 and bool(MARKER.match(lines[index - 1].strip()))
            found.append((index + 1, body[0] if body else "", marked))
            index = end
        index += 1
    return found


def test_every_shell_block_is_run_or_listed_with_a_reason() -> None:
    """A new command in the docs must be run (a marker) or listed in NOT_RUNNABLE with a reason;
    a listed block that no longer exists, or that is marked now, must leave the list."""
    unaccounted, listed_and_marked, seen = [], [], set()
    for path in DOCS:
        name = str(path.relative_to(ROOT))
        for line, first, marked in shell_blocks(path):
            key = (name, first)
            if key in NOT_RUNNABLE:
                seen.add(key)
                if marked:
                    listed_and_marked.append(f"{name}:{line}")
            elif not marked:
                unaccounted.append(f"{name}:{line}: {first}")
    assert not unaccounted, (
        "shell blocks neither marked runnable nor listed in NOT_RUNNABLE:\n"
        + "\n".join(unaccounted)
    )
    assert not listed_and_marked, f"marked and listed in NOT_RUNNABLE: {listed_and_marked}"
    stale = sorted(set(NOT_RUNNABLE) - seen)
    assert not stale, f"NOT_RUNNABLE lists blocks the docs no longer have: {stale}"
    assert len(BLOCKS) == sum(marked for p in DOCS for _, _, marked in shell_blocks(p))


def test_the_marked_blocks_are_found() -> None:
    """The markers are where the docs show commands a reader can run: the CLI's errors, plan and
    simulation, the chart's rendering, and the quickstart, install, upgrade and uninstall against
    the test cluster; losing them would silently test nothing."""
    found = {(b.path.name, b.kind) for b in BLOCKS}
    assert ("cli.md", "output") in found
    assert ("getting-started.md", "output") in found
    assert ("getting-started.md", "cluster") in found
    assert ("install.md", "cluster") in found
    assert ("README.md", "cluster") in found
    assert len(BLOCKS) >= 15


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


def test_the_options_drop_and_mask_only_what_they_match() -> None:
    options = parse_options(", ignore=^gridplace , mask=\\s+\\d+ms$", "x.md:1")
    assert options == {"ignore": "^gridplace ", "mask": "\\s+\\d+ms$"}
    assert parse_options("", "x.md:1") == {}
    with pytest.raises(AssertionError, match="unknown option"):
        parse_options(", ignores=x", "x.md:1")
    text = "$ printf 'gridplace 1\\nbase 2   10ms\\n'\ngridplace 9\nbase 2  999ms"
    compare(Block(ROOT / "x.md", 1, "output", "^gridplace ", text, "\\s+\\d+ms$"), environment([]))
    changed = text.replace("base 2  999ms", "base 3  999ms")
    with pytest.raises(AssertionError, match="printed"):
        compare(
            Block(ROOT / "x.md", 1, "output", "^gridplace ", changed, "\\s+\\d+ms$"),
            environment([]),
        )


def test_an_unlisted_shell_block_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- runnable -->\n```sh\ntrue\n```\n\n   ```bash\n   make x\n   ```\n")
    assert shell_blocks(page) == [(2, "true", True), (6, "make x", False)]
