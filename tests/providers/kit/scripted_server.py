"""A real HTTP server on 127.0.0.1 that answers each path with scripted responses, in order, and
records every request, so tests can count retries and cache hits and check what was sent."""

from __future__ import annotations

import gzip
import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay_seconds: float = 0.0  # wait this long before answering (a slow upstream)
    release: threading.Event | None = None  # hold the answer until the test sets it (10 s at most)
    headers: tuple[tuple[str, str], ...] = ()  # more response headers, e.g. a redirect's Location


def json_answer(payload: Any, status: int = 200, delay_seconds: float = 0.0) -> Answer:
    return Answer(status, json.dumps(payload).encode(), delay_seconds=delay_seconds)


def redirect(location: str, status: int = 302) -> Answer:
    return Answer(status, b"moved", "text/plain", headers=(("Location", location),))


def text_answer(text: str, status: int = 200, *, gzipped: bool = False) -> Answer:
    if gzipped:
        return Answer(status, gzip.compress(text.encode()), "application/gzip")
    return Answer(status, text.encode(), "text/csv")


@dataclass(frozen=True)
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class ScriptedServer:
    """`script(path, *answers)`: the answers to give on `path`, in order; the last repeats."""

    answers: dict[str, list[Answer]] = field(default_factory=dict)
    requests: dict[str, list[Request]] = field(default_factory=lambda: defaultdict(list))
    _server: ThreadingHTTPServer | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def script(self, path: str, *answers: Answer) -> None:
        self.answers[path] = list(answers)
        self.requests[path].clear()

    def count(self, path: str) -> int:
        return len(self.requests[path])

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                server.requests[parts.path].append(Request(parts.path, query, dict(self.headers)))
                queue = server.answers.get(parts.path) or [Answer(404, b'{"error":"no route"}')]
                answer = queue.pop(0) if len(queue) > 1 else queue[0]
                if answer.release is not None:
                    answer.release.wait(10)
                if answer.delay_seconds:
                    # Wake early when the server stops, so a slow answer never outlives a test.
                    server._stop.wait(answer.delay_seconds)
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(answer.body)))
                    for name, value in answer.headers:
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout under test)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
