"""Builds the local control plane's binaries from Go modules and Debian packages, once per version.

Every component lands in its own version-keyed folder under the cache
(``~/.cache/gridplace/bin/<component>-<version>/``); a folder only appears once its build has
finished, so a present folder means a complete build. ``bin/path/`` holds symlinks to the current
versions and is what goes first on ``PATH``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.10"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.21.4"
# The manifest linter the chart tests run on rendered manifests.
KUBE_SCORE_VERSION = "v1.20.0"
# The multi-cluster control plane of the local fleet (fleet.py).
KARMADA_VERSION = "v1.16.0"
KARMADA_MODULE = "github.com/karmada-io/karmada"
# Karmada's commands (under cmd/) the local fleet runs; each is installed as karmada-<command>.
KARMADA_COMMANDS = ("controller-manager", "scheduler", "aggregated-apiserver", "webhook")

# The wrapper Go modules (go.mod + go.sum) that pin Kubernetes and etcd.
GO_MODULES = Path(__file__).resolve().parents[3] / "go"

KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")

Progress = Callable[[str], None]


class BuildError(RuntimeError):
    """A build step failed; the message names the step and ends with the tool's last output."""


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of every program the local cluster runs."""

    bin_dir: Path  # symlinks to all of the below, to put first on PATH
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    kwokctl: Path
    helm: Path
    kube_score: Path
    prometheus: Path


def cache_dir() -> Path:
    if explicit := os.environ.get("GRIDPLACE_CACHE_DIR"):
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gridplace"


def _version_ldflags(package: str, version: str) -> list[str]:
    major, minor = version.removeprefix("v").split(".")[:2]
    return [
        f"-X {package}.gitVersion={version}",
        f"-X {package}.gitMajor={major}",
        f"-X {package}.gitMinor={minor}",
        f"-X {package}.gitTreeState=clean",
    ]


def kubernetes_ldflags(version: str = KUBERNETES_VERSION) -> str:
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += _version_ldflags(package, version)
    return " ".join(flags)


def helm_ldflags(version: str = HELM_VERSION, kube_version: str = KUBERNETES_VERSION) -> str:
    major, minor = kube_version.removeprefix("v").split(".")[:2]
    flags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={version}"]
    # The Kubernetes version `helm template` and `helm lint` assume when no cluster is asked.
    for package in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
        flags += [f"-X {package}.k8sVersionMajor={major}", f"-X {package}.k8sVersionMinor={minor}"]
    return " ".join(flags)


def _go_env(gobin: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, CGO_ENABLED="0")
    if gobin is not None:
        env["GOBIN"] = str(gobin)
    return env


def _run(
    step: str,
    cmd: list[str],
    progress: Progress,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    total: int | None = None,
) -> None:
    """Runs one build step, reporting each compiled package; raises BuildError naming the step."""
    if shutil.which(cmd[0]) is None:
        raise BuildError(f"{step}: `{cmd[0]}` is not installed (needed to build the local cluster)")
    tail: list[str] = []
    done = 0
    with subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail[-30:], line.rstrip()]
            done += 1
            if done % 100 == 0:
                of = f" of ~{total}" if total else ""
                progress(f"  {step}: {done}{of} packages compiled")
    if proc.returncode != 0:
        raise BuildError(
            f"{step} failed (exit {proc.returncode}): {' '.join(cmd)}\n" + "\n".join(tail)
        )


def _count_deps(module_dir: Path, packages: list[str]) -> int | None:
    result = subprocess.run(
        ["go", "list", "-deps", *packages],
        cwd=module_dir,
        capture_output=True,
        text=True,
        check=False,
        env=_go_env(),
    )
    return len(result.stdout.splitlines()) if result.returncode == 0 else None


def _build_kubernetes(out: Path, progress: Progress) -> None:
    module = GO_MODULES / "kubernetes"
    packages = [f"k8s.io/kubernetes/cmd/{name}" for name in KUBERNETES_COMMANDS]
    progress("  resolving Go modules (downloaded from the Go module proxy on the first build) ...")
    _run(
        f"go build Kubernetes {KUBERNETES_VERSION}",
        [
            "go",
            "build",
            "-v",
            "-trimpath",
            "-buildvcs=false",
            "-ldflags",
            kubernetes_ldflags(),
            "-o",
            f"{out}/",
            *packages,
        ],
        progress,
        env=_go_env(),
        cwd=module,
        total=_count_deps(module, packages),
    )


def _build_etcd(out: Path, progress: Progress) -> None:
    module = GO_MODULES / "etcd"
    _run(
        f"go build etcd {ETCD_VERSION}",
        [
            "go",
            "build",
            "-v",
            "-trimpath",
            "-buildvcs=false",
            "-ldflags",
            "-s -w",
            "-o",
            str(out / "etcd"),
            "go.etcd.io/etcd/server/v3",
        ],
        progress,
        env=_go_env(),
        cwd=module,
    )


def _go_install(
    out: Path, progress: Progress, name: str, version: str, *, packages: list[str], ldflags: str
) -> None:
    """`go install` of tools whose modules need no replace lines, into `out`."""
    _run(
        f"go install {name} {version}",
        ["go", "install", "-v", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, *packages],
        progress,
        env=_go_env(gobin=out),
    )


def _build_kwok(out: Path, progress: Progress) -> None:
    packages = [f"sigs.k8s.io/kwok/cmd/{cmd}@{KWOK_VERSION}" for cmd in ("kwok", "kwokctl")]
    _go_install(out, progress, "kwok", KWOK_VERSION, packages=packages, ldflags="-s -w")


def _build_helm(out: Path, progress: Progress) -> None:
    packages = [f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"]
    _go_install(out, progress, "helm", HELM_VERSION, packages=packages, ldflags=helm_ldflags())


def _build_kube_score(out: Path, progress: Progress) -> None:
    packages = [f"github.com/zegl/kube-score/cmd/kube-score@{KUBE_SCORE_VERSION}"]
    _go_install(out, progress, "kube-score", KUBE_SCORE_VERSION, packages=packages, ldflags="-s -w")


def prometheus_package_version() -> str:
    """The version of Debian's `prometheus` package that apt would download (updates lists once)."""

    def candidate() -> str | None:
        out = subprocess.run(
            ["apt-cache", "policy", "prometheus"], capture_output=True, text=True, check=False
        ).stdout
        match = re.search(r"Candidate:\s*(\S+)", out)
        return match.group(1) if match and match.group(1) != "(none)" else None

    if shutil.which("apt-cache") is None:
        raise BuildError("prometheus: apt-cache not found; Debian's `prometheus` package is used")
    if (version := candidate()) is None:
        _run("apt-get update (for the prometheus package)", ["apt-get", "update"], lambda _: None)
        version = candidate()
    if version is None:
        raise BuildError("prometheus: Debian's `prometheus` package is not available from apt")
    return version


def _unpack_prometheus(version: str, out: Path, progress: Progress) -> None:
    # `apt-get install` would run the package's postinst, which starts a system daemon on :9090.
    with tempfile.TemporaryDirectory() as download:
        _run(
            f"apt-get download prometheus={version}",
            ["apt-get", "download", f"prometheus={version}"],
            progress,
            cwd=Path(download),
        )
        (deb,) = Path(download).glob("prometheus_*.deb")
        _run("dpkg -x prometheus", ["dpkg", "-x", str(deb), str(out)], progress)


@contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    """Serialises builds across processes (e.g. `make demo` and a test run at once)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_karmada(out: Path, progress: Progress) -> None:
    module = GO_MODULES / "karmada"
    packages = [f"{KARMADA_MODULE}/cmd/{name}" for name in KARMADA_COMMANDS]
    progress("  resolving Go modules (downloaded from the Go module proxy on the first build) ...")
    ldflags = f"-s -w -X {KARMADA_MODULE}/pkg/version.gitVersion={KARMADA_VERSION}"
    _run(
        f"go build Karmada {KARMADA_VERSION}",
        ["go", "build", "-v", "-trimpath", "-buildvcs=false", "-ldflags", ldflags,
         "-o", f"{out}/", *packages],
        progress,
        env=_go_env(),
        cwd=module,
        total=_count_deps(module, packages),
    )  # fmt: skip
    for name in KARMADA_COMMANDS:
        (out / name).rename(out / f"karmada-{name}")


def karmada_module_dir() -> Path:
    """Karmada's module source in the Go module cache (downloaded when missing): its CRDs and
    webhook configuration are read from there at run time."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{KARMADA_MODULE}@{KARMADA_VERSION}"],
        cwd=GO_MODULES / "karmada", capture_output=True, text=True, check=False, env=_go_env(),
    )  # fmt: skip
    if result.returncode != 0:
        raise BuildError(f"go mod download {KARMADA_MODULE}@{KARMADA_VERSION}: {result.stderr}")
    return Path(json.loads(result.stdout)["Dir"])


def _ensure(folder: Path, build: Callable[[Path, Progress], None], progress: Progress) -> Path:
    if folder.is_dir():
        return folder
    progress(f"building {folder.name} (first time only) ...")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    build(partial, progress)
    partial.rename(folder)
    progress(f"built {folder.name}")
    return folder


def ensure_binaries(progress: Progress = print) -> Binaries:
    """Builds whatever is missing from the cache and returns the paths of all binaries."""
    root = cache_dir() / "bin"
    with _build_lock(root):
        kubernetes = _ensure(root / f"kubernetes-{KUBERNETES_VERSION}", _build_kubernetes, progress)
        etcd = _ensure(root / f"etcd-{ETCD_VERSION}", _build_etcd, progress)
        kwok = _ensure(root / f"kwok-{KWOK_VERSION}", _build_kwok, progress)
        helm = _ensure(root / f"helm-{HELM_VERSION}", _build_helm, progress)
        kube_score = _ensure(root / f"kube-score-{KUBE_SCORE_VERSION}", _build_kube_score, progress)
        prometheus = _find_prometheus(root)
        if prometheus is None:
            version = prometheus_package_version()
            prometheus = _ensure(
                root / f"prometheus-{version.replace(':', '_')}",
                lambda out, report: _unpack_prometheus(version, out, report),
                progress,
            )
        binaries = Binaries(
            bin_dir=root / "path",
            etcd=etcd / "etcd",
            kube_apiserver=kubernetes / "kube-apiserver",
            kube_controller_manager=kubernetes / "kube-controller-manager",
            kube_scheduler=kubernetes / "kube-scheduler",
            kubectl=kubernetes / "kubectl",
            kwok=kwok / "kwok",
            kwokctl=kwok / "kwokctl",
            helm=helm / "helm",
            kube_score=kube_score / "kube-score",
            prometheus=prometheus / "usr" / "bin" / "prometheus",
        )
        _link_path_dir(binaries)
    return binaries


@dataclass(frozen=True)
class KarmadaBinaries:
    """Karmada's components (only the local fleet needs them)."""

    controller_manager: Path
    scheduler: Path
    aggregated_apiserver: Path
    webhook: Path


def ensure_karmada_binaries(progress: Progress = print) -> KarmadaBinaries:
    """Builds Karmada's components unless cached (minutes, once per version)."""
    root = cache_dir() / "bin"
    with _build_lock(root):
        folder = _ensure(root / f"karmada-{KARMADA_VERSION}", _build_karmada, progress)
    binaries = KarmadaBinaries(
        **{name.replace("-", "_"): folder / f"karmada-{name}" for name in KARMADA_COMMANDS}
    )
    for path in vars(binaries).values():
        if not path.is_file():
            raise BuildError(f"{path} is missing from the cache; delete {folder} to rebuild it")
    return binaries


def _find_prometheus(root: Path) -> Path | None:
    """An already unpacked Prometheus package, so that a warm cache never needs apt."""
    unpacked = sorted(p for p in root.glob("prometheus-*") if not p.name.endswith(".partial"))
    return unpacked[-1] if unpacked else None


def _link_path_dir(binaries: Binaries) -> None:
    binaries.bin_dir.mkdir(parents=True, exist_ok=True)
    for path in vars(binaries).values():
        if path == binaries.bin_dir:
            continue
        if not path.is_file():
            raise BuildError(
                f"{path} is missing from the cache; delete {path.parent} to rebuild it"
            )
        link = binaries.bin_dir / path.name
        if link.is_symlink() and link.readlink() == path:
            continue
        link.unlink(missing_ok=True)
        link.symlink_to(path)
