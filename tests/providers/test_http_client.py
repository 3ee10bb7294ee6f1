"""The HTTP layer every API provider uses: retries with backoff on 429/5xx/timeouts, none on
other 4xx, and messages that name the status and URL but never a credential."""

from __future__ import annotations

import socket

import pytest
from scripted_server import Answer, ScriptedServer, json_answer

from gridplace_operator.providers.http import HttpClient, HttpStatusError, safe_url
from gridplace_operator.signals import SignalError


def client(sleeps: list[float], attempts: int = 3, timeout: float = 0.5) -> HttpClient:
    return HttpClient(
        timeout_seconds=timeout, attempts=attempts, backoff_seconds=0.1, sleep=sleeps.append
    )


def test_server_errors_are_retried_with_doubling_backoff_until_success(
    server: ScriptedServer,
) -> None:
    server.script("/x", Answer(500), Answer(503), json_answer({"ok": 1}))
    sleeps: list[float] = []
    assert client(sleeps).get_json(f"{server.url}/x", what="test") == {"ok": 1}
    assert server.count("/x") == 3
    assert sleeps == [0.1, 0.2]


@pytest.mark.parametrize("status", [429, 500, 502])
def test_retryable_status_gives_up_after_the_attempts_with_status_and_body(
    server: ScriptedServer, status: int
) -> None:
    server.script("/x", json_answer({"message": "slow down"}, status=status))
    sleeps: list[float] = []
    with pytest.raises(HttpStatusError) as raised:
        client(sleeps).get(f"{server.url}/x", what="Thing")
    assert server.count("/x") == 3
    assert raised.value.status == status
    message = str(raised.value)
    assert f"Thing: HTTP {status}" in message
    assert "slow down" in message
    assert "after 3 attempts" in message
    assert f"{server.url}/x" in message


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(server: ScriptedServer, status: int) -> None:
    server.script("/x", json_answer({"message": "Invalid token"}, status=status))
    sleeps: list[float] = []
    with pytest.raises(HttpStatusError, match=f"HTTP {status}: .*Invalid token"):
        client(sleeps).get(f"{server.url}/x", what="Thing")
    assert server.count("/x") == 1
    assert sleeps == []


def test_a_slow_answer_times_out_on_every_attempt(server: ScriptedServer) -> None:
    server.script("/slow", json_answer({"ok": 1}, delay_seconds=5))
    sleeps: list[float] = []
    with pytest.raises(SignalError, match=r"no answer within 0.3s .*after 2 attempts"):
        client(sleeps, attempts=2, timeout=0.3).get(f"{server.url}/slow", what="Thing")
    assert server.count("/slow") == 2


def test_refused_connection_is_reported() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    with pytest.raises(SignalError, match="cannot connect"):
        client(sleeps, attempts=2).get(f"http://127.0.0.1:{port}/x", what="Thing")
    assert sleeps == [0.1]


def test_a_body_that_is_not_json_is_named(server: ScriptedServer) -> None:
    server.script("/x", Answer(200, b"<html>maintenance</html>", "text/html"))
    with pytest.raises(SignalError, match="not JSON: <html>maintenance</html>"):
        client([]).get_json(f"{server.url}/x", what="Thing")


def test_messages_never_carry_user_info_or_query() -> None:
    assert (
        safe_url("https://user:s3cret@host:8443/a/b.csv?token=abc") == "https://host:8443/a/b.csv"
    )
