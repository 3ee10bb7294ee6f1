"""The engine: one scheduler step at a time on real timers, as a vLLM server runs.

A request first waits out the fixed arrival overhead (the frontend's work), then joins the FIFO
waiting queue. One step loop (an asyncio task that runs while there is work) repeats: plan the
next step with `steps.plan_step` (decodes first, then prompt chunks within the token budget,
admitting waiting requests while the batch has a slot), sleep for the step's duration, then hand
out what the step produced: one token for every decoding sequence, and the first token of every
request whose prompt the step finished. That request decodes from the next step on.

The step's duration grows with the decodes and the prompt tokens it carries, so prefill and decode
share the replica's time: a long prompt slows every running sequence down while it is prefilled,
and prompt-token throughput is bounded by `1 / prefill_per_token_s`. Steps are scheduled against
absolute deadlines so event-loop overhead does not add up.

Tokens are handed to each request's own task through a queue, so a slow client delays only its
own stream (as vLLM's output processor does), never the steps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gridplace_e2e.vllmsim.metrics import FinishedRequest, SimMetrics
from gridplace_e2e.vllmsim.model import OutputPlan
from gridplace_e2e.vllmsim.steps import SchedulerLimits, StepCosts, StepPlan, plan_step

log = logging.getLogger(__name__)

TokenSink = Callable[[int, str], Awaitable[None]]
"""Receives each output token (its index and text) as the engine produces it."""

_FINISHED = -1  # put in a request's outbox after its last token


@dataclass(frozen=True)
class Job:
    prompt_tokens: int
    max_tokens: int | None
    output: OutputPlan


@dataclass(eq=False)
class _Sequence:
    """One request's progress through the scheduler; times are the engine clock's."""

    job: Job
    arrival: float
    outbox: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    queued_at: float | None = None  # reached the scheduler's waiting queue
    scheduled_at: float | None = None  # entered the batch (its first prefill chunk)
    prefilled: int = 0
    emitted: int = 0
    first_token_at: float | None = None
    last_token_at: float | None = None
    finished_at: float | None = None  # left the batch after its last token
    aborted: bool = False

    @property
    def prompt_left(self) -> int:
        return self.job.prompt_tokens - self.prefilled

    @property
    def output_left(self) -> int:
        return len(self.job.output.tokens) - self.emitted


@dataclass(frozen=True)
class _Step:
    """A planned step with the sequences it serves: `prefilling` matches `plan.chunks`."""

    plan: StepPlan
    decoding: tuple[_Sequence, ...]
    prefilling: tuple[_Sequence, ...]


class Engine:
    def __init__(
        self,
        costs: StepCosts,
        limits: SchedulerLimits,
        max_model_len: int,
        metrics: SimMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.costs = costs
        self.limits = limits
        self.metrics = metrics
        self._clock = clock
        self._kv_capacity = limits.max_num_seqs * max_model_len
        self._kv_tokens = 0
        self._running: list[_Sequence] = []  # in admission order
        self._waiting: deque[_Sequence] = deque()
        self._loop: asyncio.Task[None] | None = None

    @property
    def running(self) -> int:
        """Sequences in the batch, prefilling or decoding (vLLM's num_requests_running)."""
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def run(self, job: Job, on_token: TokenSink) -> FinishedRequest:
        """Queue, prefill and decode one request, handing each token to `on_token`.

        If `on_token` raises (the client went away) or the task is cancelled, the request leaves
        the queue or the batch at once and is counted as aborted, as vLLM does.
        """
        seq = _Sequence(job, arrival=self._clock())
        delivered = False
        try:
            await asyncio.sleep(self.costs.arrival_overhead_s)
            self._enqueue(seq)
            while (index := await seq.outbox.get()) != _FINISHED:
                await on_token(index, job.output.tokens[index])
            delivered = True
        finally:
            if seq.finished_at is None:
                self._abort(seq)
            done = _finished_request(seq, delivered, self._clock())
            self.metrics.record_finished(done)
        return done

    def _enqueue(self, seq: _Sequence) -> None:
        seq.queued_at = self._clock()
        self._waiting.append(seq)
        self._publish()
        if self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(self._step_loop())

    async def _step_loop(self) -> None:
        """Run steps back to back while any request waits or runs; a new arrival restarts it."""
        try:
            deadline = self._clock()
            while self._running or self._waiting:
                step = self._plan()
                deadline += self.costs.step_seconds(step.plan.decodes, step.plan.prefill_tokens)
                await asyncio.sleep(max(0.0, deadline - self._clock()))
                self._complete(step, self._clock())
        except Exception:  # a bug here would hang every request: say so loudly
            log.exception("the simulator's step loop failed")
            raise
        finally:
            self._loop = None

    def _plan(self) -> _Step:
        """Plan the next step and move the requests it admits from the queue into the batch."""
        decoding = tuple(s for s in self._running if s.prompt_left == 0)
        prefilling = [s for s in self._running if s.prompt_left > 0]
        plan = plan_step(
            len(decoding),
            (s.prompt_left for s in prefilling),
            (s.job.prompt_tokens for s in self._waiting),
            self.limits,
        )
        now = self._clock()
        for _ in range(plan.admitted):
            seq = self._waiting.popleft()
            seq.scheduled_at = now
            self._running.append(seq)
            prefilling.append(seq)
        if plan.admitted:
            self._publish()
        return _Step(plan, decoding, tuple(prefilling))

    def _complete(self, step: _Step, now: float) -> None:
        """End of a step: decodes emit their next token, prefills advance by their chunk and a
        finished prompt emits its first token; sequences that are done leave the batch."""
        for seq in step.decoding:
            if not seq.aborted:
                self._emit(seq, now)
        for seq, chunk in zip(step.prefilling, step.plan.chunks, strict=True):
            if seq.aborted or chunk == 0:
                continue
            seq.prefilled += chunk
            self._hold_kv(chunk)
            if seq.prompt_left == 0:
                self.metrics.prompt_tokens.inc(seq.job.prompt_tokens)
                self._emit(seq, now)
        done = [s for s in self._running if s.prompt_left == 0 and s.output_left == 0]
        for seq in done:
            seq.finished_at = now
            self._leave_batch(seq)
            seq.outbox.put_nowait(_FINISHED)

    def _emit(self, seq: _Sequence, now: float) -> None:
        """One output token of `seq` at `now`, with vLLM's per-token metrics."""
        if seq.output_left == 0:
            return  # an empty answer: the request ends with its prefill
        if seq.first_token_at is None:
            seq.first_token_at = now
            self.metrics.ttft.observe(now - seq.arrival)
        else:
            assert seq.last_token_at is not None
            self.metrics.inter_token_latency.observe(now - seq.last_token_at)
        seq.last_token_at = now
        seq.outbox.put_nowait(seq.emitted)
        seq.emitted += 1
        self._hold_kv(1)
        self.metrics.generation_tokens.inc()

    def _abort(self, seq: _Sequence) -> None:
        """Take an unfinished request out of the queue or the batch; a step already planned
        with it still takes its time (the GPU did the work) but hands it nothing."""
        seq.aborted = True
        if seq in self._running:
            self._leave_batch(seq)
        elif seq in self._waiting:
            self._waiting.remove(seq)
            self._publish()

    def _leave_batch(self, seq: _Sequence) -> None:
        self._running.remove(seq)
        self._hold_kv(-(seq.prefilled + seq.emitted))
        self._publish()

    def _hold_kv(self, tokens: int) -> None:
        self._kv_tokens += tokens
        self.metrics.kv_cache_usage.set(self._kv_tokens / self._kv_capacity)

    def _publish(self) -> None:
        self.metrics.running.set(len(self._running))
        self.metrics.waiting.set(len(self._waiting))


def _finished_request(seq: _Sequence, delivered: bool, now: float) -> FinishedRequest:
    """vLLM's per-request timings: the frontend until the queue, the queue until the first
    prefill chunk, prefill until the first token, decode until the last. A phase the request
    never reached (it was aborted first) lasts zero."""
    end = seq.finished_at if seq.finished_at is not None else now
    queued_at = seq.queued_at if seq.queued_at is not None else end
    scheduled_at = seq.scheduled_at if seq.scheduled_at is not None else end
    first_token_at = seq.first_token_at if seq.first_token_at is not None else end
    return FinishedRequest(
        finish_reason=seq.job.output.finish_reason if delivered else "abort",
        prompt_tokens=seq.job.prompt_tokens,
        generation_tokens=seq.emitted,
        max_tokens=seq.job.max_tokens,
        frontend=queued_at - seq.arrival,
        queued=scheduled_at - queued_at,
        prefill=first_token_at - scheduled_at,
        decode=end - first_token_at,
    )
