"""Unit tests of the simulator's pure parts: tokenizer, output plans, buckets."""

from __future__ import annotations

import random

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gridplace_e2e.loadgen.runner import prompt_of
from gridplace_e2e.vllmsim.metrics import SimMetrics
from gridplace_e2e.vllmsim.model import (
    TTFT_BUCKETS,
    build_1_2_5_buckets,
    context_error,
    count_tokens,
    detokenize_piece,
    plan_output,
    tokenize,
)


def test_tokenizer_counts_words_and_punctuation() -> None:
    assert tokenize("Hello, world!") == ["Hello", ",", "world", "!"]
    assert count_tokens("  two\n\twords ") == 2
    assert count_tokens("") == 0


def test_loadgen_prompts_have_the_planned_token_count() -> None:
    assert [count_tokens(prompt_of(n)) for n in (1, 7, 4808)] == [1, 7, 4808]


def test_output_pieces_retokenize_to_the_same_count() -> None:
    tokens = ["alpha", "beta", "gamma"]
    text = "".join(detokenize_piece(t, i == 0) for i, t in enumerate(tokens))
    assert text == "alpha beta gamma"
    assert tokenize(text) == tokens


def test_echo_answers_with_the_prompt_and_stops() -> None:
    plan = plan_output(
        "echo", ["a", "b", "c"], max_tokens=None, context_left=100, ignore_eos=False,
        rng=random.Random(0),
    )  # fmt: skip
    assert plan.tokens == ("a", "b", "c")
    assert plan.finish_reason == "stop"


def test_echo_is_cut_at_max_tokens_with_reason_length() -> None:
    plan = plan_output(
        "echo", ["a", "b", "c"], max_tokens=2, context_left=100, ignore_eos=False,
        rng=random.Random(0),
    )  # fmt: skip
    assert plan.tokens == ("a", "b")
    assert plan.finish_reason == "length"


def test_ignore_eos_produces_exactly_max_tokens() -> None:
    echo = plan_output(
        "echo", ["a", "b"], max_tokens=5, context_left=100, ignore_eos=True, rng=random.Random(0)
    )
    assert echo.tokens == ("a", "b", "a", "b", "a")
    rand = plan_output(
        "random", ["a"], max_tokens=37, context_left=100, ignore_eos=True, rng=random.Random(0)
    )
    assert len(rand.tokens) == 37
    assert rand.finish_reason == "length"


def test_output_never_exceeds_the_context_left() -> None:
    plan = plan_output(
        "random", ["a"], max_tokens=None, context_left=3, ignore_eos=True, rng=random.Random(0)
    )
    assert len(plan.tokens) == 3


def test_random_mode_is_reproducible_and_bounded() -> None:
    def draw(seed: int) -> list[tuple[str, ...]]:
        rng = random.Random(seed)
        return [
            plan_output(
                "random", ["x"], max_tokens=20, context_left=100, ignore_eos=False, rng=rng
            ).tokens
            for _ in range(50)
        ]

    first = draw(7)
    assert first == draw(7)
    assert first != draw(8)
    assert all(1 <= len(tokens) <= 20 for tokens in first)
    assert len({len(tokens) for tokens in first}) > 1


def test_empty_prompt_is_rejected() -> None:
    with pytest.raises(ValueError, match="no tokens"):
        plan_output(
            "echo", [], max_tokens=1, context_left=10, ignore_eos=False, rng=random.Random(0)
        )


def test_context_check_matches_vllm_rule() -> None:
    assert context_error(90, 10, 100) is None
    assert context_error(99, None, 100) is None
    message = context_error(95, 10, 100)
    assert message is not None
    assert "maximum context length is 100 tokens" in message
    assert "105 tokens (95 in the messages, 10 in the completion)" in message
    assert context_error(100, None, 100) is not None


def test_token_count_buckets_follow_1_2_5() -> None:
    assert build_1_2_5_buckets(100) == [1, 2, 5, 10, 20, 50, 100]
    assert build_1_2_5_buckets(16384)[-3:] == [2000, 5000, 10000]
    assert build_1_2_5_buckets(0) == []


@pytest.mark.parametrize(
    ("seconds", "first_bucket"),
    [(0.0005, 0.001), (0.25, 0.25), (0.3, 0.5), (3000.0, float("inf"))],
)
def test_ttft_lands_in_vllms_bucket(seconds: float, first_bucket: float) -> None:
    metrics = SimMetrics("m", max_model_len=1024)
    metrics.ttft.observe(seconds)
    text = generate_latest(metrics.registry).decode()
    buckets = {
        float(s.labels["le"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "vllm:time_to_first_token_seconds_bucket"
    }
    assert sorted(b for b in buckets if b != float("inf")) == list(TTFT_BUCKETS)
    assert min(le for le, count in buckets.items() if count == 1) == first_bucket
    assert all(count == 0 for le, count in buckets.items() if le < first_bucket)
