"""`gridplace run`: where its unauthenticated endpoints (/metrics, /healthz) listen, and the
credentials and API server it checks before kopf starts (one line and an exit, not a retry loop)."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest

from gridplace_operator import cli
from gridplace_operator.cli import main
from gridplace_operator.kube.client import load_client_config
from gridplace_operator.main import OperatorConfig
from gridplace_operator.report.metrics import OperatorMetrics


def _started(monkeypatch: pytest.MonkeyPatch, *argv: str) -> dict[str, Any]:
    """The arguments `gridplace run` hands to kopf (which is not started)."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli, "preflight", lambda *_: (0, None))
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


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def _kopf_must_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**_: Any) -> None:
        raise AssertionError("kopf started")

    monkeypatch.setattr(kopf, "run", refuse)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda tmp: tmp / "absent.yaml", "{path}: no such file"),
        (lambda tmp: tmp, "{path} is a directory, not a kubeconfig file"),
    ],
)
def test_a_kubeconfig_that_is_not_a_file_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    make: Any,
    problem: str,
) -> None:
    _kopf_must_not_start(monkeypatch)
    path = make(tmp_path)
    assert main(["run", "--kubeconfig", str(path)]) == 2
    message = problem.format(path=path)
    assert capsys.readouterr().err == f"gridplace run: error: --kubeconfig {message}\n"


def test_a_file_that_is_not_a_kubeconfig_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _kopf_must_not_start(monkeypatch)
    path = tmp_path / "regions.yaml"
    path.write_text("models: [unclosed\n")
    assert main(["run", "--kubeconfig", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"gridplace run: error: cannot load Kubernetes credentials (the kubeconfig {path}): "
    )


def test_an_unreachable_api_server_is_one_line_naming_it_after_a_bounded_wait(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _kopf_must_not_start(monkeypatch)
    monkeypatch.setattr(cli, "API_SERVER_WAIT_SECONDS", 1.0)
    server = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    path = _kubeconfig(tmp_path / "kubeconfig", server)
    started = time.monotonic()
    assert main(["run", "--kubeconfig", str(path)]) == 1
    assert time.monotonic() - started < 15
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"gridplace run: error: cannot reach the Kubernetes API server at {server} ("
    )
    assert "Connection refused" in line and line.endswith("; tried for 1 s)")


class _ApiServer(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b'{"major": "1", "minor": "34"}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _ApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (403, None),  # it answers: what the credentials may do is RBAC's to say, later
        (401, "the Kubernetes API server at {url} rejected the credentials (HTTP 401)"),
    ],
)
def test_an_answering_api_server_lets_the_operator_start(
    api_server: http.server.HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    status: int,
    expected: str | None,
) -> None:
    monkeypatch.setattr(_ApiServer, "status", status)
    url = f"http://127.0.0.1:{api_server.server_address[1]}"
    client = load_client_config(str(_kubeconfig(tmp_path / "kubeconfig", url)))
    found = cli.reach_api_server(client, 1.0)
    assert found == (expected.format(url=url) if expected else None)


def test_the_installed_command_stops_at_once_on_a_missing_kubeconfig(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.yaml"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("gridplace")), "run", "--kubeconfig", str(missing)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == f"gridplace run: error: --kubeconfig {missing}: no such file\n"
