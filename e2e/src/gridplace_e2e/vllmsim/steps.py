"""What one scheduler step of a vLLM server does and what it costs (pure, no timers).

vLLM runs one step at a time. Each step decodes one token of every running sequence whose prompt
is done and prefills prompt chunks within a per-step token budget (`--max-num-batched-tokens`,
chunked prefill, first come first served). Decode is bound by memory bandwidth: the base cost reads
the weights once per step and every sequence adds its KV cache. Prefill is bound by compute: each
prompt token costs the same whether it shares a step with decodes or not. So a step lasts
`decode_base + decode_per_seq * decodes + prefill_per_token * prefill_tokens`, and a replica can
never prefill faster than `1 / prefill_per_token` tokens per second.

The engine (`engine.py`) asks `plan_step` what the next step does, sleeps for `step_seconds` of
it and then hands out the tokens it produced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class StepCosts:
    """Timing parameters in seconds.

    `arrival_overhead_s` is a fixed time per request before it reaches the scheduler (HTTP,
    tokenization); it delays that request's first token but occupies no batch slot and no step.
    """

    arrival_overhead_s: float
    prefill_per_token_s: float
    decode_base_s: float
    decode_per_seq_s: float

    def step_seconds(self, decodes: int, prefill_tokens: int) -> float:
        """Duration of a step that decodes `decodes` sequences and prefills `prefill_tokens`."""
        return (
            self.decode_base_s
            + self.decode_per_seq_s * decodes
            + self.prefill_per_token_s * prefill_tokens
        )


@dataclass(frozen=True)
class SchedulerLimits:
    """vLLM's `max_num_seqs` (sequences in the batch, prefilling or decoding) and
    `max_num_batched_tokens` (tokens per step: one per decode plus the prompt chunks)."""

    max_num_seqs: int
    max_num_batched_tokens: int

    def __post_init__(self) -> None:
        # vLLM refuses the same combination: a full batch of decodes must fit in one step.
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be greater than "
                f"or equal to max_num_seqs ({self.max_num_seqs})"
            )


@dataclass(frozen=True)
class StepPlan:
    """One step: `decodes` sequences emit a token; `chunks` are the prompt tokens prefilled for
    each prefilling sequence in arrival order, those already running first, then the `admitted`
    ones that join the batch from the head of the waiting queue."""

    decodes: int
    chunks: tuple[int, ...]
    admitted: int

    @property
    def prefill_tokens(self) -> int:
        return sum(self.chunks)


def plan_step(
    decodes: int,
    prompts_left: Iterable[int],
    waiting_prompts: Iterable[int],
    limits: SchedulerLimits,
) -> StepPlan:
    """Schedule one step as vLLM does with chunked prefill.

    Every decoding sequence gets its one token first (the budget always holds them, see
    `SchedulerLimits`). What the budget leaves goes to the running prefills in arrival order, a
    chunk each, and then to waiting requests, first come first served, which are admitted while
    the batch has a free slot and the budget has a token left: a request enters the batch in the
    step that starts its prefill, so its queue time ends when its prefill begins.
    """
    budget = limits.max_num_batched_tokens - decodes
    chunks: list[int] = []
    for left in prompts_left:
        take = min(left, budget)
        chunks.append(take)
        budget -= take
    batch = decodes + len(chunks)
    admitted = 0
    for prompt in waiting_prompts:
        if batch >= limits.max_num_seqs or budget <= 0:
            break
        take = min(prompt, budget)
        chunks.append(take)
        budget -= take
        batch += 1
        admitted += 1
    return StepPlan(decodes, tuple(chunks), admitted)
