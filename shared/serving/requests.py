"""The request handler of the completions server: a JSON body in, an engine ``Request`` out, or a clear error.

This module imports neither FastAPI nor any web library (the checks of project 18 import it), so the rules of
what the server accepts can be tested without a server. :func:`parse_completion_request` is the reference
for the notebook's last TODO; :func:`shared.serving.server.create_app` takes any function with its signature
as ``parse_request=``.

What a ``POST /v1/completions`` body may hold (the subset of the OpenAI completions API this server speaks):

``prompt`` (required)
    one non-empty string whose every character is in the tokenizer's vocabulary, at most ``max_context - 1``
    characters long (one place is left for a generated token). Lists of prompts and token arrays are refused.
``max_tokens`` (default ``min(16, max_tokens_limit, max_context - len(prompt))``; 16 is OpenAI's default)
    an integer ``>= 1``, ``<= max_tokens_limit``, with ``len(prompt) + max_tokens <= max_context``: the
    model's context is not a sliding window in the engine, so a completion must fit in it.
``temperature`` (default 1.0)
    a finite number in ``[0, 2]`` (OpenAI's range); 0 is greedy decoding.
``stream`` (default false)
    a boolean: true answers with server-sent events, one chunk per token.
``seed`` (optional)
    an integer in ``[0, 2**63)``; the same seed and body give the same completion.
``n`` (optional)
    only 1: one completion per request.
``model``
    optional; if given it must be a string. The server serves one model and ignores the name (it answers
    with its own ``model`` field), as many single-model servers do.

Options that would change the output but are not implemented (``top_p`` other than 1, ``stop``, ``logprobs``,
``echo``, ``best_of``, ``suffix``, ``logit_bias``, nonzero ``presence_penalty`` / ``frequency_penalty``) are
refused rather than silently ignored; any other field (``user``, ``stream_options``, ...) is ignored.

Every error is a :class:`RequestError` whose message names the field, the value received and what is allowed.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MAX_TEMPERATURE",
    "RequestError",
    "parse_completion_request",
]

DEFAULT_MAX_TOKENS = 16  # the OpenAI completions API's default
MAX_TEMPERATURE = 2.0  # the OpenAI API's upper bound
MAX_SEED = 2**63  # exclusive: torch.Generator.manual_seed takes any int64-sized non-negative seed

# option -> the only value this server implements (None: the option must be absent or null)
_UNSUPPORTED: dict[str, Any] = {
    "top_p": 1,
    "stop": None,
    "logprobs": None,
    "echo": False,
    "best_of": 1,
    "suffix": None,
    "logit_bias": None,
    "presence_penalty": 0,
    "frequency_penalty": 0,
}


class RequestError(Exception):
    """A request the server refuses: the HTTP ``status`` (4xx), a ``message`` for the client and the body
    field it is about (``param``, None when it concerns the whole body); ``code`` is an optional
    machine-readable reason (OpenAI-style, e.g. ``"context_length_exceeded"``)."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.param = param
        self.code = code

    def __repr__(self) -> str:
        return f"RequestError({self.status}, {self.message!r}, param={self.param!r}, code={self.code!r})"


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unknown_chars(prompt: str, tokenizer: Any) -> list[str]:
    """The distinct characters of ``prompt`` the tokenizer has no id for, in order of first appearance."""
    stoi = getattr(tokenizer, "stoi", None)
    if stoi is not None:
        return list(dict.fromkeys(c for c in prompt if c not in stoi))
    try:  # a tokenizer without a character table: it must refuse unknown text itself
        tokenizer.encode(prompt)
    except (ValueError, KeyError):
        return list(dict.fromkeys(c for c in prompt if not _encodes(tokenizer, c)))
    return []


def _encodes(tokenizer: Any, char: str) -> bool:
    try:
        tokenizer.encode(char)
    except (ValueError, KeyError):
        return False
    return True


def _check_unsupported(body: dict) -> None:
    for name, allowed in _UNSUPPORTED.items():
        if name in body and body[name] is not None and body[name] != allowed:
            what = "must be absent" if allowed is None else f"must be {allowed!r} or absent"
            raise RequestError(
                400, f"{name}={_short(body[name])} is not supported by this server; {name} {what}", name
            )
    if "n" in body and body["n"] is not None and (not _is_int(body["n"]) or body["n"] != 1):
        raise RequestError(
            400, f"n={_short(body['n'])} is not supported: this server returns one completion per request "
            "(n must be 1 or absent)", "n")
    if "model" in body and body["model"] is not None and not isinstance(body["model"], str):
        raise RequestError(400, f"model must be a string, got {_short(body['model'])}", "model")


def _parse_prompt(body: dict, tokenizer: Any, max_context: int) -> list[int]:
    if "prompt" not in body or body["prompt"] is None:
        raise RequestError(400, "prompt is required: a non-empty string", "prompt")
    prompt = body["prompt"]
    if isinstance(prompt, list):
        raise RequestError(
            400, "prompt must be a single string; lists of prompts and token arrays are not supported",
            "prompt")
    if not isinstance(prompt, str):
        raise RequestError(
            400, f"prompt must be a string, got {type(prompt).__name__} {_short(prompt)}", "prompt")
    if not prompt:
        raise RequestError(400, "prompt is empty: give at least one character", "prompt")
    unknown = _unknown_chars(prompt, tokenizer)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        raise RequestError(
            400, f"prompt has {len(unknown)} character(s) outside the model's vocabulary of "
            f"{len(tokenizer)} characters: {shown}", "prompt", "invalid_characters")
    ids = list(tokenizer.encode(prompt))
    if len(ids) >= max_context:
        raise RequestError(
            400, f"prompt is {len(ids)} tokens long; the model's context holds {max_context} tokens, so a "
            f"prompt may have at most {max_context - 1} (one place is left for a generated token)",
            "prompt", "context_length_exceeded")
    return ids


def _parse_max_tokens(body: dict, n_prompt: int, max_context: int, max_tokens_limit: int) -> int:
    room = max_context - n_prompt
    if "max_tokens" not in body or body["max_tokens"] is None:
        return min(DEFAULT_MAX_TOKENS, max_tokens_limit, room)
    value = body["max_tokens"]
    if not _is_int(value):
        raise RequestError(400, f"max_tokens must be an integer, got {_short(value)}", "max_tokens")
    if value < 1:
        raise RequestError(400, f"max_tokens={value} is below 1: ask for at least one token", "max_tokens")
    if value > max_tokens_limit:
        raise RequestError(
            400, f"max_tokens={value} is beyond this server's limit of {max_tokens_limit}", "max_tokens"
        )
    if value > room:
        raise RequestError(
            400, f"max_tokens={value} does not fit: the prompt is {n_prompt} tokens and the context holds "
            f"{max_context}, so max_tokens may be at most {room}", "max_tokens", "context_length_exceeded")
    return value


def _parse_temperature(body: dict) -> float:
    if "temperature" not in body or body["temperature"] is None:
        return 1.0
    value = body["temperature"]
    if not _is_number(value) or not math.isfinite(value):
        raise RequestError(400, f"temperature must be a number, got {_short(value)}", "temperature")
    if not 0 <= value <= MAX_TEMPERATURE:
        raise RequestError(
            400, f"temperature={value} is out of range: it must be between 0 (greedy) and "
            f"{MAX_TEMPERATURE:g}",
            "temperature")
    return float(value)


def _parse_seed(body: dict) -> int | None:
    if "seed" not in body or body["seed"] is None:
        return None
    value = body["seed"]
    if not _is_int(value) or not 0 <= value < MAX_SEED:
        raise RequestError(400, f"seed must be an integer in [0, 2**63), got {_short(value)}", "seed")
    return value


def parse_completion_request(
    body: object, tokenizer: Any, max_context: int, max_tokens_limit: int
) -> tuple[Any, bool]:
    """Validate a decoded JSON ``body`` of ``POST /v1/completions`` -> ``(Request, stream)``.

    ``tokenizer`` encodes the prompt (a :class:`shared.tokenizers.CharTokenizer`: one token per character);
    ``max_context`` is the engine's context (prompt + completion); ``max_tokens_limit`` is the server's cap on
    ``max_tokens``. The rules are in the module docstring. The returned ``Request`` carries a fresh
    ``request_id`` (``"cmpl-..."``); the server may replace it with its own. Raises :class:`RequestError`
    (status 400) naming the field, the value and what is allowed.
    """
    from shared.serving.engine import Request  # lazily: the engine imports torch

    if not isinstance(body, dict):
        raise RequestError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    _check_unsupported(body)
    prompt_ids = _parse_prompt(body, tokenizer, max_context)
    max_tokens = _parse_max_tokens(body, len(prompt_ids), max_context, max_tokens_limit)
    temperature = _parse_temperature(body)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise RequestError(400, f"stream must be true or false, got {_short(stream)}", "stream")
    seed = _parse_seed(body)
    request = Request(
        request_id=f"cmpl-{uuid.uuid4().hex[:24]}",
        prompt_ids=prompt_ids,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
    )
    return request, stream
