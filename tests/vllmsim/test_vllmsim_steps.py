"""What one scheduler step does and costs, without timers: the token budget, chunked prefill,
first-come-first-served admission and vLLM's refusal of a budget below the batch."""

from __future__ import annotations

import pytest

from gridplace_e2e.vllmsim.steps import SchedulerLimits, StepCosts, plan_step


def test_a_step_costs_its_decodes_and_its_prompt_tokens() -> None:
    costs = StepCosts(
        arrival_overhead_s=0.05, prefill_per_token_s=0.001, decode_base_s=0.01,
        decode_per_seq_s=0.002,
    )  # fmt: skip
    assert costs.step_seconds(0, 0) == pytest.approx(0.01)
    assert costs.step_seconds(32, 0) == pytest.approx(0.074)
    assert costs.step_seconds(4, 100) == pytest.approx(0.01 + 0.008 + 0.1)


def test_decodes_come_first_and_prompts_share_what_the_budget_leaves() -> None:
    limits = SchedulerLimits(max_num_seqs=8, max_num_batched_tokens=100)
    plan = plan_step(3, [50], [30, 40, 5], limits)
    # 97 tokens left: the running prefill takes 50, the first waiting 30, the next the last 17
    assert plan.decodes == 3
    assert plan.chunks == (50, 30, 17)
    assert plan.admitted == 2
    assert plan.prefill_tokens == 97


def test_a_long_prompt_is_prefilled_in_chunks_of_the_budget() -> None:
    limits = SchedulerLimits(max_num_seqs=4, max_num_batched_tokens=512)
    left, steps = 2000, 0
    while left:
        plan = plan_step(0, [left] if steps else [], [] if steps else [left], limits)
        left -= plan.prefill_tokens
        steps += 1
        assert plan.prefill_tokens <= 512
    assert steps == 4


def test_admission_stops_at_max_num_seqs_and_keeps_arrival_order() -> None:
    limits = SchedulerLimits(max_num_seqs=4, max_num_batched_tokens=8192)
    plan = plan_step(2, [10], [1, 2, 3], limits)
    assert plan.admitted == 1
    assert plan.chunks == (10, 1)
    full = plan_step(4, [], [1, 2], limits)
    assert (full.admitted, full.chunks) == (0, ())


def test_no_request_is_admitted_without_a_token_of_budget() -> None:
    """A request enters the batch in the step that starts its prefill, so its queue time ends
    when its prefill begins (vLLM's scheduled time)."""
    limits = SchedulerLimits(max_num_seqs=8, max_num_batched_tokens=100)
    plan = plan_step(4, [96, 10], [7], limits)
    assert plan.chunks == (96, 0)
    assert plan.admitted == 0


def test_a_budget_below_the_batch_is_refused_as_vllm_does() -> None:
    with pytest.raises(ValueError, match=r"max_num_batched_tokens \(4\) must be greater"):
        SchedulerLimits(max_num_seqs=8, max_num_batched_tokens=4)
    with pytest.raises(ValueError, match="max_num_seqs must be >= 1"):
        SchedulerLimits(max_num_seqs=0, max_num_batched_tokens=4)
