"""Start real simulator processes on 127.0.0.1 (free ports) and stop them after each test."""

from __future__ import annotations

import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest


def _wait_for_banner(proc: subprocess.Popen[str], deadline_s: float = 20.0) -> str:
    """The simulator prints `... on http://127.0.0.1:PORT` once it listens."""
    assert proc.stdout is not None
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if " on http://" in line:
                return line.rsplit(" on ", 1)[1].strip()
        if proc.poll() is not None:
            break
    raise AssertionError(f"simulator did not start (exit code {proc.poll()})")


@pytest.fixture
def start_sim() -> Iterator[Callable[..., str]]:
    """Call with simulator flags; returns the base URL. Every process is stopped at teardown."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> str:
        cmd = [
            sys.executable,
            "-m",
            "gridplace_e2e.vllmsim.cli",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]
        proc = subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        return _wait_for_banner(proc)

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
