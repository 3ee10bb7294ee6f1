"""Plain-JSON requests to the API server over the kubernetes client's configured connection.

The client's generated API classes (`CoreV1Api` and friends) validate every call with pydantic
and cost about 80 MiB of memory once loaded; gridplace needs a handful of paths and reads raw
JSON, so it builds the requests itself and keeps the client for what it does well: credentials,
TLS, the connection pool and its errors (`ApiException`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from kubernetes import client
from kubernetes.client.exceptions import ApiException

APPLY = "application/apply-patch+yaml"


def core_path(kind_plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """Path of a core/v1 collection or object, e.g. `core_path("pods")`."""
    return _path("/api/v1", kind_plural, namespace, name)


def group_path(
    group: str,
    version: str,
    kind_plural: str,
    namespace: str | None = None,
    name: str | None = None,
) -> str:
    """Path of a collection or object of an API group, e.g. `group_path("apps", "v1", ...)`."""
    return _path(f"/apis/{group}/{version}", kind_plural, namespace, name)


def _path(prefix: str, plural: str, namespace: str | None, name: str | None) -> str:
    parts = [prefix]
    if namespace is not None:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(plural)
    if name is not None:
        parts.append(quote(name, safe=""))
    return "/".join(parts)


def encode_apply_body(body: Any) -> bytes:
    """An apply patch as UTF-8 JSON bytes, which the client sends as they are.

    The client's own `json.dumps` escapes every non-ASCII character, and a character outside the
    Basic Multilingual Plane (an emoji) becomes a surrogate pair (`\\ud83d\\ude00`), which is
    valid JSON but which the API server's YAML decoder of apply patches rejects with a 400. JSON
    bodies of other requests go through the client, whose escapes the JSON decoder accepts."""
    if isinstance(body, bytes):
        return body
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Rest:
    """Synchronous JSON requests; a non-2xx answer raises `ApiException`."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        """The raw urllib3 response, unread: the caller reads `.data` or discards it."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
            if content_type == APPLY:
                body = encode_apply_body(body)
        method, url, headers, body, _ = self.api_client.param_serialize(
            method,
            path,
            query_params=[(k, v) for k, v in (query or {}).items()],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(
            method, url, header_params=headers, body=body, _request_timeout=timeout
        )
        if not 200 <= response.status <= 299:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

    def get_json(
        self,
        path: str,
        *,
        query: Mapping[str, str | int] | None = None,
        timeout: float | None = None,
    ) -> Any:
        response = self.request("GET", path, query=query, timeout=timeout)
        return json.loads(response.data)
