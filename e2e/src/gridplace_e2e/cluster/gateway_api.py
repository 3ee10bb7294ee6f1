"""Gateway API's CRDs (standard channel) for the local cluster, from the Go module
`sigs.k8s.io/gateway-api` as the module proxy serves it.

The module is downloaded once per version into the cache (``~/.cache/gridplace/go/pkg/mod``,
read-only as Go leaves it); the CRDs are its ``config/crd/standard/`` files, applied as they are
so that every route gridplace writes is validated against the real schemas and CEL rules.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from gridplace_e2e.cluster.build import BuildError, cache_dir

GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"
GATEWAY_API_VERSION = "v1.6.3"
# What gridplace uses: Gateways and HTTPRoutes (ReferenceGrants for cross-namespace backends).
# The other standard-channel kinds, and the ValidatingAdmissionPolicy against downgrades, are not
# needed to validate gridplace's routes.
STANDARD_CRDS = (
    "gateway.networking.k8s.io_gatewayclasses.yaml",
    "gateway.networking.k8s.io_gateways.yaml",
    "gateway.networking.k8s.io_httproutes.yaml",
    "gateway.networking.k8s.io_referencegrants.yaml",
)


def module_dir(version: str = GATEWAY_API_VERSION) -> Path:
    """The module's source, downloaded through the Go module proxy if not cached yet."""
    gomodcache = cache_dir() / "go" / "pkg" / "mod"
    cached = gomodcache / f"{GATEWAY_API_MODULE}@{version}"  # no capitals: no path escaping
    if (cached / "go.mod").is_file():  # every cluster start asks: no `go` run once it is there
        return cached
    env = dict(
        os.environ,
        GOMODCACHE=str(gomodcache),
        GOPATH=str(cache_dir() / "go"),
        GOFLAGS="-mod=mod",
    )
    with tempfile.TemporaryDirectory() as empty:  # outside any go.mod
        result = subprocess.run(
            ["go", "mod", "download", "-json", f"{GATEWAY_API_MODULE}@{version}"],
            cwd=empty,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or not info.get("Dir"):
        raise BuildError(
            f"go mod download {GATEWAY_API_MODULE}@{version} failed:"
            f" {info.get('Error') or result.stderr.strip()[-2000:]}"
        )
    return Path(info["Dir"])


def crd_files(version: str = GATEWAY_API_VERSION) -> list[Path]:
    """The standard-channel CRD files gridplace's cluster tests need."""
    folder = module_dir(version) / "config" / "crd" / "standard"
    files = [folder / name for name in STANDARD_CRDS]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise BuildError(f"{GATEWAY_API_MODULE}@{version} has no {', '.join(missing)}")
    return files
