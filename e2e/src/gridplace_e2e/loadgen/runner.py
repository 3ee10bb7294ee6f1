"""Send a planned load to OpenAI-compatible endpoints and summarize what users in each zone saw.

Each request is a streaming completion with exactly the planned prompt and output sizes (a prompt of
N one-token words, `max_tokens` with `ignore_eos`). The RTT between the user's zone and the region
that serves the request (from the RTT matrix when the router names the region, else the zone's
own RTT) is added as half before sending (the request travels to the region) and half on the
measured times (the answer travels back), so time to first token as reported is what a user in
that zone would see.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from gridplace_e2e.loadgen.plan import LoadPlan, PlannedRequest, Zone, require_loopback, step_starts


@dataclass(frozen=True)
class Route:
    """Where a request from a zone goes: a base URL (e.g. http://127.0.0.1:8000) and, when the
    router knows it, the region serving it."""

    url: str
    region: str | None = None


Router = Callable[[str], Route]
"""Picks the route of a request from a zone."""

RttMatrix = Mapping[str, Mapping[str, float]]
"""Milliseconds of round trip from a user zone to a region: zone -> region -> ms."""

Api = Literal["chat", "completions"]
_PATHS: Mapping[Api, str] = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


@dataclass(frozen=True)
class RunOptions:
    model: str
    api: Api = "chat"
    request_timeout_s: float = 60.0
    max_in_flight: int = 512
    rtt_matrix_ms: RttMatrix = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    request: PlannedRequest
    issued_s: float  # when the user issued it, from the start of the run
    ttft_s: float | None  # as seen by the user, RTT included; None when it failed
    e2e_s: float | None
    output_tokens: int
    error: str | None = None
    region: str | None = None  # the region that served it, when the router knows
    rtt_ms: float = 0.0  # the round trip added to what the user saw


def round_robin(default_targets: Sequence[str], zones: Sequence[Zone]) -> Router:
    """Route each zone over its own targets (or the defaults) in turn; all must be loopback."""
    for url in [*default_targets, *(t for z in zones for t in z.targets)]:
        require_loopback(url)
    cycles: dict[str, Iterator[str]] = {}
    for zone in zones:
        targets = zone.targets or tuple(default_targets)
        if not targets:
            raise ValueError(f"zone {zone.name!r} has no targets and no default target was given")
        cycles[zone.name] = itertools.cycle(targets)
    return lambda zone: Route(next(cycles[zone]))


def rtt_ms(zone: Zone, region: str | None, matrix: RttMatrix) -> float:
    """The round trip of a request from `zone` served in `region`: the matrix's entry, or the
    zone's own RTT when the region is not known or the matrix has no row for the zone."""
    row = matrix.get(zone.name)
    if region is None or row is None:
        return zone.rtt_ms
    if region not in row:
        raise ValueError(
            f"no RTT from zone {zone.name!r} to region {region!r} in the RTT matrix"
            f" (regions: {', '.join(sorted(row)) or 'none'})"
        )
    return row[region]


def prompt_of(tokens: int) -> str:
    """A prompt the simulator's tokenizer counts as exactly `tokens` tokens."""
    return " ".join(["hello"] * tokens)


def request_body(request: PlannedRequest, options: RunOptions) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": options.model,
        "max_tokens": request.output_tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if options.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt_of(request.prompt_tokens)}]
    else:
        body["prompt"] = prompt_of(request.prompt_tokens)
    return body


async def run_plan(
    plan: LoadPlan, route: Router, options: RunOptions
) -> tuple[list[Outcome], float]:
    """Issue every planned request at its time; returns the outcomes and the run's wall time."""
    loop = asyncio.get_running_loop()
    zones = {zone.name: zone for zone in plan.zones}
    timeout = aiohttp.ClientTimeout(total=options.request_timeout_s)
    connector = aiohttp.TCPConnector(limit=options.max_in_flight)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        start = loop.time()

        async def one(request: PlannedRequest) -> Outcome:
            issued = loop.time()
            try:
                routed = route(request.zone)
                url = require_loopback(routed.url) + _PATHS[options.api]
                rtt = rtt_ms(zones[request.zone], routed.region, options.rtt_matrix_ms)
            except ValueError as exc:
                return Outcome(request, issued - start, None, None, 0, str(exc))
            half_rtt = rtt / 2000
            await asyncio.sleep(half_rtt)
            first, tokens, error = await _stream(session, url, request_body(request, options))
            done = loop.time()
            if error is not None or first is None:
                failed = error or "no tokens"
                return Outcome(
                    request, issued - start, None, None, tokens, failed, routed.region, rtt
                )
            return Outcome(
                request,
                issued - start,
                first - issued + half_rtt,
                done - issued + half_rtt,
                tokens,
                region=routed.region,
                rtt_ms=rtt,
            )

        tasks = []
        for request in plan.requests:
            await asyncio.sleep(max(0.0, start + request.at_s - loop.time()))
            tasks.append(asyncio.create_task(one(request)))
        outcomes = await asyncio.gather(*tasks)
        return list(outcomes), loop.time() - start


async def _stream(
    session: aiohttp.ClientSession, url: str, body: Mapping[str, Any]
) -> tuple[float | None, int, str | None]:
    """POST a streaming request; returns (time of first content token, output tokens, error)."""
    loop = asyncio.get_running_loop()
    first: float | None = None
    tokens = 0
    try:
        async with session.post(url, json=body) as response:
            if response.status != 200:
                return None, 0, f"http {response.status}"
            async for line in response.content:
                payload = line.removeprefix(b"data: ").strip()
                if not line.startswith(b"data: ") or payload == b"[DONE]":
                    continue
                chunk = json.loads(payload)
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                if first is None and any(_text(c) for c in chunk.get("choices", [])):
                    first = loop.time()
    except TimeoutError:
        return first, tokens, "timeout"
    except (aiohttp.ClientError, ValueError, KeyError, TypeError) as exc:
        # transport failures and answers that are not the OpenAI stream format
        return first, tokens, f"{type(exc).__name__}: {exc}"
    return first, tokens, None


def _text(choice: Mapping[str, Any]) -> str:
    return str(choice.get("text") or choice.get("delta", {}).get("content") or "")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 1]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def stats(outcomes: Sequence[Outcome], window_s: float) -> dict[str, Any]:
    ok = [o for o in outcomes if o.error is None]
    ttft = [o.ttft_s for o in ok if o.ttft_s is not None]
    e2e = [o.e2e_s for o in ok if o.e2e_s is not None]

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return {
        "sent": len(outcomes),
        "ok": len(ok),
        "errors": dict(Counter(o.error for o in outcomes if o.error is not None)),
        "ttft_p50_ms": ms(percentile(ttft, 0.50)),
        "ttft_p95_ms": ms(percentile(ttft, 0.95)),
        "e2e_p50_ms": ms(percentile(e2e, 0.50)),
        "e2e_p95_ms": ms(percentile(e2e, 0.95)),
        "throughput_rps": round(len(ok) / window_s, 3) if window_s > 0 else None,
        "output_tokens_per_s": (
            round(sum(o.output_tokens for o in ok) / window_s, 1) if window_s > 0 else None
        ),
    }


def summarize(plan: LoadPlan, outcomes: Sequence[Outcome], wall_s: float) -> dict[str, Any]:
    """The JSON report: overall, per zone (with its RTT) and, in step mode, per step."""
    report: dict[str, Any] = {
        "wall_s": round(wall_s, 3),
        "overall": stats(outcomes, wall_s),
        "zones": {
            zone.name: {"rtt_ms": zone.rtt_ms, "weight": zone.weight}
            | stats([o for o in outcomes if o.request.zone == zone.name], wall_s)
            for zone in plan.zones
        },
    }
    if plan.steps:
        report["steps"] = [
            {"index": i, "start_s": start, "duration_s": step.duration_s, "rate_rps": step.rate_rps}
            | stats([o for o in outcomes if o.request.step == i], step.duration_s)
            for i, (start, step) in enumerate(zip(step_starts(plan.steps), plan.steps, strict=True))
        ]
    return report
