"""`file` sources: a CSV series from a ConfigMap key or an http(s) URL (gzip when compressed).

The parsed series is kept for the refresh interval, and the value in force is looked up at every
read, so an hourly forecast file moves to the next row on the hour without a new download.
"""

from __future__ import annotations

import gzip
import zlib
from datetime import datetime

from gridplace_operator.api.region import FileSource
from gridplace_operator.kube.refs import KubeRefs
from gridplace_operator.signals.providers.cache import TimedCache
from gridplace_operator.signals.providers.common import cache_key, refresh_seconds, retry_seconds
from gridplace_operator.signals.providers.csv_series import Series, parse_series
from gridplace_operator.signals.providers.http import HttpClient, safe_url
from gridplace_operator.signals.providers.settings import ProviderSettings
from gridplace_operator.signals.sources import Reading, SignalError, Source

GZIP_MAGIC = b"\x1f\x8b"
MAX_FILE_BYTES = 64 * 1024 * 1024


class FileProvider:
    def __init__(self, http: HttpClient, refs: KubeRefs, settings: ProviderSettings) -> None:
        self.http = http
        self.refs = refs
        self.settings = settings
        self.cache: TimedCache[Series] = TimedCache(background=settings.background_refresh)

    def __call__(self, source: Source, now: datetime) -> Reading:
        spec = source.file
        assert spec is not None
        series = self.cache.get(
            cache_key(source, spec),
            now,
            refresh_seconds=refresh_seconds(source, self.settings),
            retry_seconds=retry_seconds(source, self.settings),
            fetch=lambda: self._load(spec),
        )
        try:
            observed_at, value = series.at(now)
        except SignalError as err:
            raise SignalError(f"{self._where(spec)}: {err}") from None
        return Reading(value=value, observed_at=observed_at, source="File")

    def _load(self, spec: FileSource) -> Series:
        text = self._text(spec)
        try:
            return parse_series(
                text,
                time_column=spec.time_column,
                value_column=spec.value_column,
                zone_column=spec.zone_column,
                zone=spec.zone,
            )
        except SignalError as err:
            raise SignalError(f"{self._where(spec)}: {err}") from None

    def _text(self, spec: FileSource) -> str:
        if spec.config_map_ref is not None:
            ref = spec.config_map_ref
            return self.refs.config_map_key(ref.name, ref.key, ref.namespace)
        assert spec.url is not None
        body = self.http.get(spec.url, what="CSV file").content
        if len(body) > MAX_FILE_BYTES:
            raise SignalError(
                f"CSV file {safe_url(spec.url)} is {len(body)} bytes, over the"
                f" {MAX_FILE_BYTES}-byte limit"
            )
        if body.startswith(GZIP_MAGIC):
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error) as err:
                raise SignalError(f"CSV file {safe_url(spec.url)}: bad gzip data ({err})") from None
        try:
            return body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SignalError(f"CSV file {safe_url(spec.url)} is not UTF-8 text") from None

    def _where(self, spec: FileSource) -> str:
        if spec.config_map_ref is not None:
            ref = spec.config_map_ref
            namespace = ref.namespace or self.refs.namespace
            return f"CSV in ConfigMap {namespace}/{ref.name} key {ref.key}"
        assert spec.url is not None
        return f"CSV file {safe_url(spec.url)}"
