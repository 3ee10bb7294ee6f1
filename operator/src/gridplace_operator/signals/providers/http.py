"""HTTP GET with a timeout, bounded retries with exponential backoff, and errors people can act
on: what was asked, where, and the status or failure. Never a credential, and never the answer's
body: a Region's URL may point anywhere, and what answered there must not reach status or Events.

Only http and https URLs are fetched, only from the allowed hosts when the operator names some,
and a redirect is followed only to the same scheme, host and port, so a feed's credentials (an
`auth-token` header, a bearer token, basic auth) are never sent to another host.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from gridplace_operator.signals.sources import SignalError

# Worth another try: rate limiting and server-side trouble. 4xx otherwise means the request
# (or its credentials) is wrong and will stay wrong.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
DEFAULT_PORTS = {"http": 80, "https": 443}


# The longest Retry-After honoured; a signal asked to wait longer goes stale and falls back.
MAX_RETRY_AFTER_SECONDS = 6 * 3600.0


class HttpStatusError(SignalError):
    """The server answered with an error status (kept so callers can react to e.g. 401), and
    how long it asked to be left alone (Retry-After), if it did."""

    def __init__(self, message: str, status: int, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date), at most
    MAX_RETRY_AFTER_SECONDS; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def safe_url(url: str) -> str:
    """The URL without user info or query string, fit for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def origin(url: str) -> str:
    """scheme://host:port, the port spelled out: two URLs share credentials only if these match."""
    parts = urlsplit(url)
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    return f"{parts.scheme}://{parts.hostname or ''}:{port}"


@dataclass(frozen=True)
class HttpClient:
    timeout_seconds: float
    attempts: int
    backoff_seconds: float
    sleep: Callable[[float], None] = time.sleep
    allowed_hosts: frozenset[str] = frozenset()  # lower case; empty: any host

    def check(self, url: str, what: str) -> None:
        """SignalError unless `url` is http or https to a host feeds may reach."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise SignalError(
                f"{what}: only http and https URLs with a host are fetched, not"
                f" {parts.scheme or 'a scheme-less'} URL {safe_url(url)}"
            )
        if self.allowed_hosts and parts.hostname not in self.allowed_hosts:
            raise SignalError(
                f"{what}: host {parts.hostname} is not one of the hosts feeds may reach"
                " (the operator's --feed-allowed-hosts)"
            )

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
        self.check(url, what)
        problem, status = "", 0
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                self.sleep(self.backoff_seconds * 2 ** (attempt - 2))
            status = 0
            try:
                response = self._follow(url, what, params, dict(headers or {}), auth)
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
            if status not in RETRYABLE_STATUS:
                raise HttpStatusError(f"{what}: {problem} from {safe_url(url)}", status)
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is not None:  # the server said when: no retry before then, here or later
                raise HttpStatusError(
                    f"{what}: {problem} from {safe_url(url)}, asked to retry after {wait:.0f}s",
                    status,
                    retry_after_s=wait,
                )
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        message = f"{what}: {problem} from {safe_url(url)}{tries}"
        raise HttpStatusError(message, status) if status else SignalError(message)

    def _follow(
        self,
        url: str,
        what: str,
        params: Mapping[str, str] | None,
        headers: dict[str, str],
        auth: tuple[str, str] | None,
    ) -> requests.Response:
        """GET, following redirects within the URL's origin only (requests would follow any,
        with every header but Authorization)."""
        for _ in range(MAX_REDIRECTS + 1):
            response = requests.get(
                url,
                params=params,
                headers=headers,
                auth=auth,
                timeout=self.timeout_seconds,
                allow_redirects=False,
            )
            if not response.is_redirect:
                return response
            target = urljoin(url, response.headers["location"])
            if origin(target) != origin(url):
                raise SignalError(
                    f"{what}: {safe_url(url)} redirects to {origin(target)}, another scheme, host"
                    " or port; not followed, so the request's credentials stay with its host"
                    " (give the URL it redirects to instead)"
                )
            url, params = target, None  # the target carries its own query
        raise SignalError(f"{what}: more than {MAX_REDIRECTS} redirects from {safe_url(url)}")

    def get_json(self, url: str, *, what: str, **kwargs: Any) -> Any:
        response = self.get(url, what=what, **kwargs)
        try:
            return json.loads(response.content)
        except ValueError as err:
            where = (
                f" (line {err.lineno}, column {err.colno})"
                if isinstance(err, json.JSONDecodeError)
                else ""
            )
            raise SignalError(
                f"{what}: the answer from {safe_url(url)} is not JSON{where}"
            ) from None
