"""`wattTime` sources: WattTime's marginal operating emissions rate (MOER) of a grid region.

  GET {base}/login with HTTP basic auth (Secret keys `username`, `password`) -> {"token": "..."}
      (valid 30 minutes; kept 25, and renewed at once when a data request answers 401)
  GET {base}/v3/forecast?region=CAISO_NORTH&signal_type=co2_moer&horizon_hours=0
      with `Authorization: Bearer <token>` ->
      {"data": [{"point_time": "2026-11-27T21:05:00+00:00", "value": 870.2}, ...],
       "meta": {"units": "lbs_co2_per_mwh", "region": "CAISO_NORTH", ...}}
The point in force is the last one at or before now. WattTime publishes pounds of CO2 per MWh;
gridplace plans in gCO2eq/kWh: 1 lb/MWh = 453.592 g / 1000 kWh = 0.453592 g/kWh.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gridplace_operator.api.region import CarbonIntensitySource, WattTimeSource
from gridplace_operator.providers.cache import TimedCache
from gridplace_operator.providers.common import cache_key, refresh_seconds, retry_seconds
from gridplace_operator.providers.electricity_maps import field, number, timestamp
from gridplace_operator.providers.http import HttpClient, HttpStatusError
from gridplace_operator.providers.kube_refs import KubeRefs
from gridplace_operator.providers.settings import ProviderSettings
from gridplace_operator.signals import Reading, SignalError, Source

G_PER_KWH_PER_LB_PER_MWH = 0.453592
TOKEN_SECONDS = 25 * 60
MOER_UNITS = "lbs_co2_per_mwh"


def current_point(body: Any, now: datetime, what: str) -> tuple[datetime, float]:
    """The MOER point in force at `now` (the first one when all lie ahead), in lbs/MWh."""
    units = field(field(body, "meta", what), "units", what)
    if units != MOER_UNITS:
        raise SignalError(f"{what}: units are {units!r}, expected {MOER_UNITS!r}")
    data = field(body, "data", what)
    if not isinstance(data, list) or not data:
        raise SignalError(f"{what}: the answer has no data points")
    points = sorted((timestamp(p, "point_time", what), number(p, "value", what)) for p in data)
    past = [point for point in points if point[0] <= now]
    return past[-1] if past else points[0]


class WattTimeProvider:
    def __init__(self, http: HttpClient, refs: KubeRefs, settings: ProviderSettings) -> None:
        self.http = http
        self.refs = refs
        self.settings = settings
        self.cache: TimedCache[Reading] = TimedCache(background=settings.background_refresh)
        self.tokens: TimedCache[str] = TimedCache()

    def __call__(self, source: Source, now: datetime) -> Reading:
        spec = source.watt_time if isinstance(source, CarbonIntensitySource) else None
        if spec is None:
            raise SignalError("wattTime gives carbon intensity only")
        return self.cache.get(
            cache_key(source, spec),
            now,
            refresh_seconds=refresh_seconds(source, self.settings),
            retry_seconds=retry_seconds(source, self.settings),
            fetch=lambda: self._fetch(spec, now),
        )

    def _fetch(self, spec: WattTimeSource, now: datetime) -> Reading:
        what = f"WattTime forecast for region {spec.region}"
        ref = spec.credentials_secret_ref
        token_key = (ref.namespace or self.refs.namespace, ref.name)
        token = self.tokens.get(
            token_key,
            now,
            refresh_seconds=TOKEN_SECONDS,
            retry_seconds=0,
            fetch=lambda: self._login(spec, now),
        )
        url = f"{self.settings.watt_time_url}/v3/forecast"
        params = {"region": spec.region, "signal_type": "co2_moer", "horizon_hours": "0"}
        try:
            body = self.http.get_json(
                url, what=what, params=params, headers={"Authorization": f"Bearer {token}"}
            )
        except HttpStatusError as err:
            if err.status != 401:
                raise
            # The token expired early or was revoked: log in again, once.
            self.tokens.forget(token_key)
            token = self.tokens.get(
                token_key,
                now,
                refresh_seconds=TOKEN_SECONDS,
                retry_seconds=0,
                fetch=lambda: self._login(spec, now),
            )
            body = self.http.get_json(
                url, what=what, params=params, headers={"Authorization": f"Bearer {token}"}
            )
        observed_at, lbs_per_mwh = current_point(body, now, what)
        if lbs_per_mwh < 0:
            raise SignalError(f"{what}: the MOER is negative ({lbs_per_mwh:g} lbs/MWh)")
        return Reading(
            value=lbs_per_mwh * G_PER_KWH_PER_LB_PER_MWH, observed_at=observed_at, source="WattTime"
        )

    def _login(self, spec: WattTimeSource, now: datetime) -> str:
        ref = spec.credentials_secret_ref
        username = self.refs.secret_key(ref.name, "username", ref.namespace, now)
        password = self.refs.secret_key(ref.name, "password", ref.namespace, now)
        body = self.http.get_json(
            f"{self.settings.watt_time_url}/login",
            what=f"WattTime login with Secret {ref.namespace or self.refs.namespace}/{ref.name}",
            auth=(username, password),
        )
        token = field(body, "token", "WattTime login")
        if not isinstance(token, str):
            raise SignalError("WattTime login: the token is not a string")
        return token
