"""`gridplace-vllm-sim`: run the simulator as a server process."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from gridplace_e2e.vllmsim.server import SimConfig, Simulator
from gridplace_e2e.vllmsim.steps import SchedulerLimits, StepCosts

# vLLM's default for the OpenAI server with chunked prefill on.
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _percent(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentage in [0, 100], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridplace-vllm-sim",
        description="A vLLM-compatible inference simulator: OpenAI API, vLLM metrics, and a "
        "scheduler that runs one step at a time: every step decodes one token of each running "
        "sequence and prefills prompt chunks within a token budget, and lasts "
        "inter-token-latency + inter-token-latency-per-seq x decodes + prefill-time-per-token x "
        "prompt tokens. Latency flags are in milliseconds.",
    )
    parser.add_argument("--model", action="append", help="served model name (repeatable)")
    parser.add_argument("--served-model-name", nargs="+", help="names to serve instead of --model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=8000, help="0 picks a free port (printed at start)"
    )
    parser.add_argument(
        "--max-num-seqs",
        type=_positive_int,
        default=256,
        help="sequences in the batch at once (prefilling or decoding); the rest wait in FIFO order",
    )
    parser.add_argument(
        "--max-num-batched-tokens",
        type=_positive_int,
        default=DEFAULT_MAX_NUM_BATCHED_TOKENS,
        help="token budget of one scheduler step: one per decoding sequence plus the prompt "
        "chunks (chunked prefill); at least --max-num-seqs",
    )
    parser.add_argument(
        "--max-model-len", type=_positive_int, default=16384, help="context window in tokens"
    )
    parser.add_argument(
        "--time-to-first-token",
        type=_non_negative,
        default=50.0,
        help="fixed time per request before it reaches the scheduler (HTTP, tokenization), ms; "
        "it adds to the time to first token but holds no batch slot and no step",
    )
    parser.add_argument(
        "--prefill-time-per-token",
        type=_non_negative,
        default=0.0,
        help="compute time of one prompt token within a step, ms",
    )
    parser.add_argument(
        "--inter-token-latency",
        type=_non_negative,
        default=10.0,
        help="base duration of a scheduler step (the decode step of an empty batch), ms",
    )
    parser.add_argument(
        "--inter-token-latency-per-seq",
        type=_non_negative,
        default=0.0,
        help="step increase per decoding sequence, ms",
    )
    parser.add_argument("--mode", choices=("echo", "random"), default="random")
    parser.add_argument(
        "--failure-injection-rate",
        type=_percent,
        default=0.0,
        help="percent of requests answered with an injected error",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser  # fmt: skip


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The flags as the simulator's configuration (latencies from ms to seconds)."""
    names = tuple(args.served_model_name or args.model)
    return SimConfig(
        served_model_names=names,
        limits=SchedulerLimits(args.max_num_seqs, args.max_num_batched_tokens),
        max_model_len=args.max_model_len,
        costs=StepCosts(
            arrival_overhead_s=args.time_to_first_token / 1000,
            prefill_per_token_s=args.prefill_time_per_token / 1000,
            decode_base_s=args.inter_token_latency / 1000,
            decode_per_seq_s=args.inter_token_latency_per_seq / 1000,
        ),
        mode=args.mode,
        failure_injection_rate=args.failure_injection_rate,
        seed=args.seed,
    )


async def serve(config: SimConfig, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM; prints the bound address first so callers can use port 0."""
    runner = web.AppRunner(Simulator(config).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    print(
        f"gridplace-vllm-sim serving {','.join(config.served_model_names)} "
        f"on http://{host}:{bound_port}",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.model or args.served_model_name):
        parser.error("give the served model name with --model or --served-model-name")
    if args.max_num_batched_tokens < args.max_num_seqs:  # vLLM refuses it too
        parser.error(
            f"argument --max-num-batched-tokens: must be >= --max-num-seqs "
            f"({args.max_num_seqs}) so that a full batch of decodes fits in one step, "
            f"got {args.max_num_batched_tokens}"
        )
    try:
        asyncio.run(serve(config_from_args(args), args.host, args.port))
    except OSError as exc:
        sys.exit(f"gridplace-vllm-sim: cannot listen on {args.host}:{args.port}: {exc}")


if __name__ == "__main__":
    main()
