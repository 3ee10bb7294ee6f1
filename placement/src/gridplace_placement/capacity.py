"""How much traffic n replicas of a model can carry at a p95 time-to-first-token target.

A vLLM replica decodes its running sequences together; one decode step takes `a + b*batch`
seconds. The time-per-output-token target caps the batch, which gives the replica's *slots*.
Each request holds a slot for its prefill and its output tokens. Treating the slots of all
replicas in a pool as the servers of one M/M/c queue, Erlang-C gives the probability of waiting
and the wait distribution: P(W > t) = C(c, A) * exp(-(c*mu - lam)*t). The p95 wait, scaled by the
Allen-Cunneen factor (1 + cv^2)/2 for non-exponential service times (M/G/c), plus the prefill
time must stay within the queueing budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaincc, gammaln

FloatArray = NDArray[np.float64]

TAIL = 0.05  # the p95 wait is exceeded by 5% of requests


def erlang_b(servers: int, load: float) -> float:
    """Blocking probability of M/M/c/c by the stable recursion B(k) = A*B(k-1) / (k + A*B(k-1))."""
    if servers < 0 or load < 0:
        raise ValueError(f"erlang_b needs servers >= 0 and load >= 0, got {servers}, {load}")
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c(servers: int, load: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load A = lam/mu (Erlangs)."""
    if servers == 0 or load >= servers:
        return 1.0
    b = erlang_b(servers, load)
    return servers * b / (servers - load * (1.0 - b))


def erlang_c_array(servers: FloatArray, load: FloatArray) -> FloatArray:
    """Vectorised Erlang-C through the incomplete gamma form of Erlang-B.

    B(c, A) = Poisson(c; A) / P(X <= c) with X ~ Poisson(A); both terms come from scipy in log
    space, so it stays finite for tens of thousands of servers. Agrees with `erlang_c`.
    """
    c = np.asarray(servers, dtype=np.float64)
    a = np.asarray(load, dtype=np.float64)
    safe_a = np.maximum(a, 1e-300)
    log_pmf = c * np.log(safe_a) - safe_a - gammaln(c + 1.0)
    cdf = gammaincc(c + 1.0, safe_a)
    b = np.where(a > 0, np.exp(log_pmf) / np.maximum(cdf, 1e-300), 0.0)
    b = np.minimum(b, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pw = c * b / (c - a * (1.0 - b))
    return np.where((c <= 0) | (a >= c), 1.0, np.clip(pw, 0.0, 1.0))


def p95_wait_array(
    servers: FloatArray, arrival: FloatArray, service_rate: FloatArray, scv: FloatArray
) -> FloatArray:
    """p95 of the wait before service (s); inf when the queue is unstable."""
    load = arrival / service_rate
    pw = erlang_c_array(servers, load)
    drain = servers * service_rate - arrival
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log(pw / TAIL) / drain * (1.0 + scv) / 2.0
    wait = np.where(pw <= TAIL, 0.0, t)
    return np.where((drain <= 0) & (arrival > 0), np.inf, wait)


def max_arrival_array(
    servers: FloatArray, service_rate: FloatArray, wait_budget: FloatArray, scv: FloatArray
) -> FloatArray:
    """Largest arrival rate whose p95 wait fits the budget (bisection; wait grows with rate)."""
    lo = np.zeros_like(servers, dtype=np.float64)
    hi = servers * service_rate
    for _ in range(60):
        mid = (lo + hi) / 2.0
        ok = p95_wait_array(servers, mid, service_rate, scv) <= wait_budget
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    return np.where(wait_budget >= 0, lo, 0.0)


@dataclass(frozen=True)
class ReplicaModel:
    """Queueing view of one replica of a model on one GPU type."""

    slots: int  # concurrent sequences at the time-per-output-token target
    service_time_s: float  # how long a request holds a slot
    prefill_s: float
    wait_budget_s: float  # p95 wait allowed before prefill starts
    scv: float  # squared coefficient of variation of the service time

    @property
    def service_rate(self) -> float:
        return 1.0 / self.service_time_s

    def capacity(self, replicas: int) -> float:
        """Largest arrival rate (req/s) `replicas` replicas carry within the p95 budget."""
        if replicas <= 0 or self.slots <= 0:
            return 0.0
        return float(
            max_arrival_array(
                np.array([replicas * self.slots], dtype=np.float64),
                np.array([self.service_rate]),
                np.array([self.wait_budget_s]),
                np.array([self.scv]),
            )[0]
        )

    def p95_wait(self, replicas: int, arrival: float) -> float:
        """p95 wait before prefill (s) at `arrival` req/s over `replicas` replicas."""
        if arrival <= 0:
            return 0.0
        if replicas <= 0 or self.slots <= 0:
            return math.inf
        return float(
            p95_wait_array(
                np.array([replicas * self.slots], dtype=np.float64),
                np.array([arrival]),
                np.array([self.service_rate]),
                np.array([self.scv]),
            )[0]
        )


def slots_at_target(
    decode_base_s: float, decode_per_seq_s: float, max_batch: int, tpot: float
) -> int:
    """Largest batch whose decode step `a + b*batch` meets the time-per-output-token target."""
    if decode_base_s >= tpot:
        return 0
    if decode_per_seq_s <= 0:
        return max_batch
    return min(max_batch, math.floor((tpot - decode_base_s) / decode_per_seq_s))


@dataclass(frozen=True)
class StepModel:
    """One vLLM replica as its scheduler runs it: every step decodes one token of each running
    sequence and prefills up to what the per-step token budget leaves, and takes
    `decode_base_s + decode_per_seq_s * sequences + prefill_per_token_s * prefill_tokens`.

    Decode is bound by memory bandwidth (the base reads the weights once per step, each sequence
    adds its KV cache); prefill is bound by compute (about 2 x parameters FLOPs per token), so a
    prompt token costs the same whether it is batched with decodes or not, and a replica can never
    prefill faster than `1 / prefill_per_token_s` tokens per second.
    """

    decode_base_s: float
    decode_per_seq_s: float
    prefill_per_token_s: float
    max_num_seqs: int
    max_batched_tokens: int

    def step_seconds(self, sequences: float, prefill_tokens: float) -> float:
        return (
            self.decode_base_s
            + self.decode_per_seq_s * sequences
            + self.prefill_per_token_s * prefill_tokens
        )

    def steady_state(self, rate: float, prompt_tokens: float, output_tokens: float) -> float:
        """Step time (the time per output token) at `rate` req/s; inf past saturation.

        With `rate` arrivals a second, each decoding for `output_tokens` steps, Little's law puts
        rate x output_tokens x step sequences in the batch and rate x prompt_tokens x step prompt
        tokens in each step, so step = base / (1 - rate (b x output + c x prompt)).
        """
        load = rate * (
            self.decode_per_seq_s * output_tokens + self.prefill_per_token_s * prompt_tokens
        )
        return self.decode_base_s / (1.0 - load) if load < 1.0 else math.inf

    def max_rate(self, prompt_tokens: float, output_tokens: float, tpot_s: float) -> float:
        """Largest steady arrival rate (req/s) whose time per output token stays within `tpot_s`,
        whose batch stays within `max_num_seqs` and whose steps stay within the token budget.

        With k = b x output + c x prompt, the step lasts a / (1 - rate x k): the target gives
        rate <= (1 - a/tpot) / k; the batch, rate x output x step <= max_num_seqs, gives
        rate <= M / (output x a + M x k); the budget, rate x (output + prompt) x step <= K, gives
        rate <= K / ((output + prompt) x a + K x k).
        """
        if tpot_s <= self.decode_base_s:
            return 0.0
        a = self.decode_base_s
        k = self.decode_per_seq_s * output_tokens + self.prefill_per_token_s * prompt_tokens
        by_tpot = (1.0 - a / tpot_s) / k if k > 0 else math.inf
        seqs, budget = float(self.max_num_seqs), float(self.max_batched_tokens)
        by_batch = seqs / (output_tokens * a + seqs * k)
        by_budget = budget / ((output_tokens + prompt_tokens) * a + budget * k)
        return min(by_tpot, by_batch, by_budget)

    def prefill_seconds(self, prompt_tokens: float, sequences: float) -> float:
        """Time from a request's first scheduled step to its first token: its prompt in chunks of
        what the token budget leaves beside `sequences` decodes, one step per chunk (one step
        when the whole prompt fits); each step pays the decodes, the prompt its tokens once."""
        room = max(self.max_batched_tokens - sequences, 1.0)
        chunks = max(math.ceil(prompt_tokens / room), 1)
        return chunks * self.step_seconds(sequences, 0.0) + self.prefill_per_token_s * prompt_tokens
