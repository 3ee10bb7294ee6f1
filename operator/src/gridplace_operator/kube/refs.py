"""Secrets and ConfigMaps read through the Kubernetes API when a provider needs them, kept for a
short while so a planning cycle does not read them again. Secret values are never logged."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gridplace_operator.kube.rest import Rest, core_path
from gridplace_operator.signals.providers.cache import TimedCache
from gridplace_operator.signals.sources import SignalError


def _api_problem(err: ApiException | urllib3.exceptions.HTTPError, what: str) -> SignalError:
    if not isinstance(err, ApiException):
        return SignalError(f"{what}: the API server did not answer ({type(err).__name__})")
    if err.status == 404:
        return SignalError(f"{what} not found")
    if err.status == 403:
        return SignalError(f"{what}: gridplace is not allowed to read it (RBAC, HTTP 403)")
    return SignalError(f"{what}: the API server answered HTTP {err.status} {err.reason or ''}")


class KubeRefs:
    """Reads keys of Secrets and ConfigMaps; a reference without a namespace means `namespace`
    (the one gridplace runs in)."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        ttl_seconds: float,
        timeout_seconds: float,
    ) -> None:
        self.rest = Rest(api_client)
        self.namespace = namespace
        self.ttl_seconds = ttl_seconds
        self.timeout_seconds = timeout_seconds
        self._secrets: TimedCache[Mapping[str, str]] = TimedCache()

    def secret(self, name: str, namespace: str | None, now: datetime) -> Mapping[str, str]:
        """The Secret's data, decoded (values are text: tokens, user names, passwords)."""
        ns = namespace or self.namespace
        what = f"Secret {ns}/{name}"

        def fetch() -> Mapping[str, str]:
            try:
                found = self.rest.get_json(
                    core_path("secrets", ns, name), timeout=self.timeout_seconds
                )
            except (ApiException, urllib3.exceptions.HTTPError) as err:
                raise _api_problem(err, what) from None
            try:
                return {
                    k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()
                }
            except (binascii.Error, UnicodeDecodeError):
                raise SignalError(f"{what}: a value is not UTF-8 text") from None

        return self._secrets.get(
            (ns, name),
            now,
            refresh_seconds=self.ttl_seconds,
            retry_seconds=self.ttl_seconds,
            fetch=fetch,
        )

    def secret_key(self, name: str, key: str, namespace: str | None, now: datetime) -> str:
        data = self.secret(name, namespace, now)
        if not data.get(key):
            ns = namespace or self.namespace
            have = ", ".join(sorted(data)) or "none"
            raise SignalError(f"Secret {ns}/{name} has no key {key!r} (keys: {have})")
        return data[key]

    def config_map_key(self, name: str, key: str, namespace: str | None) -> str:
        """A ConfigMap key, read now (the file provider keeps what it parsed from it)."""
        ns = namespace or self.namespace
        what = f"ConfigMap {ns}/{name}"
        try:
            found = self.rest.get_json(
                core_path("configmaps", ns, name), timeout=self.timeout_seconds
            )
        except (ApiException, urllib3.exceptions.HTTPError) as err:
            raise _api_problem(err, what) from None
        data: dict[str, str] = found.get("data") or {}
        if key not in data:
            have = ", ".join(sorted(data)) or "none"
            raise SignalError(f"{what} has no key {key!r} (keys: {have})")
        return data[key]
