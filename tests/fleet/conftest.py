"""The local Karmada fleet, started once per test session and always torn down.

`fleet` brings up Karmada's control plane and the members eu, us and ap
(gridplace_e2e.cluster.fleet) under a name owned by this test process
(`gridplace-fleet-test-<pid>`); fleets left by runs that crashed are removed first. A fleet that
cannot start fails the tests with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator

import pytest

from gridplace_e2e.cluster.build import BuildError
from gridplace_e2e.cluster.fleet import LocalFleet
from gridplace_e2e.cluster.local import ClusterError, _process_state, default_root

FLEET_PREFIX = "gridplace-fleet-test"


def abandoned_fleets() -> list[str]:
    """Test fleets whose owning process has ended."""
    folder = default_root().resolve() / "fleets"
    pattern = re.compile(rf"{FLEET_PREFIX}-(\d+)(-[a-z0-9]+)?")
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if (match := pattern.fullmatch(path.name)) and _process_state(int(match.group(1))) in (
            None,
            "Z",
        ):
            found.append(path.name)
    return found


@pytest.fixture(scope="session")
def fleet() -> Iterator[LocalFleet]:
    for name in abandoned_fleets():
        LocalFleet(name).down()
    local = LocalFleet(f"{FLEET_PREFIX}-{os.getpid()}")
    try:
        local.up()
    except (BuildError, ClusterError, subprocess.TimeoutExpired) as error:
        with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
            local.down()
        pytest.fail(f"the test fleet could not start: {error}", pytrace=False)
    try:
        yield local
    finally:
        running = local.all_processes()
        local.down()
    # down() leaves nothing behind: no process of Karmada or a member, no state.
    alive = [pid for pid in running if _process_state(pid) not in (None, "Z")]
    assert not alive, f"still running after down(): {alive}"
    assert not local.workdir.exists()
    assert not any(cluster.workdir.exists() for cluster in local.members.values())
