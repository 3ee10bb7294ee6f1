"""Start real simulator processes on 127.0.0.1 (free ports) and stop them after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gridplace_e2e.vllmsim.process import SimProcess, start_simulator


@pytest.fixture
def start_sim() -> Iterator[Callable[..., str]]:
    """Call with simulator flags; returns the base URL. Every process is stopped at teardown."""
    started: list[SimProcess] = []

    def start(*args: str) -> str:
        started.append(start_simulator(args))
        return started[-1].base_url

    yield start
    for sim in started:
        sim.stop()
