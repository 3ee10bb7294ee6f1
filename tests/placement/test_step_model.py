"""The replica as its scheduler runs it: prefill and decode share each step's compute."""

from __future__ import annotations

import math

import pytest

from gridplace_placement.capacity import StepModel

# starcoder2-15b on one H100 as shipped: decode a + b x batch fitted on ml-energy; prefill at
# 2 x 15e9 FLOPs per token and half of 989 TFLOP/s dense BF16.
H100_15B = StepModel(
    decode_base_s=0.064249,
    decode_per_seq_s=0.00010315,
    prefill_per_token_s=2 * 15e9 / (0.5 * 989e12),
    max_num_seqs=512,
    max_batched_tokens=8192,
)


def test_without_prompts_the_rate_is_the_decode_slots_of_the_old_model() -> None:
    tpot, out = 0.1, 250
    free_prefill = StepModel(0.05, 0.0002, 0.0, 1000, 10**6)
    slots = (tpot - 0.05) / 0.0002  # the batch a + b x batch = tpot allows
    assert free_prefill.max_rate(0.0, out, tpot) == pytest.approx(slots / (out * tpot))


@pytest.mark.parametrize("prompt", [100, 1500, 4000, 16000])
def test_prompt_tokens_never_exceed_the_compute_bound(prompt: int) -> None:
    rate = H100_15B.max_rate(prompt, 250, 0.1)
    assert rate * prompt < 1.0 / H100_15B.prefill_per_token_s
    # ... and at that rate the step model's time per output token is the target.
    assert H100_15B.steady_state(rate, prompt, 250) == pytest.approx(0.1, rel=1e-9)


def test_a_long_prompt_workload_needs_the_replicas_its_prefill_implies() -> None:
    # 45 req/s of 1,500-token prompts is 67,500 prompt tokens/s: with prefill alone at
    # 16,500 tokens/s per replica that is at least 5 replicas, whatever the batch.
    rate = H100_15B.max_rate(1500, 250, 0.1)
    replicas = math.ceil(45 / rate)
    assert replicas >= math.ceil(45 * 1500 * H100_15B.prefill_per_token_s)
    assert replicas > 5  # decode shares the steps too


def test_past_saturation_the_step_time_is_unbounded() -> None:
    per_request = 0.00010315 * 250 + H100_15B.prefill_per_token_s * 1500
    assert H100_15B.steady_state(1.001 / per_request, 1500, 250) == math.inf
    assert H100_15B.steady_state(0.0, 1500, 250) == H100_15B.decode_base_s


def test_a_prompt_beyond_the_token_budget_is_prefilled_in_chunks() -> None:
    one_step = H100_15B.prefill_seconds(4000, 0)
    assert one_step == pytest.approx(H100_15B.step_seconds(0, 4000))
    chunked = H100_15B.prefill_seconds(20000, 192)  # 8000 tokens a step beside 192 decodes
    # Three steps with the batch's decodes; the prompt's tokens cost their compute once.
    expected = 3 * H100_15B.step_seconds(192, 0) + 20000 * H100_15B.prefill_per_token_s
    assert chunked == pytest.approx(expected)


def test_the_batch_bound_holds_at_the_step_time_the_rate_itself_gives() -> None:
    small = StepModel(0.04, 0.0005, 0.00005, max_num_seqs=8, max_batched_tokens=8192)
    rate = small.max_rate(2048, 28, 0.1)
    step = small.steady_state(rate, 2048, 28)
    assert step < 0.1  # the batch binds before the time per output token does
    assert rate * 28 * step == pytest.approx(8)  # Little's law: a full batch, no more
    assert H100_15B.max_rate(1500, 250, H100_15B.decode_base_s) == 0.0
