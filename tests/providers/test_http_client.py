"""The HTTP layer every API provider uses: retries with backoff on 429/5xx/timeouts, none on
other 4xx; messages that name the status and URL but never a credential or the answer's body;
http(s) only, to the allowed hosts, and no redirect that would take credentials elsewhere."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from scripted_server import Answer, ScriptedServer, json_answer, redirect

from gridplace_operator.signals.providers.cache import TimedCache
from gridplace_operator.signals.providers.http import HttpClient, HttpStatusError, origin, safe_url
from gridplace_operator.signals.sources import SignalError


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
def test_retryable_status_gives_up_after_the_attempts_with_the_status_not_the_body(
    server: ScriptedServer, status: int
) -> None:
    server.script("/x", json_answer({"message": "slow down"}, status=status))
    sleeps: list[float] = []
    with pytest.raises(HttpStatusError) as raised:
        client(sleeps).get(f"{server.url}/x", what="Thing")
    assert server.count("/x") == 3
    assert raised.value.status == status
    message = str(raised.value)
    assert f"Thing: HTTP {status} from" in message
    assert "slow down" not in message  # the body may come from anywhere: never into status
    assert "after 3 attempts" in message
    assert f"{server.url}/x" in message


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(server: ScriptedServer, status: int) -> None:
    server.script("/x", json_answer({"message": "Invalid token"}, status=status))
    sleeps: list[float] = []
    with pytest.raises(HttpStatusError, match=f"^Thing: HTTP {status} from {server.url}/x$"):
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


def test_a_body_that_is_not_json_is_named_by_where_parsing_stopped(server: ScriptedServer) -> None:
    server.script("/x", Answer(200, b'{"ok": 1,\n  <html>maintenance</html>', "text/html"))
    with pytest.raises(SignalError) as raised:
        client([]).get_json(f"{server.url}/x", what="Thing")
    assert str(raised.value) == (
        f"Thing: the answer from {server.url}/x is not JSON (line 2, column 3)"
    )


def test_messages_never_carry_user_info_or_query() -> None:
    assert (
        safe_url("https://user:s3cret@host:8443/a/b.csv?token=abc") == "https://host:8443/a/b.csv"
    )


def test_a_redirect_within_the_host_is_followed_with_the_credentials(
    server: ScriptedServer,
) -> None:
    server.script("/v3/latest", redirect("/v4/latest?zone=DE"))
    server.script("/v4/latest", json_answer({"ok": 1}))
    answer = client([]).get_json(
        f"{server.url}/v3/latest", what="Thing", params={"zone": "FR"}, headers={"auth-token": "k"}
    )
    assert answer == {"ok": 1}
    followed = server.requests["/v4/latest"][0]
    assert (followed.headers.get("auth-token"), followed.query) == ("k", {"zone": "DE"})


@pytest.fixture
def elsewhere() -> Iterator[ScriptedServer]:
    """Another server on 127.0.0.1: another port, so another origin."""
    other = ScriptedServer()
    other.start()
    other.script("/steal", json_answer({"ok": 1}))
    yield other
    other.stop()


@pytest.mark.parametrize("target", ["other port", "other host", "other scheme"])
def test_a_redirect_to_another_origin_is_refused_and_never_followed(
    server: ScriptedServer, elsewhere: ScriptedServer, target: str
) -> None:
    port = server.url.rsplit(":", 1)[1]
    location = {
        "other port": f"{elsewhere.url}/steal",
        "other host": f"http://localhost:{port}/steal",  # refused before any connection
        "other scheme": f"https://127.0.0.1:{port}/steal",
    }[target]
    server.script("/x", redirect(location, 301))
    with pytest.raises(SignalError) as raised:
        client([]).get(f"{server.url}/x", what="Thing", headers={"auth-token": "secret"})
    message = str(raised.value)
    assert message.startswith(f"Thing: {server.url}/x redirects to {origin(location)}, another")
    assert "credentials stay with its host" in message
    assert server.count("/x") == 1  # refused at once, not retried
    assert server.count("/steal") == elsewhere.count("/steal") == 0


def test_basic_auth_does_not_follow_a_redirect_to_another_origin(
    server: ScriptedServer, elsewhere: ScriptedServer
) -> None:
    server.script("/login", redirect(f"{elsewhere.url}/steal", 307))
    with pytest.raises(SignalError, match="redirects to"):
        client([]).get(f"{server.url}/login", what="Login", auth=("user", "password"))
    assert elsewhere.count("/steal") == 0


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/x.csv", "gopher://127.0.0.1:70/", "http:///x"]
)
def test_only_http_and_https_urls_with_a_host_are_fetched(url: str) -> None:
    with pytest.raises(SignalError, match="only http and https URLs with a host are fetched"):
        client([]).get(url, what="CSV file")


def test_allowed_hosts_keep_feeds_from_any_other_host(server: ScriptedServer) -> None:
    server.script("/x", json_answer({"ok": 1}))
    sleeps: list[float] = []
    fenced = dataclasses.replace(client(sleeps), allowed_hosts=frozenset({"data.example.com"}))
    with pytest.raises(SignalError, match=r"host 127\.0\.0\.1 is not one of the hosts"):
        fenced.get(f"{server.url}/x", what="Thing")
    assert server.count("/x") == 0 and sleeps == []
    allowed = dataclasses.replace(fenced, allowed_hosts=frozenset({"127.0.0.1"}))
    assert allowed.get_json(f"{server.url}/x", what="Thing") == {"ok": 1}


@pytest.mark.parametrize("header", ["120", "Wed, 21 Oct 2099 07:28:00 GMT"])
def test_retry_after_stops_the_retries_and_says_how_long(
    server: ScriptedServer, header: str
) -> None:
    server.script("/x", Answer(429, b"slow down", "text/plain", headers=(("Retry-After", header),)))
    sleeps: list[float] = []
    with pytest.raises(HttpStatusError) as raised:
        client(sleeps).get(f"{server.url}/x", what="Thing")
    assert server.count("/x") == 1 and sleeps == []  # asked once: the server said when
    assert raised.value.retry_after_s is not None and raised.value.retry_after_s > 60
    assert "asked to retry after" in str(raised.value)


def test_a_remembered_failure_waits_out_its_retry_after() -> None:
    cache: TimedCache[float] = TimedCache()
    calls: list[int] = []

    def fetch() -> float:
        calls.append(1)
        raise HttpStatusError("HTTP 429", 429, retry_after_s=120.0)

    t0 = datetime(2026, 12, 3, tzinfo=UTC)
    for seconds in (0, 31, 119):  # the usual 30 s pause would ask again at 31 s
        with pytest.raises(SignalError):
            cache.get("k", t0 + timedelta(seconds=seconds), refresh_seconds=300,
                      retry_seconds=30, fetch=fetch)  # fmt: skip
    assert len(calls) == 1
    with pytest.raises(SignalError):
        cache.get("k", t0 + timedelta(seconds=121), refresh_seconds=300, retry_seconds=30,
                  fetch=fetch)  # fmt: skip
    assert len(calls) == 2
