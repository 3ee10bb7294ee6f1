"""Start and stop simulator processes (for tests and the local cluster's pod backing)."""

from __future__ import annotations

import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class SimProcess:
    process: subprocess.Popen[str]
    base_url: str  # e.g. http://127.0.0.1:41234

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout_s`."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_simulator(args: Sequence[str], start_timeout_s: float = 20.0) -> SimProcess:
    """Run `gridplace-vllm-sim` on 127.0.0.1 with a free port and wait until it listens.

    `args` are the simulator's flags (at least `--model`); host and port are chosen here.
    """
    cmd = [sys.executable, "-m", "gridplace_e2e.vllmsim.cli", *args, "--host", "127.0.0.1",
           "--port", "0"]  # fmt: skip
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + start_timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        line = process.stdout.readline() if ready else ""
        if " on http://" in line:  # the banner printed once it listens
            return SimProcess(process, line.rsplit(" on ", 1)[1].strip())
    SimProcess(process, "").stop()
    raise RuntimeError(
        f"gridplace-vllm-sim {' '.join(args)} did not start within {start_timeout_s} s "
        f"(exit code {process.returncode})"
    )
