"""The OpenAI-compatible HTTP surface of the simulator (aiohttp)."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gridplace_e2e.vllmsim.engine import Engine, Job
from gridplace_e2e.vllmsim.metrics import SimMetrics
from gridplace_e2e.vllmsim.model import (
    Mode,
    context_error,
    detokenize_piece,
    plan_output,
    tokenize,
)
from gridplace_e2e.vllmsim.steps import SchedulerLimits, StepCosts

# What an injected failure looks like: status, OpenAI error type, message.
_INJECTED_FAILURES = (
    (429, "RateLimitError", "Rate limit reached (injected failure)"),
    (500, "InternalServerError", "Internal server error (injected failure)"),
    (503, "ServiceUnavailableError", "The server is overloaded (injected failure)"),
)


@dataclass(frozen=True)
class SimConfig:
    served_model_names: tuple[str, ...]
    limits: SchedulerLimits
    max_model_len: int
    costs: StepCosts
    mode: Mode
    failure_injection_rate: float  # percent of requests, 0-100
    seed: int


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError"}


def error_response(status: int, message: str, error_type: str, param: str | None) -> web.Response:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": status}}
    return web.json_response(body, status=status)


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    prompt_tokens: tuple[str, ...]
    echo_tokens: tuple[str, ...]  # what echo mode answers with
    max_tokens: int | None
    stream: bool
    include_usage: bool
    ignore_eos: bool


def _content_text(content: object, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(p, str) for p in parts):
            return " ".join(str(p) for p in parts)
    raise ApiError(400, f"messages[{index}].content must be a string or text parts", "messages")


def _optional_int(body: Mapping[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ApiError(400, f"{field} must be a positive integer, got {value!r}", field)
    return value


def _optional_bool(body: Mapping[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise ApiError(400, f"{field} must be a boolean, got {value!r}", field)
    return value


def parse_request(body: object, chat: bool, served: tuple[str, ...]) -> CompletionRequest:
    """Validate an OpenAI (chat) completion body; raises ApiError naming the bad field."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = body.get("model", served[0])
    if model not in served:
        raise ApiError(404, f"The model `{model}` does not exist.", "model")
    if body.get("n", 1) != 1:
        raise ApiError(400, f"only n=1 is supported, got {body.get('n')!r}", "n")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "messages must be a non-empty list", "messages")
        texts = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise ApiError(400, f"messages[{index}] must be an object with a role", "messages")
            texts.append(_content_text(message.get("content", ""), index))
        prompt = tuple(t for text in texts for t in tokenize(text))
        echo = tuple(tokenize(texts[-1])) or prompt
        max_tokens = _optional_int(body, "max_completion_tokens") or _optional_int(
            body, "max_tokens"
        )
    else:
        raw = body.get("prompt")
        if isinstance(raw, list) and len(raw) == 1:
            raw = raw[0]
        if not isinstance(raw, str):
            raise ApiError(400, "prompt must be a string (or a list of one string)", "prompt")
        prompt = echo = tuple(tokenize(raw))
        max_tokens = _optional_int(body, "max_tokens")
    if not prompt:
        raise ApiError(400, "the prompt is empty", "messages" if chat else "prompt")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, f"stream_options must be an object, got {options!r}", "stream_options")
    return CompletionRequest(
        model=model,
        prompt_tokens=prompt,
        echo_tokens=echo,
        max_tokens=max_tokens,
        stream=_optional_bool(body, "stream"),
        include_usage=_optional_bool(options, "include_usage"),
        ignore_eos=_optional_bool(body, "ignore_eos"),
    )


def _sse(payload: Mapping[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.metrics = SimMetrics(config.served_model_names[0], config.max_model_len)
        self.engine = Engine(config.costs, config.limits, config.max_model_len, self.metrics)
        self._rng = random.Random(config.seed)
        self._created = int(time.time())

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.prometheus)
        return app

    async def health(self, _: web.Request) -> web.Response:
        return web.Response(status=200)

    async def prometheus(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def models(self, _: web.Request) -> web.Response:
        root = self.config.served_model_names[0]
        data = [
            {
                "id": name,
                "object": "model",
                "created": self._created,
                "owned_by": "vllm",
                "root": root,
                "parent": None,
                "max_model_len": self.config.max_model_len,
            }
            for name in self.config.served_model_names
        ]
        return web.json_response({"object": "list", "data": data})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=False)

    async def _complete(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return error_response(
                400, f"the request body is not valid JSON: {exc}", "BadRequestError", None
            )
        try:
            parsed = parse_request(body, chat, self.config.served_model_names)
            problem = context_error(
                len(parsed.prompt_tokens), parsed.max_tokens, self.config.max_model_len
            )
            if problem:
                prompt_field = "messages" if chat else "prompt"
                raise ApiError(400, problem, "max_tokens" if parsed.max_tokens else prompt_field)
        except ApiError as err:
            return error_response(err.status, err.message, _ERROR_TYPES[err.status], err.param)
        if self._rng.random() * 100 < self.config.failure_injection_rate:
            status, error_type, message = self._rng.choice(_INJECTED_FAILURES)
            return error_response(status, message, error_type, None)
        output = plan_output(
            self.config.mode,
            parsed.echo_tokens,
            max_tokens=parsed.max_tokens,
            context_left=self.config.max_model_len - len(parsed.prompt_tokens),
            ignore_eos=parsed.ignore_eos,
            rng=self._rng,
        )
        job = Job(len(parsed.prompt_tokens), parsed.max_tokens, output)
        reply = _Reply(parsed, chat, len(output.tokens), output.finish_reason, self._created)
        if parsed.stream:
            return await self._stream(request, job, reply)
        pieces: list[str] = []

        async def collect(index: int, token: str) -> None:
            pieces.append(detokenize_piece(token, index == 0))

        await self.engine.run(job, collect)
        return web.json_response(reply.whole("".join(pieces)))

    async def _stream(self, request: web.Request, job: Job, reply: _Reply) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        async def send(index: int, token: str) -> None:
            if index == 0 and reply.chat:
                await response.write(_sse(reply.role_chunk()))
            await response.write(_sse(reply.chunk(index, detokenize_piece(token, index == 0))))

        try:
            await self.engine.run(job, send)
            if reply.request.include_usage:
                await response.write(_sse(reply.usage_chunk()))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client left; the engine has counted the request as aborted
        return response


class _Reply:
    """Builds OpenAI response bodies for one request."""

    def __init__(
        self,
        request: CompletionRequest,
        chat: bool,
        output_tokens: int,
        finish_reason: str,
        created: int,
    ) -> None:
        self.request = request
        self.chat = chat
        self.output_tokens = output_tokens
        self.finish_reason = finish_reason
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = created

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.request.model}

    def _usage(self) -> dict[str, int]:
        prompt = len(self.request.prompt_tokens)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": self.output_tokens,
            "total_tokens": prompt + self.output_tokens,
        }

    def whole(self, text: str) -> dict[str, Any]:
        if self.chat:
            choice: dict[str, Any] = {"message": {"role": "assistant", "content": text}}
            body = self._envelope("chat.completion")
        else:
            choice = {"text": text}
            body = self._envelope("text_completion")
        choice.update(index=0, logprobs=None, finish_reason=self.finish_reason)
        return body | {"choices": [choice], "usage": self._usage()}

    def role_chunk(self) -> dict[str, Any]:
        choice = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                  "finish_reason": None}  # fmt: skip
        return self._envelope("chat.completion.chunk") | {"choices": [choice]}

    def chunk(self, index: int, piece: str) -> dict[str, Any]:
        last = index == self.output_tokens - 1
        finish = self.finish_reason if last else None
        if self.chat:
            choice: dict[str, Any] = {"delta": {"content": piece}}
            body = self._envelope("chat.completion.chunk")
        else:
            choice = {"text": piece}
            body = self._envelope("text_completion")
        choice.update(index=0, logprobs=None, finish_reason=finish)
        return body | {"choices": [choice]}

    def usage_chunk(self) -> dict[str, Any]:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return self._envelope(kind) | {"choices": [], "usage": self._usage()}
