"""The simulator as a real process on 127.0.0.1: OpenAI API, errors, metrics and queueing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import astuple
from typing import Any

import aiohttp
import pytest
import requests

from gridplace_e2e.vllmsim.cli import build_parser, config_from_args
from gridplace_e2e.vllmsim.process import start_simulator
from gridplace_e2e.vllmsim.scrape import scrape
from gridplace_e2e.vllmsim.steps import SchedulerLimits, StepCosts

SimFactory = Callable[..., str]

ECHO = ("--model", "sim-model", "--mode", "echo", "--time-to-first-token", "5",
        "--inter-token-latency", "2")  # fmt: skip


def _chat(base: str, **body: Any) -> requests.Response:
    payload = {
        "model": "sim-model",
        "messages": [{"role": "user", "content": "one two three four"}],
    }
    return requests.post(f"{base}/v1/chat/completions", json=payload | body, timeout=30)


def _events(response: requests.Response) -> list[str]:
    return [
        line.removeprefix("data: ")
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


def test_chat_completion_echoes_with_usage(start_sim: SimFactory) -> None:
    base = start_sim(*ECHO)
    body = _chat(base).json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "sim-model"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "one two three four"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}


def test_max_tokens_and_max_completion_tokens_cut_the_answer(start_sim: SimFactory) -> None:
    base = start_sim(*ECHO)
    for field in ("max_tokens", "max_completion_tokens"):
        body = _chat(base, **{field: 2}).json()
        assert body["choices"][0]["message"]["content"] == "one two"
        assert body["choices"][0]["finish_reason"] == "length"
        assert body["usage"]["completion_tokens"] == 2


def test_streaming_chat_sends_role_tokens_usage_and_done(start_sim: SimFactory) -> None:
    base = start_sim(*ECHO)
    response = _chat(base, stream=True, stream_options={"include_usage": True}, max_tokens=3)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = _events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert "".join(content) == "one two three"
    assert [c["choices"][0]["finish_reason"] for c in chunks[1:-1]] == [None, None, "length"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def test_completions_endpoint_streams_and_answers_whole(start_sim: SimFactory) -> None:
    base = start_sim(*ECHO)
    url = f"{base}/v1/completions"
    whole = requests.post(url, json={"prompt": "a b c", "max_tokens": 2}, timeout=30).json()
    assert whole["object"] == "text_completion"
    assert whole["choices"][0]["text"] == "a b"
    assert whole["usage"]["prompt_tokens"] == 3
    streamed = requests.post(url, json={"prompt": "a b c", "stream": True}, timeout=30)
    events = _events(streamed)
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]) == "a b c"


def test_random_mode_with_ignore_eos_generates_exactly_max_tokens(start_sim: SimFactory) -> None:
    base = start_sim("--model", "m", "--mode", "random", "--inter-token-latency", "1")
    body = requests.post(
        f"{base}/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 25,
            "ignore_eos": True,
        },
        timeout=30,
    ).json()
    assert body["usage"]["completion_tokens"] == 25
    assert len(body["choices"][0]["message"]["content"].split()) == 25


def test_models_health_and_served_names(start_sim: SimFactory) -> None:
    base = start_sim("--model", "/models/llama", "--served-model-name", "llama", "llama-alias",
                     "--max-model-len", "4096")  # fmt: skip
    assert requests.get(f"{base}/health", timeout=10).status_code == 200
    models = requests.get(f"{base}/v1/models", timeout=10).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["llama", "llama-alias"]
    assert all(m["max_model_len"] == 4096 for m in models["data"])
    alias = requests.post(
        f"{base}/v1/completions", json={"model": "llama-alias", "prompt": "x"}, timeout=30
    )
    assert alias.status_code == 200
    assert alias.json()["model"] == "llama-alias"


def test_errors_are_openai_shaped(start_sim: SimFactory) -> None:
    base = start_sim(*ECHO, "--max-model-len", "10")
    unknown = _chat(base, model="gpt-nope")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "The model `gpt-nope` does not exist."
    assert unknown.json()["error"]["type"] == "NotFoundError"

    bad_json = requests.post(
        f"{base}/v1/chat/completions",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert bad_json.status_code == 400
    assert "not valid JSON" in bad_json.json()["error"]["message"]

    no_messages = requests.post(
        f"{base}/v1/chat/completions", json={"model": "sim-model"}, timeout=10
    )
    assert no_messages.status_code == 400
    assert no_messages.json()["error"]["param"] == "messages"

    bad_max = _chat(base, max_tokens=0)
    assert bad_max.status_code == 400
    assert "max_tokens must be a positive integer, got 0" in bad_max.json()["error"]["message"]

    too_long = _chat(base, max_tokens=8)
    assert too_long.status_code == 400
    assert "maximum context length is 10 tokens" in too_long.json()["error"]["message"]


def test_failure_injection_answers_with_errors(start_sim: SimFactory) -> None:
    base = start_sim(*ECHO, "--failure-injection-rate", "100")
    statuses = {_chat(base).status_code for _ in range(12)}
    assert statuses <= {429, 500, 503}
    assert len(statuses) > 1


def test_metrics_use_vllm_names_and_move(start_sim: SimFactory) -> None:
    base = start_sim(*ECHO)
    before = scrape(base)
    assert before.get("vllm:num_requests_running", model_name="sim-model") == 0
    assert before.get("vllm:time_to_first_token_seconds_count") == 0
    _chat(base)
    _chat(base, max_tokens=2, stream=True)
    after = scrape(base)
    assert after.get("vllm:prompt_tokens_total") == 8
    assert after.get("vllm:generation_tokens_total") == 4 + 2
    assert after.get("vllm:request_success_total", finished_reason="stop") == 1
    assert after.get("vllm:request_success_total", finished_reason="length") == 1
    for histogram in (
        "vllm:time_to_first_token_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:request_queue_time_seconds",
        "vllm:request_prefill_time_seconds",
        "vllm:request_decode_time_seconds",
        "vllm:request_inference_time_seconds",
        "vllm:request_prompt_tokens",
        "vllm:request_generation_tokens",
    ):
        assert after.get(f"{histogram}_count") == 2, histogram
        assert after.get(f"{histogram}_bucket", le="+Inf") == 2, histogram
    assert after.get("vllm:request_generation_tokens_sum") == 6
    assert after.get("vllm:inter_token_latency_seconds_count") == 3 + 1
    assert after.get("vllm:e2e_request_latency_seconds_sum") > after.get(
        "vllm:time_to_first_token_seconds_sum"
    )
    assert after.get("vllm:kv_cache_usage_perc") == 0
    assert {"model_name": "sim-model", "engine": "0"} in after.labels_of(
        "vllm:num_requests_waiting"
    )


async def _burst(base: str, count: int) -> tuple[list[float], list[float], int]:
    """Send `count` streaming requests at once; returns sorted TTFTs and e2e times (client side)
    and the largest `vllm:num_requests_waiting` seen while they ran."""
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 10, "ignore_eos": True, "stream": True}  # fmt: skip
    loop = asyncio.get_running_loop()
    max_waiting = 0
    finished = asyncio.Event()

    async def watch() -> None:
        nonlocal max_waiting
        while not finished.is_set():
            samples = await asyncio.to_thread(scrape, base)
            max_waiting = max(max_waiting, int(samples.get("vllm:num_requests_waiting")))
            await asyncio.sleep(0.02)

    async def one(session: aiohttp.ClientSession) -> tuple[float, float]:
        sent = loop.time()
        first = None
        async with session.post(f"{base}/v1/chat/completions", json=body) as response:
            assert response.status == 200
            async for line in response.content:
                if first is None and b'"content":"x"' in line:
                    first = loop.time()
        assert first is not None
        return first - sent, loop.time() - sent

    watcher = asyncio.create_task(watch())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        results = await asyncio.gather(*(one(session) for _ in range(count)))
    finished.set()
    await watcher
    return sorted(r[0] for r in results), sorted(r[1] for r in results), max_waiting


def test_overload_queues_fifo_and_ttft_grows_by_service_times(
    start_sim: SimFactory,
) -> None:
    base = start_sim("--model", "sim-model", "--mode", "echo", "--max-num-seqs", "2",
                     "--time-to-first-token", "50", "--inter-token-latency", "30")  # fmt: skip
    ttft, e2e, max_waiting = asyncio.run(_burst(base, 6))
    assert max_waiting >= 1
    first_service = e2e[0]  # the first two run at once, each for one full service time
    # 2 run at once, the next 2 wait one service time, the last 2 wait two
    assert ttft[1] < 0.5 * first_service
    assert ttft[2] > 0.8 * first_service
    assert ttft[4] > ttft[2] + 0.5 * (first_service - ttft[0])
    deadline = time.monotonic() + 10
    while scrape(base).get("vllm:num_requests_running") != 0:
        assert time.monotonic() < deadline, "requests still running after the burst"
        time.sleep(0.05)
    samples = scrape(base)
    assert samples.get("vllm:num_requests_waiting") == 0
    assert samples.get("vllm:request_success_total", finished_reason="length") == 6
    # four of the six waited about one or two service times in the queue
    assert samples.get("vllm:request_queue_time_seconds_sum") > 4 * 0.8 * first_service - 1e-9


@pytest.mark.parametrize(
    "flag", ["--max-num-seqs=0", "--failure-injection-rate=101", "--max-num-batched-tokens=128"]
)
def test_bad_flags_are_refused_by_name(flag: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gridplace_e2e.vllmsim.cli", "--model", "m", flag],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert flag.split("=", maxsplit=1)[0] in result.stderr


def test_flags_become_step_costs_in_seconds_and_scheduler_limits() -> None:
    args = build_parser().parse_args(
        ["--model", "m", "--max-num-seqs", "16", "--max-num-batched-tokens", "2048",
         "--time-to-first-token", "5", "--prefill-time-per-token", "0.02",
         "--inter-token-latency", "8", "--inter-token-latency-per-seq", "0.25"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.limits == SchedulerLimits(max_num_seqs=16, max_num_batched_tokens=2048)
    assert astuple(config.costs) == pytest.approx(astuple(StepCosts(0.005, 2e-5, 0.008, 2.5e-4)))
    default = config_from_args(build_parser().parse_args(["--model", "m"]))
    assert default.limits.max_num_batched_tokens == 8192


def test_a_simulator_that_cannot_start_is_reported() -> None:
    with pytest.raises(RuntimeError, match=r"did not start .*exit code 2"):
        start_simulator(["--model", "m", "--max-num-seqs", "0"])
