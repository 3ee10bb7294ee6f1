"""`gridplace run`: where its unauthenticated endpoints (/metrics, /healthz) listen."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import kopf
import pytest

from gridplace_operator.cli import main
from gridplace_operator.handlers import OperatorConfig
from gridplace_operator.metrics import OperatorMetrics


def _started(monkeypatch: pytest.MonkeyPatch, *argv: str) -> dict[str, Any]:
    """The arguments `gridplace run` hands to kopf (which is not started)."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "configure", lambda **_: None)
    monkeypatch.setattr(kopf, "run", lambda **kwargs: seen.update(kwargs))
    assert main(["run", *argv]) == 0
    return seen


def test_endpoints_bind_to_loopback_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    started = _started(monkeypatch)
    config: OperatorConfig = started["memo"]["config"]
    assert (config.metrics_address, config.metrics_port) == ("127.0.0.1", 8081)
    assert started["liveness_endpoint"] == "http://127.0.0.1:8080/healthz"
    assert OperatorConfig().metrics_address == "127.0.0.1"  # kopf run without the CLI, too


def test_addresses_are_passed_through_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    started = _started(
        monkeypatch,
        "--metrics-address=::",
        "--metrics-port=9100",
        "--liveness=http://[::]:9101/healthz",
    )
    config: OperatorConfig = started["memo"]["config"]
    assert (config.metrics_address, config.metrics_port) == ("::", 9100)
    assert started["liveness_endpoint"] == "http://[::]:9101/healthz"
    assert _started(monkeypatch, "--liveness=")["liveness_endpoint"] is None  # off


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _outward_address() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address: str = s.getsockname()[0]
    return None if address.startswith("127.") else address


def test_default_metrics_address_is_not_reachable_from_other_hosts() -> None:
    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no address besides loopback")
    port = _free_port()
    OperatorMetrics().serve(port, OperatorConfig().metrics_address)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert b"gridplace_plans_total" in answer.read()
    with pytest.raises(ConnectionRefusedError), socket.create_connection((outward, port), 5):
        pass
