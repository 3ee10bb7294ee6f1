#!/usr/bin/env python3
"""Measure a performance profile of one model on one GPU type against a running vLLM server.

Prints the entry of `spec.model.performance.gpus` of an InferenceDeployment (see
docs/getting-started.md, "Measuring a profile"): the decode step time against the batch size
(`decodeBaseSeconds`, `decodePerSequenceSeconds`) and the prefill time per prompt token
(`prefillSecondsPerToken`), fitted by least squares to what the server's OpenAI-compatible
`/v1/completions` endpoint streams back. Only the Python standard library is used, so the script
can be copied to any machine that reaches the server.

Decode: for each batch size B, B streaming requests with short prompts are sent at once, each
asking for `--output-tokens` tokens with `ignore_eos`; the median gap between consecutive tokens
in the middle of their answers (where all B sequences decode together) is the step time at B.
Prefill: one request at a time, prompts of several lengths and one output token; the time to the
first token against the prompt's token count (as the server's `usage` reports it) has the prefill
time per token as its slope. Prompts start with a random word so the prefix cache cannot serve
them.

Exit codes: 0 done; 2 a bad argument (or a model the server does not serve); 1 the server
failed or could not be reached.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

USAGE_ERROR = 2
RUNTIME_ERROR = 1


class MeasureError(Exception):
    """The server failed or answered something unusable (exit 1)."""


class UsageError(Exception):
    """The arguments cannot give a measurement (exit 2)."""


@dataclass(frozen=True)
class Fit:
    intercept: float
    slope: float
    r_squared: float


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> Fit:
    """Least-squares line through (xs, ys)."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        raise UsageError("the fit needs at least two different x values")
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return Fit(intercept, slope, 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0)


@dataclass
class Stream:
    """One streamed completion: when each text chunk arrived, and the server's token counts."""

    sent_at: float
    chunk_times: list[float]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def _nonce(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))


class Client:
    def __init__(self, base_url: str, model: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s

    def served_models(self) -> list[str]:
        try:
            with urllib.request.urlopen(
                self.base_url + "/v1/models", timeout=self.timeout_s
            ) as response:
                body = json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise MeasureError(f"{self.base_url}/v1/models: {err}") from err
        try:
            return [str(m["id"]) for m in body["data"]]
        except (KeyError, TypeError) as err:
            raise MeasureError(f"{self.base_url}/v1/models: not an OpenAI model list") from err

    def stream(self, prompt: str, max_tokens: int) -> Stream:
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        request = urllib.request.Request(
            self.base_url + "/v1/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        result = Stream(sent_at=time.perf_counter(), chunk_times=[])
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                for raw in response:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    now = time.perf_counter()
                    chunk = json.loads(data)
                    if chunk.get("choices"):
                        result.chunk_times.append(now)
                    usage = chunk.get("usage")
                    if usage:
                        result.prompt_tokens = int(usage["prompt_tokens"])
                        result.completion_tokens = int(usage["completion_tokens"])
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:300]
            raise MeasureError(f"/v1/completions answered {err.code}: {detail}") from err
        except (urllib.error.URLError, OSError, ValueError, KeyError) as err:
            raise MeasureError(f"/v1/completions: {err}") from err
        if not result.chunk_times:
            raise MeasureError("/v1/completions streamed no token")
        return result


def concurrent_streams(client: Client, prompts: Sequence[str], max_tokens: int) -> list[Stream]:
    """Send every prompt at once (one thread each) and wait for all answers."""
    results: list[Stream | None] = [None] * len(prompts)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(prompts))

    def send(index: int) -> None:
        try:
            barrier.wait()
            results[index] = client.stream(prompts[index], max_tokens)
        except BaseException as err:  # re-raised in the caller's thread
            errors.append(err)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def decode_step_seconds(streams: Sequence[Stream]) -> float:
    """Median gap between tokens in the middle half of every answer, where the whole batch
    decodes (the first steps may still admit a late request, the last ones lose finished ones)."""
    gaps: list[float] = []
    for s in streams:
        times = s.chunk_times
        n = len(times)
        lo, hi = n // 4, n - n // 4
        gaps.extend(b - a for a, b in zip(times[lo : hi - 1], times[lo + 1 : hi], strict=True))
    if not gaps:
        raise MeasureError("answers too short to time decode steps; raise --output-tokens")
    return statistics.median(gaps)


@dataclass(frozen=True)
class Measurement:
    decode_points: list[tuple[int, float]]  # (batch size, step seconds)
    prefill_points: list[tuple[int, float]]  # (prompt tokens, seconds to the first token)
    decode: Fit
    prefill: Fit


def measure(
    client: Client,
    *,
    batch_sizes: Sequence[int],
    prompt_lengths: Sequence[int],
    output_tokens: int,
    decode_prompt_tokens: int,
    repeats: int,
    seed: int,
    progress: Any = None,
) -> Measurement:
    rng = random.Random(seed)
    say = progress or (lambda _message: None)
    client.stream(f"{_nonce(rng)} warm up", 4)
    decode_points: list[tuple[int, float]] = []
    for batch in batch_sizes:
        for _ in range(repeats):
            prompts = [_nonce(rng) + " hello" * (decode_prompt_tokens - 1) for _ in range(batch)]
            streams = concurrent_streams(client, prompts, output_tokens)
            step = decode_step_seconds(streams)
            decode_points.append((batch, step))
            say(f"decode: batch {batch}: step {step * 1000:.2f} ms")
    prefill_points: list[tuple[int, float]] = []
    for length in prompt_lengths:
        for _ in range(repeats):
            # A random first word: no two prompts share a prefix the cache could serve.
            prompt = _nonce(rng) + " hello" * (length - 1)
            s = client.stream(prompt, 1)
            tokens = s.prompt_tokens if s.prompt_tokens is not None else length
            ttft = s.chunk_times[0] - s.sent_at
            prefill_points.append((tokens, ttft))
            say(f"prefill: {tokens} prompt tokens: first token after {ttft * 1000:.2f} ms")
    decode = linear_fit([b for b, _ in decode_points], [t for _, t in decode_points])
    prefill = linear_fit([p for p, _ in prefill_points], [t for _, t in prefill_points])
    return Measurement(decode_points, prefill_points, decode, prefill)


def _yaml_number(value: Any) -> str:
    """Decimal notation: YAML 1.1 readers take `1e-05` (no dot in the mantissa) for a string."""
    if isinstance(value, float):
        text = f"{value:.10f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    return str(value)


def profile_entry(m: Measurement, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of one `spec.model.performance.gpus` entry, in the CRD's names."""
    entry: dict[str, Any] = {
        "gpuType": args.gpu_type,
        "maxBatch": args.max_num_seqs,
        "decodeBaseSeconds": round(max(m.decode.intercept, 1e-6), 7),
        "decodePerSequenceSeconds": round(max(m.decode.slope, 0.0), 9),
        "prefillSecondsPerToken": round(max(m.prefill.slope, 0.0), 10),
        "maxBatchedTokens": args.max_num_batched_tokens,
    }
    if args.active_power_watts is not None:
        entry["activePowerWatts"] = args.active_power_watts
    if args.idle_power_watts is not None:
        entry["idlePowerWatts"] = args.idle_power_watts
    return entry


def render_yaml(entry: dict[str, Any], m: Measurement, args: argparse.Namespace) -> str:
    lines = [
        f"# measured against {args.url} (model {args.model})",
        f"# decode fit over batch sizes {','.join(map(str, args.batch_sizes))}:"
        f" r^2 {m.decode.r_squared:.4f}",
        f"# prefill fit over prompts of {min(p for p, _ in m.prefill_points)}"
        f"..{max(p for p, _ in m.prefill_points)} tokens: r^2 {m.prefill.r_squared:.4f};"
        f" fixed time before the first token {m.prefill.intercept * 1000:.1f} ms",
        "- " + f"gpuType: {entry['gpuType']}",
    ]
    lines += [f"  {key}: {_yaml_number(value)}" for key, value in entry.items() if key != "gpuType"]
    if "activePowerWatts" not in entry or "idlePowerWatts" not in entry:
        lines += [
            "  # activePowerWatts, idlePowerWatts: not measurable over HTTP; read the replica's",
            "  # GPUs with `nvidia-smi --query-gpu=power.draw --format=csv -l 1` during the",
            "  # decode run (active) and when loaded but idle, and pass --active-power-watts and",
            "  # --idle-power-watts (sum over the replica's GPUs). The CRD requires both.",
        ]
    return "\n".join(lines)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        message = f"expected integers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="measure_profile.py",
        description="Measure a gridplace performance profile against a running vLLM server.",
    )
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", required=True, help="served model name, as in /v1/models")
    parser.add_argument(
        "--gpu-type", required=True, help="the GPUs' nvidia.com/gpu.product label value"
    )
    parser.add_argument(
        "--max-num-seqs", type=int, required=True, help="the server's --max-num-seqs (maxBatch)"
    )
    parser.add_argument(
        "--max-num-batched-tokens",
        type=int,
        default=8192,
        help="the server's --max-num-batched-tokens (maxBatchedTokens; default 8192)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=_int_list,
        default=None,
        help="batch sizes to time decode steps at (default: 1, 2, 4, ... up to --max-num-seqs,"
        " at most 64)",
    )
    parser.add_argument(
        "--prompt-lengths",
        type=_int_list,
        default=[256, 512, 1024, 2048],
        help="prompt lengths in tokens to time prefill at (default 256,512,1024,2048)",
    )
    parser.add_argument(
        "--output-tokens", type=int, default=64, help="tokens per decode request (default 64)"
    )
    parser.add_argument(
        "--decode-prompt-tokens",
        type=int,
        default=128,
        help="prompt length of the decode requests: the context each sequence's KV cache holds,"
        " which the per-sequence cost grows with; use your workload's typical prompt (default 128)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per point (default 3)")
    parser.add_argument("--active-power-watts", type=float, help="replica power, full batch")
    parser.add_argument("--idle-power-watts", type=float, help="replica power, loaded and idle")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prompts' random words")
    parser.add_argument("--output", choices=("yaml", "json"), default="yaml")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def check_args(args: argparse.Namespace) -> None:
    if args.max_num_seqs < 1 or args.max_num_batched_tokens < 1:
        raise UsageError("--max-num-seqs and --max-num-batched-tokens must be at least 1")
    if args.batch_sizes is None:
        top = min(args.max_num_seqs, 64)
        args.batch_sizes = sorted({min(2**i, top) for i in range(top.bit_length() + 1)})
    if max(args.batch_sizes) > args.max_num_seqs:
        raise UsageError(
            f"--batch-sizes {max(args.batch_sizes)} is above --max-num-seqs {args.max_num_seqs}:"
            " the extra requests would queue instead of joining the batch"
        )
    if len(set(args.batch_sizes)) < 2 or len(set(args.prompt_lengths)) < 2:
        raise UsageError("--batch-sizes and --prompt-lengths each need two different values")
    if max(args.prompt_lengths) > args.max_num_batched_tokens:
        raise UsageError(
            f"--prompt-lengths {max(args.prompt_lengths)} is above --max-num-batched-tokens"
            f" {args.max_num_batched_tokens}: the prompt would be prefilled over several steps"
        )
    if args.output_tokens < 8:
        raise UsageError("--output-tokens must be at least 8 to time decode steps")
    if args.decode_prompt_tokens < 1:
        raise UsageError("--decode-prompt-tokens must be at least 1")
    if args.repeats < 1:
        raise UsageError("--repeats must be at least 1")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = "measure_profile.py"
    try:
        check_args(args)
        client = Client(args.url, args.model, args.timeout)
        served = client.served_models()
        if args.model not in served:
            raise UsageError(
                f"{args.url} does not serve {args.model!r}; it serves: {', '.join(served)}"
            )

        def progress(message: str) -> None:
            if not args.quiet:
                print(message, file=sys.stderr, flush=True)

        m = measure(
            client,
            batch_sizes=args.batch_sizes,
            prompt_lengths=args.prompt_lengths,
            output_tokens=args.output_tokens,
            decode_prompt_tokens=args.decode_prompt_tokens,
            repeats=args.repeats,
            seed=args.seed,
            progress=progress,
        )
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except MeasureError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return RUNTIME_ERROR
    entry = profile_entry(m, args)
    if args.output == "json":
        fits = {
            "decode": {"points": m.decode_points, "rSquared": m.decode.r_squared},
            "prefill": {
                "points": m.prefill_points,
                "rSquared": m.prefill.r_squared,
                "fixedSeconds": m.prefill.intercept,
            },
        }
        print(json.dumps({"profile": entry, "fits": fits}, indent=2))
    else:
        print(render_yaml(entry, m, args))
    if not math.isfinite(m.decode.slope) or m.decode.slope < 0 or m.prefill.slope <= 0:
        print(
            f"{prog}: warning: a fitted slope is negative or zero; the timings are noise"
            " (raise --output-tokens, --repeats or the prompt lengths)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
