"""Signal providers for every Region source kind, built once at operator start.

`build_providers` returns the mapping the Planner takes: source kind -> Provider. Each provider
has a timeout, bounded retries with backoff and a cache (see `settings`), and raises SignalError
with a message a person can act on; `signals.sources.resolve` then applies maxAgeSeconds and
fallback.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gridplace_operator.kube.refs import KubeRefs
from gridplace_operator.signals.providers.common import priced_in_usd
from gridplace_operator.signals.providers.electricity_maps import ElectricityMapsProvider
from gridplace_operator.signals.providers.file import FileProvider
from gridplace_operator.signals.providers.http import HttpClient
from gridplace_operator.signals.providers.prometheus import PrometheusProvider
from gridplace_operator.signals.providers.settings import ProviderSettings
from gridplace_operator.signals.providers.watt_time import WattTimeProvider
from gridplace_operator.signals.sources import PROVIDERS, Provider


def build_providers(
    refs: KubeRefs,
    settings: ProviderSettings | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Provider]:
    """Providers for static, file, prometheus, electricityMaps and wattTime sources; `refs`
    reads the Secrets and ConfigMaps their sources name."""
    settings = settings or ProviderSettings()
    http = HttpClient(
        timeout_seconds=settings.http_timeout_seconds,
        attempts=settings.attempts,
        backoff_seconds=settings.backoff_seconds,
        sleep=sleep,
        allowed_hosts=settings.allowed_hosts,
    )
    rates = settings.usd_per_currency
    return {
        **PROVIDERS,
        "file": priced_in_usd(FileProvider(http, refs, settings), rates),
        "prometheus": priced_in_usd(PrometheusProvider(http, settings), rates),
        "electricity_maps": ElectricityMapsProvider(http, refs, settings),
        "watt_time": WattTimeProvider(http, refs, settings),
    }
