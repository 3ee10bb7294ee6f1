"""HTTP GET with a timeout, bounded retries with exponential backoff, and errors people can act
on: what was asked, the status, and the start of the answer, never a credential."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from gridplace_operator.signals import SignalError

# Worth another try: rate limiting and server-side trouble. 4xx otherwise means the request
# (or its credentials) is wrong and will stay wrong.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
BODY_EXCERPT = 200


class HttpStatusError(SignalError):
    """The server answered with an error status (kept so callers can react to e.g. 401)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def safe_url(url: str) -> str:
    """The URL without user info or query string, fit for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def excerpt(body: bytes | str) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= BODY_EXCERPT else text[:BODY_EXCERPT] + "..."


@dataclass(frozen=True)
class HttpClient:
    timeout_seconds: float
    attempts: int
    backoff_seconds: float
    sleep: Callable[[float], None] = time.sleep

    def get(
        self,
        url: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> requests.Response:
        """A 2xx answer, or SignalError saying `what` failed, where, and why."""
        problem, status = "", 0
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                self.sleep(self.backoff_seconds * 2 ** (attempt - 2))
            status = 0
            try:
                response = requests.get(
                    url,
                    params=params,
                    headers=dict(headers or {}),
                    auth=auth,
                    timeout=self.timeout_seconds,
                )
            except requests.Timeout:
                problem = f"no answer within {self.timeout_seconds:g}s"
                continue
            except requests.exceptions.SSLError:
                problem = "TLS handshake failed"
                continue
            except requests.ConnectionError:
                problem = "cannot connect (refused, reset or unreachable)"
                continue
            except requests.RequestException as err:
                problem = f"request failed ({type(err).__name__})"
                continue
            if response.status_code < 400:
                return response
            status = response.status_code
            problem = f"HTTP {status}"
            if response.content:
                problem += f": {excerpt(response.content)}"
            if status not in RETRYABLE_STATUS:
                raise HttpStatusError(f"{what}: {problem} from {safe_url(url)}", status)
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        message = f"{what}: {problem} from {safe_url(url)}{tries}"
        raise HttpStatusError(message, status) if status else SignalError(message)

    def get_json(self, url: str, *, what: str, **kwargs: Any) -> Any:
        response = self.get(url, what=what, **kwargs)
        try:
            return json.loads(response.content)
        except ValueError:
            raise SignalError(
                f"{what}: the answer from {safe_url(url)} is not JSON: {excerpt(response.content)}"
            ) from None
