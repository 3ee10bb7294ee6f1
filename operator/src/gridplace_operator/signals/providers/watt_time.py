"""`wattTime` sources: WattTime's marginal operating emissions rate (MOER) of a grid region.

  GET {base}/login with HTTP basic auth (Secret keys `username`, `password`) -> {"token": "..."}
      (valid 30 minutes; kept 25, and renewed at once when a data request answers 401)
  GET {base}/v3/forecast?region=CAISO_NORTH&signal_type=co2_moer&horizon_hours=24
      with `Authorization: Bearer <token>` ->
      {"data": [{"point_time": "2026-11-27T21:05:00+00:00", "value": 870.2}, ...],
       "meta": {"units": "lbs_co2_per_mwh", "data_point_period_seconds": 300, ...}}
The first point is the current MOER (the latest value); the rest is the forecast, used for the
current five minutes when the latest value is missing or older than maxAgeSeconds (see
`forecast`). WattTime publishes pounds of CO2 per MWh; gridplace plans in gCO2eq/kWh:
1 lb/MWh = 453.592 g / 1000 kWh = 0.453592 g/kWh.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from gridplace_operator.api.region import CarbonIntensitySource, WattTimeSource
from gridplace_operator.kube.refs import KubeRefs
from gridplace_operator.signals.providers.cache import TimedCache
from gridplace_operator.signals.providers.common import cache_key, refresh_seconds, retry_seconds
from gridplace_operator.signals.providers.electricity_maps import field, number, timestamp
from gridplace_operator.signals.providers.forecast import (
    Forecast,
    ForecastCache,
    latest_or_forecast,
)
from gridplace_operator.signals.providers.http import HttpClient, HttpStatusError
from gridplace_operator.signals.providers.settings import ProviderSettings
from gridplace_operator.signals.sources import Reading, SignalError, Source

G_PER_KWH_PER_LB_PER_MWH = 0.453592
TOKEN_SECONDS = 25 * 60
MOER_UNITS = "lbs_co2_per_mwh"
FORECAST_HOURS = 24
POINT_SECONDS = 300  # WattTime's MOER period, when meta.data_point_period_seconds is absent


def moer_forecast(body: Any, what: str) -> Forecast:
    """The MOER points of a forecast answer in gCO2eq/kWh; the first is the current value."""
    meta = field(body, "meta", what)
    units = field(meta, "units", what)
    if units != MOER_UNITS:
        raise SignalError(f"{what}: units are not {MOER_UNITS!r}")
    period = meta.get("data_point_period_seconds", POINT_SECONDS)
    if isinstance(period, bool) or not isinstance(period, int | float) or period <= 0:
        raise SignalError(f"{what}: data_point_period_seconds is not a positive number")
    data = field(body, "data", what)
    if not isinstance(data, list) or not data:
        raise SignalError(f"{what}: the answer has no data points")
    points = []
    for point in data:
        lbs_per_mwh = number(point, "value", what)
        if lbs_per_mwh < 0:
            raise SignalError(f"{what}: the MOER is negative ({lbs_per_mwh:g} lbs/MWh)")
        at = timestamp(point, "point_time", what)
        points.append((at, lbs_per_mwh * G_PER_KWH_PER_LB_PER_MWH))
    return Forecast.of(points, timedelta(seconds=period))


class WattTimeProvider:
    def __init__(self, http: HttpClient, refs: KubeRefs, settings: ProviderSettings) -> None:
        self.http = http
        self.refs = refs
        self.settings = settings
        self.forecasts = ForecastCache(background=settings.background_refresh)
        self.tokens: TimedCache[str] = TimedCache()

    def __call__(self, source: Source, now: datetime) -> Reading:
        spec = source.watt_time if isinstance(source, CarbonIntensitySource) else None
        if spec is None:
            raise SignalError("wattTime gives carbon intensity only")
        # One answer holds both the latest value and the forecast.
        forecast, error = self.forecasts.get(
            cache_key(source, spec),
            now,
            refresh_seconds=refresh_seconds(source, self.settings),
            retry_seconds=retry_seconds(source, self.settings),
            fetch=lambda: self._fetch(spec, now),
        )
        latest = None
        if forecast is not None and error is None:
            latest = Reading(forecast.values[0], forecast.times[0], source="WattTime")
        return latest_or_forecast(
            latest, error, forecast, None, max_age_seconds=source.max_age_seconds, now=now
        )

    def _fetch(self, spec: WattTimeSource, now: datetime) -> Forecast:
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
        params = {
            "region": spec.region,
            "signal_type": "co2_moer",
            "horizon_hours": str(FORECAST_HOURS),
        }
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
        return moer_forecast(body, what)

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
