"""What the provider tests share: the operator's providers as built at start, fast settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from kubernetes import client

from gridplace_operator.api.region import CarbonIntensitySource, PowerPriceSource
from gridplace_operator.signals.providers.settings import ProviderSettings
from gridplace_operator.signals.sources import Provider, Reading, read


@dataclass
class Providers:
    """The operator's providers, built as at start, with the backoff sleeps recorded."""

    providers: dict[str, Provider]
    sleeps: list[float] = field(default_factory=list)

    def read(self, source: CarbonIntensitySource | PowerPriceSource, now: datetime) -> Reading:
        return read(source, now, self.providers)


FAST = ProviderSettings(
    http_timeout_seconds=0.5,
    attempts=3,
    backoff_seconds=0.05,
    refresh_seconds=300.0,
    background_refresh=False,  # refreshes inside the read, so counts can be checked at once
)


def create_secret(api_client: client.ApiClient, namespace: str, name: str, **data: str) -> None:
    client.CoreV1Api(api_client).create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data),
    )
