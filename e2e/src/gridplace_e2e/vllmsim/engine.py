"""The scheduler: `max_num_seqs` batch slots, a FIFO waiting queue, real timers.

A request waits until a slot is free (first come, first served), then holds it for its prefill and
one decode step per later token. Time to first token is therefore queue wait plus prefill, and the
decode step grows with the number of running sequences, as on a vLLM server.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gridplace_e2e.vllmsim.metrics import FinishedRequest, SimMetrics
from gridplace_e2e.vllmsim.model import LatencyModel, OutputPlan

TokenSink = Callable[[int, str], Awaitable[None]]
"""Receives each output token (its index and text) as the engine produces it."""


@dataclass(frozen=True)
class Job:
    prompt_tokens: int
    max_tokens: int | None
    output: OutputPlan


class Engine:
    def __init__(
        self,
        latency: LatencyModel,
        max_num_seqs: int,
        max_model_len: int,
        metrics: SimMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.latency = latency
        self.max_num_seqs = max_num_seqs
        self.metrics = metrics
        self._clock = clock
        self._kv_capacity = max_num_seqs * max_model_len
        self._running = 0
        self._kv_tokens = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def run(self, job: Job, on_token: TokenSink) -> FinishedRequest:
        """Queue, prefill and decode one request, handing each token to `on_token`.

        If `on_token` raises (the client went away) or the task is cancelled, the slot is freed and
        the request is counted as aborted, as vLLM does.
        """
        arrival = self._clock()
        await self._acquire()
        admitted = self._clock()
        first_token_at: float | None = None
        emitted = 0
        finish_reason = "abort"
        self._hold_kv(job.prompt_tokens)
        try:
            await asyncio.sleep(self.latency.prefill_seconds(job.prompt_tokens))
            self.metrics.prompt_tokens.inc(job.prompt_tokens)
            first_token_at = last_token_at = deadline = self._clock()
            self.metrics.ttft.observe(first_token_at - arrival)
            for index, token in enumerate(job.output.tokens):
                if index:
                    # Sleep to an absolute deadline so event-loop overhead does not add up.
                    deadline += self.latency.decode_step_seconds(self._running)
                    await asyncio.sleep(max(0.0, deadline - self._clock()))
                    now = self._clock()
                    self.metrics.inter_token_latency.observe(now - last_token_at)
                    last_token_at = now
                emitted += 1
                self._hold_kv(1)
                self.metrics.generation_tokens.inc()
                await on_token(index, token)
            finish_reason = job.output.finish_reason
        finally:
            end = self._clock()
            self._hold_kv(-(job.prompt_tokens + emitted))
            self._release()
            prefill_end = first_token_at if first_token_at is not None else end
            done = FinishedRequest(
                finish_reason=finish_reason,
                prompt_tokens=job.prompt_tokens,
                generation_tokens=emitted,
                max_tokens=job.max_tokens,
                queued=admitted - arrival,
                prefill=prefill_end - admitted,
                decode=end - prefill_end,
            )
            self.metrics.record_finished(done)
        return done

    async def _acquire(self) -> None:
        if self._running < self.max_num_seqs and not self._waiting:
            self._running += 1
            self._publish()
            return
        ticket = asyncio.get_running_loop().create_future()
        self._waiting.append(ticket)
        self._publish()
        try:
            await ticket
        except asyncio.CancelledError:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
                self._publish()
            elif not ticket.cancelled():
                self._release()  # the slot was handed over just before the cancel: pass it on
            raise

    def _release(self) -> None:
        while self._waiting:
            ticket = self._waiting.popleft()
            if not ticket.done():
                ticket.set_result(None)  # the slot goes straight to the next in line
                self._publish()
                return
        self._running -= 1
        self._publish()

    def _hold_kv(self, tokens: int) -> None:
        self._kv_tokens += tokens
        self.metrics.kv_cache_usage.set(self._kv_tokens / self._kv_capacity)

    def _publish(self) -> None:
        self.metrics.running.set(self._running)
        self.metrics.waiting.set(len(self._waiting))
