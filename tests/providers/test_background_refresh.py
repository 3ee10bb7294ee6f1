"""As the operator runs them: once a source has answered, refreshes happen in the background and
reads keep getting the remembered value, so a slow source never holds up a planning cycle."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from scripted_server import Answer, ScriptedServer, json_answer
from signal_kit import Providers

from gridplace_e2e.cluster.local import poll
from gridplace_operator.api.region import PowerPriceSource
from gridplace_operator.signals.sources import SignalError

T0 = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)
SOURCE = PowerPriceSource.model_validate({"prometheus": {"query": "price"}})


def vector(value: float) -> Answer:
    sample = {"metric": {}, "value": [1795900000, str(value)]}
    return json_answer({"status": "success", "data": {"resultType": "vector", "result": [sample]}})


def test_a_held_refresh_does_not_hold_the_read(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    providers = make_providers(background_refresh=True, http_timeout_seconds=30)
    server.script("/api/v1/query", vector(1))
    assert providers.read(SOURCE, T0).value == 1  # the first value is waited for
    release = threading.Event()
    server.script("/api/v1/query", dataclasses.replace(vector(2), release=release))
    try:
        # Due for a refresh (300 s): the read answers from memory while the server holds the
        # refresh; a read that waited would get 2 once the server gave up holding.
        assert providers.read(SOURCE, T0 + timedelta(seconds=301)).value == 1
        assert poll(lambda: server.count("/api/v1/query") == 1, 10)
        assert providers.read(SOURCE, T0 + timedelta(seconds=303)).value == 1
        assert server.count("/api/v1/query") == 1  # one refresh at a time
    finally:
        release.set()
    assert poll(lambda: providers.read(SOURCE, T0 + timedelta(seconds=305)).value == 2, 10)


def test_a_failed_background_refresh_is_reported_at_the_next_read(
    server: ScriptedServer, make_providers: Callable[..., Providers]
) -> None:
    providers = make_providers(background_refresh=True, attempts=1)
    server.script("/api/v1/query", vector(1))
    providers.read(SOURCE, T0)
    server.script("/api/v1/query", json_answer({"status": "error", "error": "boom"}, status=500))
    assert providers.read(SOURCE, T0 + timedelta(seconds=301)).value == 1

    def fails() -> bool:
        try:
            providers.read(SOURCE, T0 + timedelta(seconds=302))
        except SignalError as err:
            return "HTTP 500" in str(err)
        return False

    assert poll(fails, 10)
    with pytest.raises(SignalError, match="HTTP 500"):
        providers.read(SOURCE, T0 + timedelta(seconds=310))
