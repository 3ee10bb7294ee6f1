"""The pure parts of the simulator's requests: tokenizer, output text and histogram buckets.

Everything here is deterministic and free of I/O so that it can be unit-tested on its own. What a
scheduler step does and costs is in `steps.py`; `engine.py` runs the steps on real timers.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Mode = Literal["echo", "random"]

# A dummy tokenizer: every run of word characters is one token and so is every other non-space
# character. It is deterministic and needs no vocabulary, and text made of N space-separated words
# counts as N tokens, which lets a load generator build a prompt of an exact size.
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

# Words that random mode draws its output from (each is exactly one token).
_RANDOM_WORDS = (
    "the", "grid", "model", "replica", "region", "carbon", "price", "latency", "token", "batch",
    "queue", "power", "cluster", "plan", "signal", "load", "request", "serve", "place", "scale",
)  # fmt: skip

# Output length used in random mode when the request sets no max_tokens (vLLM would run to the
# end of the context; a short answer keeps simulated runs fast).
DEFAULT_RANDOM_OUTPUT_TOKENS = 64

# Bucket boundaries of vLLM 0.12's histograms (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
TOKEN_LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


def tokenize(text: str) -> list[str]:
    """Split text into dummy tokens (words and single punctuation characters)."""
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(tokenize(text))


@dataclass(frozen=True)
class OutputPlan:
    tokens: tuple[str, ...]
    finish_reason: Literal["stop", "length"]


def plan_output(
    mode: Mode,
    prompt_tokens: Sequence[str],
    *,
    max_tokens: int | None,
    context_left: int,
    ignore_eos: bool,
    rng: random.Random,
) -> OutputPlan:
    """Choose the tokens a request answers with and why it stops.

    `context_left` is max_model_len minus the prompt length; no answer is longer than that.
    Echo mode repeats the prompt (cycling it when `ignore_eos` asks for more); random mode draws
    words, stopping at a random length unless `ignore_eos` makes it run to `max_tokens`.
    """
    if not prompt_tokens:
        raise ValueError("the prompt has no tokens")
    limit = min(max_tokens, context_left) if max_tokens is not None else context_left
    if mode == "echo":
        wanted = limit if ignore_eos else min(len(prompt_tokens), limit)
        tokens = tuple(prompt_tokens[i % len(prompt_tokens)] for i in range(wanted))
        reason: Literal["stop", "length"] = (
            "length" if ignore_eos or len(prompt_tokens) > limit else "stop"
        )
        return OutputPlan(tokens, reason)
    natural = rng.randint(1, max_tokens or DEFAULT_RANDOM_OUTPUT_TOKENS)
    wanted = limit if ignore_eos else min(natural, limit)
    tokens = tuple(rng.choice(_RANDOM_WORDS) for _ in range(wanted))
    return OutputPlan(tokens, "length" if wanted == limit else "stop")


def context_error(prompt_tokens: int, max_tokens: int | None, max_model_len: int) -> str | None:
    """vLLM's check that prompt and answer fit the context window; None when they do."""
    requested = prompt_tokens + (max_tokens or 1)
    if requested <= max_model_len:
        return None
    return (
        f"This model's maximum context length is {max_model_len} tokens. However, you requested "
        f"{requested} tokens ({prompt_tokens} in the messages, {max_tokens or 1} in the "
        "completion). Please reduce the length of the messages or completion."
    )


def detokenize_piece(token: str, first: bool) -> str:
    """Text of one output token; tokens are space-separated so the answer re-tokenizes exactly."""
    return token if first else " " + token


def build_1_2_5_buckets(max_value: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to max_value: vLLM's buckets for token-count histograms."""
    buckets: list[int] = []
    scale = 1
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * scale > max_value:
                return buckets
            buckets.append(mantissa * scale)
        scale *= 10
