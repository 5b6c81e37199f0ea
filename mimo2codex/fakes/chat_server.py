"""Generic strict fake of an OpenAI-compatible Chat Completions service (standard library only).

The server part (threads, HTTP/1.1 keep-alive, chunked SSE, failure knobs, request recording,
control API) knows nothing about a particular provider. Everything a provider decides - models,
auth rules, validation, error bodies, reasoning field name, chunk/usage shapes - lives in a
`Profile`. `mimo.py` holds the MiMo profile; other providers are meant to be small `Profile`
subclasses that override class attributes, `TEXTS` and a few `check_*`/shape methods.

A reply spec is a plain JSON-able dict (see `Reply.from_spec` for the keys) so the same thing can
be queued in-process (`fake.queue(spec)`) or over HTTP (`POST /_fake/queue`).
"""

from __future__ import annotations

import copy
import hashlib
import http.server
import io
import json
import re
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

# Fields that exist only in the OpenAI Responses API. A translator that leaks one of them into a
# Chat request is broken even if some upstream would silently ignore it, so the strict fakes
# reject them (a deliberate stand-in; real MiMo behaviour for these is unconfirmed).
RESPONSES_ONLY_FIELDS = (
    "input", "instructions", "store", "include", "previous_response_id", "max_output_tokens",
    "text", "reasoning", "prompt_cache_key", "client_metadata", "truncation", "background",
    "conversation", "context_management",
)

_MEDIA_PARTS = {"image_url": "image", "input_audio": "audio", "video_url": "video"}


class FakeError(Exception):
    """An HTTP error answer: status plus the exact JSON body (dict) or raw text the service sends."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        super().__init__(f"{status}: {body!r}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def key_fingerprint(key: str) -> str:
    """Short stable digest used in recorded headers instead of keys the fake does not know."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def sse(obj: Any) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def est_tokens(s: str | None) -> int:
    return (len(s.encode()) + 3) // 4 if s else 0


def split_cyclic(s: str, sizes: tuple[int, ...]) -> list[str]:
    out, i, k = [], 0, 0
    while i < len(s):
        n = sizes[k % len(sizes)]
        out.append(s[i:i + n])
        i += n
        k += 1
    return out


def split_arguments(s: str, sizes: tuple[int, ...] = (6, 3, 9, 4, 7)) -> list[str]:
    """Cut a JSON text the way a token stream does: at arbitrary points, always including a cut
    between a backslash and the character it escapes and one inside every \\uXXXX escape."""
    cuts: set[int] = set()
    i = k = 0
    while i < len(s):
        cuts.add(i)
        i += sizes[k % len(sizes)]
        k += 1
    i = 0
    while i < len(s) - 1:
        if s[i] == "\\":
            cuts.add(i + 1)
            if s[i + 1] == "u":
                cuts.add(i + 4)
                i += 6
            else:
                i += 2
            continue
        i += 1
    points = sorted(c for c in cuts if 0 < c < len(s))
    return [s[a:b] for a, b in zip([0, *points], [*points, len(s)])] if s else []


def orjson_style_error(text: str) -> str | None:
    """None if `text` is valid JSON, else a parser message shaped like the one MiMo returns
    ("unexpected end of data: line 1 column 46 (char 45)" for truncated input)."""
    if text == "":
        return "Input is a zero-length, empty document: line 1 column 1 (char 0)"
    try:
        json.loads(text)
        return None
    except json.JSONDecodeError as e:
        if e.msg.startswith("Unterminated string") or e.pos >= len(text.rstrip()):
            pos = len(text)
            line = text.count("\n", 0, pos) + 1
            col = pos - (text.rfind("\n", 0, pos) + 1) + 1
            return f"unexpected end of data: line {line} column {col} (char {pos})"
        return str(e)


# --------------------------------------------------------------------------------------------
# Reply specs
# --------------------------------------------------------------------------------------------

FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")


@dataclass
class ToolCallSpec:
    name: str
    arguments: str
    id: str | None = None


@dataclass
class Reply:
    """A normalised reply spec. Keys of the dict form:

    text, reasoning, force_reasoning, finish, tool_calls[{name, arguments(str|obj), id?}],
    interleaved, allow_undeclared_tools, text_chunks + chunk_text (bench), annotations,
    web_search_usage, usage{prompt_tokens, completion_tokens, total_tokens, cached_tokens
    (int|None|"missing"), reasoning_tokens} or None (no usage at all), reasoning_tokens,
    error{status, retry_after, code, message, param, type, body}, cut_after, cut_mode(fin|rst),
    mid_error{after, status, code, message, param, type, body}, header_delay, chunk_delay,
    stall_after, split_utf8, done_count, id, created, repeat.
    """

    text: str | None = None
    text_chunks: int | None = None
    chunk_text: str = "x"
    reasoning: str | None = None
    force_reasoning: bool = False
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    interleaved: bool = False
    allow_undeclared_tools: bool = False
    finish: str | None = None
    annotations: list[dict] | None = None
    web_search_usage: dict | None = None
    usage: dict = field(default_factory=dict)
    no_usage: bool = False
    reasoning_tokens: int | None = None
    error: dict | None = None
    cut_after: int | None = None
    cut_mode: str = "fin"
    mid_error: dict | None = None
    header_delay: float = 0.0
    chunk_delay: float = 0.0
    stall_after: int | None = None
    split_utf8: bool | None = None
    done_count: int | None = None
    id: str | None = None
    created: int | None = None
    repeat: int = 1

    KEYS = (
        "text", "text_chunks", "chunk_text", "reasoning", "force_reasoning", "tool_calls",
        "interleaved", "allow_undeclared_tools", "finish", "annotations", "web_search_usage",
        "usage", "reasoning_tokens", "error", "cut_after", "cut_mode", "mid_error", "header_delay",
        "chunk_delay", "stall_after", "split_utf8", "done_count", "id", "created", "repeat",
    )

    @classmethod
    def from_spec(cls, spec: Any, finish_reasons: Iterable[str] = FINISH_REASONS) -> "Reply":
        if not isinstance(spec, dict):
            raise ValueError(f"reply spec must be a dict, got {type(spec).__name__}")
        unknown = sorted(set(spec) - set(cls.KEYS))
        if unknown:
            raise ValueError(f"unknown reply spec key(s) {unknown}; known: {list(cls.KEYS)}")
        r = cls()

        def typed(key: str, types: tuple, *, allow_none: bool = False) -> Any:
            v = spec[key]
            if (v is None and allow_none) or (isinstance(v, types) and not (isinstance(v, bool) and bool not in types)):
                return v
            raise ValueError(f"reply spec {key!r} must be {'/'.join(t.__name__ for t in types)}, got {v!r}")

        for key in ("text", "reasoning", "chunk_text", "id"):
            if key in spec:
                setattr(r, key, typed(key, (str,), allow_none=True))
        for key in ("force_reasoning", "interleaved", "allow_undeclared_tools", "split_utf8"):
            if key in spec:
                setattr(r, key, typed(key, (bool,)))
        for key in ("text_chunks", "cut_after", "stall_after", "reasoning_tokens", "done_count", "created", "repeat"):
            if key in spec:
                v = typed(key, (int,), allow_none=True)
                if v is not None and v < 0 and key != "repeat":
                    raise ValueError(f"reply spec {key!r} must be >= 0")
                setattr(r, key, v)
        for key in ("header_delay", "chunk_delay"):
            if key in spec:
                v = typed(key, (int, float))
                if v < 0:
                    raise ValueError(f"reply spec {key!r} must be >= 0")
                setattr(r, key, float(v))
        if r.repeat is None or r.repeat == 0 or r.repeat < -1:
            raise ValueError("reply spec 'repeat' must be >= 1, or -1 for 'until reset'")
        if r.text_chunks is not None and r.text is not None:
            raise ValueError("reply spec: use either 'text' or 'text_chunks', not both")
        if r.text_chunks is not None and not r.chunk_text:
            raise ValueError("reply spec 'chunk_text' must be non-empty")
        if "finish" in spec:
            if spec["finish"] not in tuple(finish_reasons):
                raise ValueError(f"reply spec 'finish' must be one of {list(finish_reasons)}, got {spec['finish']!r}")
            r.finish = spec["finish"]
        if "cut_mode" in spec:
            if spec["cut_mode"] not in ("fin", "rst"):
                raise ValueError("reply spec 'cut_mode' must be 'fin' or 'rst'")
            r.cut_mode = spec["cut_mode"]
        if "tool_calls" in spec:
            calls = spec["tool_calls"]
            if not isinstance(calls, list):
                raise ValueError("reply spec 'tool_calls' must be a list")
            for c in calls:
                if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"]:
                    raise ValueError(f"each tool call needs a non-empty 'name': {c!r}")
                extra = set(c) - {"name", "arguments", "id"}
                if extra:
                    raise ValueError(f"unknown tool call key(s) {sorted(extra)}")
                args = c.get("arguments", "{}")
                if not isinstance(args, str):
                    args = json.dumps(args, ensure_ascii=False)
                cid = c.get("id")
                if cid is not None and not isinstance(cid, str):
                    raise ValueError("tool call 'id' must be a string")
                r.tool_calls.append(ToolCallSpec(c["name"], args, cid))
        if "annotations" in spec:
            anns = spec["annotations"]
            if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
                raise ValueError("reply spec 'annotations' must be a list of dicts")
            r.annotations = anns
        if "web_search_usage" in spec:
            r.web_search_usage = typed("web_search_usage", (dict,))
        if "usage" in spec:
            u = spec["usage"]
            if u is None:
                r.no_usage = True
            elif isinstance(u, dict):
                extra = set(u) - {"prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens"}
                if extra:
                    raise ValueError(f"unknown usage key(s) {sorted(extra)}")
                c = u.get("cached_tokens", 0)
                if not (c is None or c == "missing" or (isinstance(c, int) and not isinstance(c, bool))):
                    raise ValueError("usage.cached_tokens must be an int, None or 'missing'")
                r.usage = dict(u)
            else:
                raise ValueError("reply spec 'usage' must be a dict or None")
        for key in ("error", "mid_error"):
            if key in spec:
                e = typed(key, (dict,))
                extra = set(e) - {"status", "retry_after", "code", "message", "param", "type", "body", "after"}
                if extra:
                    raise ValueError(f"unknown {key} key(s) {sorted(extra)}")
                st = e.get("status", 500 if key == "mid_error" else None)
                if not isinstance(st, int) or isinstance(st, bool) or not 100 <= st <= 599:
                    raise ValueError(f"reply spec {key!r} needs an HTTP 'status' int")
                if "retry_after" in e and not isinstance(e["retry_after"], (int, float, str)):
                    raise ValueError("'retry_after' must be a number or string")
                if "after" in e and (not isinstance(e["after"], int) or e["after"] < 0):
                    raise ValueError("'after' must be an int >= 0")
                setattr(r, key, dict(e, status=st))
        return r


# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelInfo:
    id: str
    context: int
    max_output: int
    modalities: frozenset = frozenset({"text"})
    thinking_default: bool = True
    efforts: tuple[str, ...] = ("low", "medium", "high")
    effort_off: str | None = None  # a reasoning_effort value that switches thinking off
    web_search: bool = True
    owned_by: str = "fake"


@dataclass
class Turn:
    """What validation learnt about one accepted request; the reply builder works from this."""

    body: dict
    model: str
    info: ModelInfo
    stream: bool
    include_usage: bool
    thinking: bool
    functions: tuple[str, ...]
    web_search: bool
    raw_size: int
    effective: dict = field(default_factory=dict)

    def last_user_text(self) -> str:
        for m in reversed(self.body.get("messages") or []):
            if isinstance(m, dict) and m.get("role") == "user":
                return content_text(m.get("content"))
        return ""

    def last_message(self) -> dict:
        msgs = self.body.get("messages") or [{}]
        return msgs[-1] if isinstance(msgs[-1], dict) else {}


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
                       and isinstance(p.get("text"), str))
    return ""


class Profile:
    """Generic strict OpenAI-compatible provider. Subclasses override the class attributes, TEXTS,
    `error_body` and whichever `check_*` / shape methods differ for their service."""

    name = "generic"
    base_path = "/v1"
    models: dict[str, ModelInfo] = {}
    retired: dict[str, str] = {}            # retired id -> suggested replacement
    reasoning_field = "reasoning_content"   # vLLM/OpenRouter: "reasoning"
    finish_reasons = FINISH_REASONS
    allowed_roles = ("system", "developer", "user", "assistant", "tool")
    message_keys = ("role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content")
    tool_types = ("function",)
    reject_fields = RESPONSES_ONLY_FIELDS
    passback = "all"                  # "all" | "tool_calls" | None: which assistant turns need reasoning back
    assistant_content_null_ok = False
    image_needs_text = True
    accept_api_key_header = True
    split_utf8_default = True         # split one HTTP chunk inside a multi-byte UTF-8 char per stream
    done_count_default = 1
    default_speaker = "fake"
    text_sizes = (3, 5, 2, 7, 4, 6)
    reasoning_sizes = (8, 13, 5, 11)

    TEXTS = {
        "not_set": "`{field}` is not set",
        "foreign_field": "Unrecognized request argument supplied: {field}",
        "not_object": "Request body must be a JSON object",
        "invalid_json": "Invalid JSON body: {detail}",
        "unknown_model": "Not supported model {model}",
        "retired_model": "The model {model} has been retired, please migrate to {target}",
        "empty_messages": "messages must not be empty",
        "bad_type": "`{field}`: {expected}",
        "bad_role": "Input tag '{role}' found using 'role' does not match any of the expected tags: {tags}",
        "unknown_message_key": "Unrecognized message field: messages[{index}].{key}",
        "content_null": "messages[{index}].content must not be null",
        "assistant_empty": "messages[{index}]: an assistant message needs content or tool_calls",
        "bad_part": "messages[{index}].content[{part}]: unsupported content part type {ptype!r}",
        "n": "`n` is not supported",
        "too_large": "{field} is too large: {value}. This model supports at most {cap} completion tokens, whereas you provided {value}.",
        "tokens_conflict": "max_tokens ({a}) and max_completion_tokens ({b}) must not both be set to different values",
        "effort": "Input should be {allowed}",
        "thinking_type": "Input should be 'enabled' or 'disabled'",
        "thinking_conflict": "thinking is enabled but reasoning_effort '{effort}' disables it",
        "response_format": "response_format type {rtype!r} is not supported",
        "range": "`{field}` must be between {lo} and {hi}",
        "stream_options": "stream_options is only allowed when stream is true",
        "strict": "Input should be a valid boolean",
        "tool_name": "`name` must match ^[a-zA-Z0-9_-]{{1,64}}$: {name!r}",
        "dup_tools": "tools contains duplicate names: {name}",
        "tool_type": "Input tag '{ttype}' found using 'type' does not match any of the expected tags: {tags}",
        "web_search_model": "web search is not supported by model {model}",
        "web_search_param": "web_search.{key}: {detail}",
        "web_search_off": "web search tool found in the request body, but webSearchEnabled is false",
        "no_media": "No endpoints found that support image input",
        "text_not_set": "`text` is not set",
        "missing_tool_results": ("An assistant message with 'tool_calls' must be followed by tool messages responding "
                                 "to each 'tool_call_id'. The following tool_call_ids did not have response messages: {ids}"),
        "orphan_tool": "Messages with role 'tool' must be a response to a preceding message with 'tool_calls' (messages[{index}], tool_call_id {id!r})",
        "passback": "The reasoning_content in the thinking mode must be passed back to the API.",
        "bad_tool_call": "messages[{index}].tool_calls[{call}]: {detail}",
    }

    def __init__(self, keys: Iterable[str] | None = ("sk-test",)):
        self.keys = None if keys is None else tuple(keys)

    # ---- errors ----------------------------------------------------------------------------
    def error_body(self, status: int, message: str = "", param: str = "", type_: str | None = "",
                   code: str | None = None) -> dict:
        err: dict[str, Any] = {"message": message, "type": type_ or "invalid_request_error",
                               "param": param or None, "code": code}
        return {"error": err}

    def bad(self, text_key: str, status: int = 400, **fmt: Any) -> FakeError:
        """A 400 validation failure in the provider's usual shape, text from TEXTS."""
        return FakeError(status, self.error_body(status, "Bad Request", self.TEXTS[text_key].format(**fmt)))

    def status_error_body(self, status: int) -> dict:
        """Body the provider sends for a bare HTTP failure of this status (queued `error` specs)."""
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        return self.error_body(status, phrase)

    def auth_error(self) -> FakeError:
        return FakeError(401, self.error_body(401, "Invalid API Key", type_="invalid_key", code="401"))

    def not_found(self) -> FakeError:
        return FakeError(404, self.status_error_body(404))

    def frame_error(self, body: Any, stream: bool) -> tuple[bytes, str]:
        data = body.encode() if isinstance(body, str) else dumps(body)
        if stream:
            # Seen from MiMo/9router: the pre-stream error of a stream request is SSE-framed, no space.
            return b"data:" + data + b"\n\n", "text/event-stream"
        return data, "application/json"

    def frame_stream_error(self, body: Any) -> bytes:
        return sse(body) if not isinstance(body, str) else b"data: " + body.encode() + b"\n\n"

    def reply_error(self, e: dict) -> FakeError:
        """Turn an `error` / `mid_error` spec into the provider's exact error."""
        status = e["status"]
        if "body" in e:
            body = e["body"]
        else:
            body = self.status_error_body(status)
            inner = body.get("error", body)
            for k in ("code", "message", "param", "type"):
                if k in e:
                    inner[k] = e[k]
        headers = {"Retry-After": str(e["retry_after"])} if e.get("retry_after") is not None else {}
        return FakeError(status, body, headers)

    # ---- auth ------------------------------------------------------------------------------
    def presented_key(self, headers: Any) -> str | None:
        auth = headers.get("Authorization")
        if auth is not None:
            scheme, _, value = auth.strip().partition(" ")
            return value.strip() if scheme.lower() == "bearer" and value.strip() else ""
        if self.accept_api_key_header:
            v = headers.get("api-key")
            return v.strip() if v is not None else None
        return None

    def key_accepted(self, key: str) -> bool:
        return self.keys is None or key in self.keys

    def is_test_key(self, key: str) -> bool:
        """Keys configured on the fake are test values and may be recorded verbatim."""
        return self.keys is not None and key in self.keys

    def authenticate(self, headers: Any) -> str:
        key = self.presented_key(headers)
        if not key or not self.key_accepted(key):
            raise self.auth_error()
        return key

    # ---- models ----------------------------------------------------------------------------
    def model_object(self, mid: str) -> dict:
        return {"id": mid, "object": "model", "owned_by": self.models[mid].owned_by}

    def models_list(self) -> dict:
        return {"object": "list", "data": [self.model_object(m) for m in sorted(self.models)]}

    # ---- validation ------------------------------------------------------------------------
    def invalid_json(self, detail: str) -> FakeError:
        return self.bad("invalid_json", detail=detail)

    def validate(self, body: Any, raw_size: int) -> Turn:
        if not isinstance(body, dict):
            raise self.bad("not_object")
        self.check_foreign_fields(body)
        model = self.check_model(body)
        info = self.models[model]
        messages = self.check_messages_present(body)
        stream, include_usage = self.check_params(body, info)
        functions, web_search = self.check_tools(body, info)
        self.check_message_shapes(messages)
        self.check_modalities(messages, info)
        self.check_parts(messages)
        self.check_pairing(messages)
        self.check_arguments(messages)
        thinking = self.resolve_thinking(body, info)
        self.check_passback(messages, thinking)
        return Turn(body=body, model=model, info=info, stream=stream, include_usage=include_usage,
                    thinking=thinking, functions=functions, web_search=web_search, raw_size=raw_size,
                    effective=self.effective_params(body, info, thinking))

    def check_foreign_fields(self, body: dict) -> None:
        for f in self.reject_fields:
            if f in body:
                raise self.bad("foreign_field", field=f)

    def check_model(self, body: dict) -> str:
        model = body.get("model")
        if model is None:
            raise self.bad("not_set", field="model")
        if not isinstance(model, str):
            raise self.bad("bad_type", field="model", expected="Input should be a valid string")
        if model in self.retired:
            raise FakeError(404, self.error_body(404, "Model Not Found", self.TEXTS["retired_model"].format(
                model=model, target=self.retired[model])))
        if model not in self.models:
            raise self.bad("unknown_model", model=model)
        return model

    def check_messages_present(self, body: dict) -> list:
        if "messages" not in body:
            raise self.bad("not_set", field="messages")
        messages = body["messages"]
        if not isinstance(messages, list):
            raise self.bad("bad_type", field="messages", expected="Input should be a valid list")
        if not messages:
            raise self.bad("empty_messages")
        return messages

    def _number(self, body: dict, key: str, lo: float, hi: float) -> None:
        if key in body and body[key] is not None:
            v = body[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.bad("bad_type", field=key, expected="Input should be a valid number")
            if not lo <= v <= hi:
                raise self.bad("range", field=key, lo=lo, hi=hi)

    def check_params(self, body: dict, info: ModelInfo) -> tuple[bool, bool]:
        if "n" in body:
            raise self.bad("n")
        self.check_max_tokens(body, info)
        if "reasoning_effort" in body and body["reasoning_effort"] not in info.efforts:
            raise self.bad("effort", allowed=self.quote_list(info.efforts))
        if "thinking" in body:
            t = body["thinking"]
            if not isinstance(t, dict) or t.get("type") not in ("enabled", "disabled"):
                raise self.bad("thinking_type")
        rf = body.get("response_format")
        if rf is not None:
            rtype = rf.get("type") if isinstance(rf, dict) else rf
            if rtype not in ("text", "json_object"):
                raise self.bad("response_format", rtype=rtype)
        for key, lo, hi in (("temperature", 0, 1.5), ("top_p", 0.01, 1.0),
                            ("frequency_penalty", -2, 2), ("presence_penalty", -2, 2)):
            self._number(body, key, lo, hi)
        if "stop" in body and body["stop"] is not None:
            stop = body["stop"]
            if not (isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 4
                                              and all(isinstance(s, str) for s in stop))):
                raise self.bad("bad_type", field="stop", expected="Input should be a string or a list of at most 4 strings")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise self.bad("bad_type", field="stream", expected="Input should be a valid boolean")
        include_usage = False
        so = body.get("stream_options")
        if so is not None:
            if not stream:
                raise self.bad("stream_options")
            if not isinstance(so, dict) or not isinstance(so.get("include_usage", False), bool):
                raise self.bad("bad_type", field="stream_options", expected="Input should be an object {include_usage: bool}")
            include_usage = so.get("include_usage", False)
        if "parallel_tool_calls" in body and not isinstance(body["parallel_tool_calls"], bool):
            raise self.bad("bad_type", field="parallel_tool_calls", expected="Input should be a valid boolean")
        tc = body.get("tool_choice")
        if tc is not None and not isinstance(tc, (str, dict)):
            raise self.bad("bad_type", field="tool_choice", expected="Input should be a string or an object")
        return stream, include_usage

    @staticmethod
    def quote_list(items: Iterable[str]) -> str:
        q = [f"'{i}'" for i in items]
        return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " or " + q[-1]

    def check_max_tokens(self, body: dict, info: ModelInfo) -> None:
        present = {}
        for key in ("max_completion_tokens", "max_tokens"):
            if key in body and body[key] is not None:
                v = body[key]
                if isinstance(v, bool) or not isinstance(v, int):
                    raise self.bad("bad_type", field=key, expected="Input should be a valid integer")
                if v < 1:
                    raise self.bad("range", field=key, lo=1, hi=info.max_output)
                if v > info.max_output:
                    raise self.bad("too_large", field=key, value=v, cap=info.max_output)
                present[key] = v
        if len(present) == 2 and present["max_tokens"] != present["max_completion_tokens"]:
            raise self.bad("tokens_conflict", a=present["max_tokens"], b=present["max_completion_tokens"])

    def check_tools(self, body: dict, info: ModelInfo) -> tuple[tuple[str, ...], bool]:
        tools = body.get("tools")
        if tools is None:
            return (), False
        if not isinstance(tools, list):
            raise self.bad("bad_type", field="tools", expected="Input should be a valid list")
        names: list[str] = []
        web_search = False
        for t in tools:
            ttype = t.get("type") if isinstance(t, dict) else None
            if ttype not in self.tool_types:
                raise self.bad("tool_type", ttype=ttype, tags=", ".join(f"'{x}'" for x in self.tool_types))
            if ttype == "function":
                names.append(self.check_function_tool(t))
            else:
                self.check_builtin_tool(t, info)
                web_search = web_search or ttype == "web_search"
        seen: set[str] = set()
        for n in names:
            if n in seen:
                raise self.bad("dup_tools", name=n)
            seen.add(n)
        return tuple(names), web_search

    def check_function_tool(self, t: dict) -> str:
        fn = t.get("function")
        if not isinstance(fn, dict) or fn.get("name") is None:
            raise self.bad("not_set", field="name")
        name = fn["name"]
        if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
            raise self.bad("tool_name", name=name)
        if "strict" in fn and not isinstance(fn["strict"], bool):
            raise self.bad("strict")
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            raise self.bad("bad_type", field="parameters", expected="Input should be a valid dictionary")
        if "description" in fn and not isinstance(fn["description"], str):
            raise self.bad("bad_type", field="description", expected="Input should be a valid string")
        return name

    def check_builtin_tool(self, t: dict, info: ModelInfo) -> None:
        pass

    def check_message_shapes(self, messages: list) -> None:
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise self.bad("bad_type", field=f"messages[{i}]", expected="Input should be a valid dictionary")
            role = m.get("role")
            if role not in self.allowed_roles:
                raise self.bad("bad_role", role=role, tags=", ".join(f"'{r}'" for r in self.allowed_roles))
            for k in m:
                if k not in self.message_keys:
                    raise self.bad("unknown_message_key", index=i, key=k)
            if "content" in m and m["content"] is None and not (role == "assistant" and self.assistant_content_null_ok):
                raise self.bad("content_null", index=i)
            getattr(self, f"check_{role}_message")(i, m)

    def _text_parts_only(self, i: int, content: Any, role: str) -> None:
        if isinstance(content, str):
            return
        if not isinstance(content, list):
            raise self.bad("bad_type", field=f"messages[{i}].content", expected="Input should be a string or a list of parts")
        for j, p in enumerate(content):
            if not isinstance(p, dict) or p.get("type") != "text":
                raise self.bad("bad_part", index=i, part=j, ptype=p.get("type") if isinstance(p, dict) else p)
            if not isinstance(p.get("text"), str):
                raise self.bad("not_set", field="text")

    def check_system_message(self, i: int, m: dict) -> None:
        if "content" not in m:
            raise self.bad("not_set", field="content")
        self._text_parts_only(i, m["content"], "system")

    check_developer_message = check_system_message

    def check_user_message(self, i: int, m: dict) -> None:
        if "content" not in m:
            raise self.bad("not_set", field="content")
        self._check_rich_content(i, m["content"])

    def _check_rich_content(self, i: int, content: Any) -> None:
        if isinstance(content, str):
            return
        if not isinstance(content, list):
            raise self.bad("bad_type", field=f"messages[{i}].content", expected="Input should be a string or a list of parts")
        for j, p in enumerate(content):
            ptype = p.get("type") if isinstance(p, dict) else p
            if ptype == "text":
                if not isinstance(p.get("text"), str):
                    raise self.bad("not_set", field="text")
            elif ptype == "image_url":
                iu = p.get("image_url")
                if not isinstance(iu, dict) or not isinstance(iu.get("url"), str):
                    raise self.bad("bad_type", field=f"messages[{i}].content[{j}].image_url",
                                   expected="Input should be an object with a string `url`")
                if not iu["url"].startswith(("data:", "https://", "http://")):
                    raise self.bad("bad_type", field=f"messages[{i}].content[{j}].image_url.url",
                                   expected="Input should be an http(s) URL or a data: URL")
            elif ptype == "input_audio":
                ia = p.get("input_audio")
                if not isinstance(ia, dict) or not isinstance(ia.get("data"), str):
                    raise self.bad("bad_type", field=f"messages[{i}].content[{j}].input_audio",
                                   expected="Input should be an object with a string `data`")
            elif ptype == "video_url":
                vu = p.get("video_url")
                if not isinstance(vu, dict) or not isinstance(vu.get("url"), str):
                    raise self.bad("bad_type", field=f"messages[{i}].content[{j}].video_url",
                                   expected="Input should be an object with a string `url`")
                for holder in (vu, p):
                    fps = holder.get("fps")
                    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0.1 <= fps <= 10):
                        raise self.bad("range", field="fps", lo=0.1, hi=10)
                    mr = holder.get("media_resolution")
                    if mr is not None and mr not in ("default", "max"):
                        raise self.bad("bad_type", field="media_resolution", expected="Input should be 'default' or 'max'")
            else:
                raise self.bad("bad_part", index=i, part=j, ptype=ptype)

    def check_assistant_message(self, i: int, m: dict) -> None:
        calls = m.get("tool_calls")
        if "content" in m and m["content"] is not None:
            self._text_parts_only(i, m["content"], "assistant")
        elif not calls:
            raise self.bad("assistant_empty", index=i)
        rc = m.get("reasoning_content")
        if rc is not None and not isinstance(rc, str):
            raise self.bad("bad_type", field=f"messages[{i}].reasoning_content", expected="Input should be a valid string")
        if "tool_calls" in m:
            if not isinstance(calls, list) or not calls:
                raise self.bad("bad_type", field=f"messages[{i}].tool_calls", expected="Input should be a non-empty list")
            for j, c in enumerate(calls):
                if not isinstance(c, dict):
                    raise self.bad("bad_tool_call", index=i, call=j, detail="Input should be a valid dictionary")
                if not isinstance(c.get("id"), str) or not c["id"]:
                    raise self.bad("bad_tool_call", index=i, call=j, detail="`id` is not set")
                if c.get("type", "function") != "function":
                    raise self.bad("bad_tool_call", index=i, call=j, detail="Input should be 'function'")
                fn = c.get("function")
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                    raise self.bad("bad_tool_call", index=i, call=j, detail="`function.name` is not set")
                if not isinstance(fn.get("arguments"), str):
                    raise self.bad("bad_tool_call", index=i, call=j, detail="`function.arguments` must be a string")

    def check_tool_message(self, i: int, m: dict) -> None:
        tcid = m.get("tool_call_id")
        if tcid is None:
            raise self.bad("not_set", field="tool_call_id")
        if not isinstance(tcid, str) or not tcid:
            raise self.bad("bad_type", field="tool_call_id", expected="Input should be a non-empty string")
        if "content" not in m:
            raise self.bad("not_set", field="content")
        self._check_rich_content(i, m["content"])

    def check_modalities(self, messages: list, info: ModelInfo) -> None:
        for m in messages:
            for p in m.get("content") if isinstance(m.get("content"), list) else ():
                kind = _MEDIA_PARTS.get(p.get("type"))
                if kind and kind not in info.modalities:
                    raise FakeError(404, self.error_body(404, self.TEXTS["no_media"]))

    def check_parts(self, messages: list) -> None:
        if not self.image_needs_text:
            return
        for m in messages:
            content = m.get("content")
            if not isinstance(content, list):
                continue
            types = {p.get("type") for p in content}
            if m["role"] == "tool" and types - {"text"}:
                # Tool results carrying media break MiMo's template even next to text: keep them strings.
                raise self.bad("text_not_set")
            if "image_url" in types and "text" not in types:
                raise self.bad("text_not_set")

    def check_pairing(self, messages: list) -> None:
        i = 0
        while i < len(messages):
            m = messages[i]
            if m["role"] == "tool":
                raise self.bad("orphan_tool", index=i, id=m.get("tool_call_id"))
            if m["role"] == "assistant" and m.get("tool_calls"):
                wanted = [c["id"] for c in m["tool_calls"]]
                pending = list(wanted)
                j = i + 1
                while j < len(messages) and messages[j]["role"] == "tool":
                    tid = messages[j].get("tool_call_id")
                    if tid not in pending:
                        raise self.bad("orphan_tool", index=j, id=tid)
                    pending.remove(tid)
                    j += 1
                if pending:
                    raise self.bad("missing_tool_results", ids=", ".join(pending))
                i = j
                continue
            i += 1

    def check_arguments(self, messages: list) -> None:
        for m in messages:
            for c in m.get("tool_calls") or () if m["role"] == "assistant" else ():
                err = orjson_style_error(c["function"]["arguments"])
                if err is not None:
                    raise FakeError(400, self.error_body(400, err, "", "BadRequest"))

    def resolve_thinking(self, body: dict, info: ModelInfo) -> bool:
        thinking = info.thinking_default
        explicit = body.get("thinking", {}).get("type") if isinstance(body.get("thinking"), dict) else None
        if explicit is not None:
            thinking = explicit == "enabled"
        effort = body.get("reasoning_effort")
        if info.effort_off is not None and effort == info.effort_off:
            if explicit == "enabled":
                raise self.bad("thinking_conflict", effort=effort)
            thinking = False
        return thinking

    def check_passback(self, messages: list, thinking: bool) -> None:
        if not thinking or self.passback is None:
            return
        for m in messages:
            if m["role"] != "assistant":
                continue
            if self.passback == "tool_calls" and not m.get("tool_calls"):
                continue
            rc = m.get(self.reasoning_field)
            if not isinstance(rc, str) or not rc.strip():
                raise self.bad("passback")

    def effective_params(self, body: dict, info: ModelInfo, thinking: bool) -> dict:
        """What the service actually honours (recorded so tests can assert it)."""
        eff = {"thinking": thinking, "tool_choice": "auto",
               "reasoning_effort": body.get("reasoning_effort"),
               "max_completion_tokens": body.get("max_completion_tokens", body.get("max_tokens"))}
        if thinking:
            eff.update(temperature=1.0, top_p=0.95)
        else:
            eff.update(temperature=body.get("temperature"), top_p=body.get("top_p"))
        return eff

    # ---- reply generation ------------------------------------------------------------------
    def make_reply(self, spec: dict) -> Reply:
        return Reply.from_spec(spec, self.finish_reasons)

    def default_spec(self, turn: Turn) -> dict:
        """Deterministic answer for unscripted requests (demo, benchmarks)."""
        last = turn.last_message()
        if last.get("role") == "tool":
            out = content_text(last.get("content"))[:200]
            return {"reasoning": "The tool returned its output.",
                    "text": f"{self.default_speaker} received tool output: {out}"}
        said = turn.last_user_text()[:500]
        return {"reasoning": f"The user said: {said}", "text": f"{self.default_speaker} received: {said}"}

    def check_reply(self, turn: Turn, reply: Reply) -> None:
        """A real model cannot call a function the request did not declare: a script that does so
        hides a translator bug (tools dropped), so it fails loudly instead."""
        if reply.allow_undeclared_tools:
            return
        for c in reply.tool_calls:
            if c.name not in turn.functions:
                raise FakeError(500, {"error": {
                    "message": f"fake script error: reply calls {c.name!r} but the request declared "
                               f"functions {list(turn.functions)} (set allow_undeclared_tools to script this)",
                    "type": "fake_script_error", "code": "500", "param": ""}})

    def delta(self, content: Any = None, role: Any = None, tool_calls: Any = None, reasoning: Any = None) -> dict:
        return {"content": content, "role": role, "tool_calls": tool_calls, self.reasoning_field: reasoning}

    def chunk(self, rid: str, created: int, model: str, delta: dict, finish: str | None = None,
              final: bool = False) -> dict:
        c = {"id": rid, "choices": [{"delta": delta, "finish_reason": finish, "index": 0}],
             "created": created, "model": model, "object": "chat.completion.chunk"}
        if final:
            c["usage"] = None
        return c

    def tool_fragment(self, index: int, cid: str | None, name: str | None, args: str) -> dict:
        return {"index": index, "id": cid, "function": {"arguments": args, "name": name}, "type": "function"}

    def new_response_id(self) -> str:
        return uuid.uuid4().hex

    def new_call_id(self) -> str:
        return "call_" + uuid.uuid4().hex[:24]

    def annotation(self, a: dict) -> dict:
        return {"type": "url_citation", "url": a.get("url", "https://example.com/"), "title": a.get("title", ""),
                "summary": a.get("summary", ""), "site_name": a.get("site_name", ""),
                "publish_time": a.get("publish_time", ""), "logo_url": a.get("logo_url", ""), **a}

    def plan(self, turn: Turn, reply: Reply) -> dict:
        """Resolve a reply against a request: which parts the model really produces."""
        reasoning = reply.reasoning if (turn.thinking or reply.force_reasoning) else None
        calls = [ToolCallSpec(c.name, c.arguments, c.id or self.new_call_id()) for c in reply.tool_calls]
        finish = reply.finish or ("tool_calls" if calls else "stop")
        if finish == "length" and calls:
            # Truncated mid-call: the last call's arguments stop short of valid JSON.
            last = calls[-1]
            cut = max(1, len(last.arguments) * 2 // 3) if len(last.arguments) > 1 else 0
            last.arguments = last.arguments[:cut]
        # Citations only exist if the request really carried the web_search tool.
        anns = [self.annotation(a) for a in reply.annotations] if reply.annotations and turn.web_search else None
        text = reply.text if reply.text_chunks is None else reply.chunk_text * reply.text_chunks
        return {"reasoning": reasoning, "calls": calls, "finish": finish, "annotations": anns, "text": text}

    def usage(self, turn: Turn, reply: Reply, plan: dict) -> dict | None:
        if reply.no_usage:
            return None
        u = reply.usage
        reasoning_tokens = u.get("reasoning_tokens", reply.reasoning_tokens)
        if reasoning_tokens is None:
            reasoning_tokens = est_tokens(plan["reasoning"])
        completion = u.get("completion_tokens")
        if completion is None:
            completion = reasoning_tokens + est_tokens(plan["text"]) + sum(
                est_tokens(c.name) + est_tokens(c.arguments) for c in plan["calls"])
        prompt = u.get("prompt_tokens", max(1, turn.raw_size // 4))
        out: dict[str, Any] = {"completion_tokens": completion, "prompt_tokens": prompt,
                               "total_tokens": u.get("total_tokens", completion + prompt),
                               "completion_tokens_details": {"reasoning_tokens": reasoning_tokens}}
        cached = u.get("cached_tokens", 0)
        out["prompt_tokens_details"] = None if cached is None else {} if cached == "missing" else {"cached_tokens": cached}
        if plan["annotations"] is not None:
            out["web_search_usage"] = reply.web_search_usage or {"tool_usage": 1, "page_usage": len(plan["annotations"])}
        return out

    def stream_events(self, turn: Turn, reply: Reply) -> list[bytes]:
        """The full SSE body of a successful stream, one bytes item per event."""
        plan = self.plan(turn, reply)
        rid = reply.id or self.new_response_id()
        created = reply.created if reply.created is not None else int(time.time())
        model = turn.model
        events: list[bytes] = []

        first = self.delta(content="", role="assistant")
        if plan["annotations"] is not None:
            first["annotations"] = plan["annotations"]
        events.append(sse(self.chunk(rid, created, model, first)))
        # `created` moves on between phases, as in live captures.
        if plan["reasoning"]:
            created += 1
            for piece in split_cyclic(plan["reasoning"], self.reasoning_sizes):
                events.append(sse(self.chunk(rid, created, model, self.delta(reasoning=piece))))
        created += 1
        if reply.text_chunks is not None:
            # Bench mode: encode once, stamp many times.
            one = sse(self.chunk(rid, created, model, self.delta(content=reply.chunk_text)))
            events.extend([one] * reply.text_chunks)
        elif plan["text"]:
            for piece in split_cyclic(plan["text"], self.text_sizes):
                events.append(sse(self.chunk(rid, created, model, self.delta(content=piece))))
        frags: list[list[dict]] = []
        for idx, c in enumerate(plan["calls"]):
            seq = [self.tool_fragment(idx, c.id, c.name, "")]
            seq += [self.tool_fragment(idx, None, None, p) for p in split_arguments(c.arguments)]
            frags.append(seq)
        if reply.interleaved:
            order = [seq[k] for k in range(max((len(s) for s in frags), default=0)) for seq in frags if k < len(seq)]
        else:
            order = [f for seq in frags for f in seq]
        for f in order:
            events.append(sse(self.chunk(rid, created, model, self.delta(tool_calls=[f]))))
        finish_delta = self.delta(content="" if plan["text"] and not plan["calls"] else None)
        events.append(sse(self.chunk(rid, created, model, finish_delta, plan["finish"], final=True)))
        usage = self.usage(turn, reply, plan)
        if turn.include_usage and usage is not None:
            events.append(sse({"id": rid, "choices": [], "created": created, "model": model,
                               "object": "chat.completion.chunk", "usage": usage}))
        done = reply.done_count if reply.done_count is not None else self.done_count_default
        events.extend([b"data: [DONE]\n\n"] * done)
        return events

    def completion(self, turn: Turn, reply: Reply) -> dict:
        plan = self.plan(turn, reply)
        calls = [{"id": c.id, "function": {"arguments": c.arguments, "name": c.name}, "type": "function"}
                 for c in plan["calls"]]
        message: dict[str, Any] = {"content": plan["text"] or "", "role": "assistant",
                                   "tool_calls": calls or None, self.reasoning_field: plan["reasoning"]}
        if plan["annotations"] is not None:
            message["annotations"] = plan["annotations"]
        out = {"id": reply.id or self.new_response_id(),
               "choices": [{"finish_reason": plan["finish"], "index": 0, "message": message}],
               "created": reply.created if reply.created is not None else int(time.time()),
               "model": turn.model, "object": "chat.completion"}
        usage = self.usage(turn, reply, plan)
        if usage is not None:
            out["usage"] = usage
        return out

    # ---- runtime configuration (POST /_fake/config) -----------------------------------------
    configurable: tuple[str, ...] = ()

    def configure(self, **kw: Any) -> None:
        for k, v in kw.items():
            if k not in self.configurable:
                raise ValueError(f"unknown setting {k!r}; configurable: {list(self.configurable)}")
            setattr(self, k, v)


# --------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------

class Headers(dict):
    """Lower-cased header dict with case-insensitive lookup."""

    def __getitem__(self, k: str) -> str:
        return super().__getitem__(k.lower())

    def get(self, k: str, default: Any = None) -> Any:
        return super().get(k.lower(), default)

    def __contains__(self, k: object) -> bool:
        return super().__contains__(k.lower() if isinstance(k, str) else k)


class RecordedRequest:
    """One request the fake received. Attribute or dict-style access (`rec.body` / `rec["body"]`)."""

    FIELDS = ("method", "path", "headers", "body", "status", "cancelled", "stream", "model", "thinking",
              "effective", "spec", "scripted", "error", "events_sent", "completed", "done", "started")

    def __init__(self, method: str, path: str, headers: Headers, raw: bytes, body: Any):
        self.method, self.path, self.headers, self.raw, self.body = method, path, headers, raw, body
        self.status: int | None = None
        self.cancelled = False          # client went away before the response was complete
        self.completed = False          # the full response was written
        self.stream = isinstance(body, dict) and body.get("stream") is True
        self.model: str | None = None
        self.thinking: bool | None = None
        self.effective: dict = {}
        self.spec: dict | None = None
        self.scripted = False
        self.error: Any = None          # error body sent, if any
        self.events_sent = 0
        self.started = time.time()
        self._done = threading.Event()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait_done(self, timeout: float = 5.0) -> bool:
        return self._done.wait(timeout)

    def __getitem__(self, k: str) -> Any:
        if k not in self.FIELDS and k != "raw":
            raise KeyError(k)
        return getattr(self, k)

    def get(self, k: str, default: Any = None) -> Any:
        try:
            return self[k]
        except KeyError:
            return default

    def to_dict(self) -> dict:
        return {k: (dict(self.headers) if k == "headers" else getattr(self, k)) for k in self.FIELDS}

    def __repr__(self) -> str:
        return f"<RecordedRequest {self.method} {self.path} status={self.status} cancelled={self.cancelled}>"


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------

class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    fake: "FakeChatServer"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-chat"
    sys_version = ""
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.fake._conn_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        self.server.fake._conn_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            sys.stderr.write(f"[fake {self.server.fake.profile.name}] {format % args}\n")

    def _dispatch(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch


class _ClientGone(Exception):
    pass


class FakeChatServer:
    """Threaded HTTP/1.1 fake. Start with `.start()` (or use as a context manager)."""

    def __init__(self, profile: Profile, *, host: str = "127.0.0.1", port: int = 0,
                 default_reply: dict | None = None, verbose: bool = False):
        self.profile = profile
        self.host, self._port = host, port
        self.verbose = verbose
        if default_reply is not None:
            profile.make_reply(default_reply)
        self.default_reply = default_reply
        self._lock = threading.Lock()
        self._queue: deque[list] = deque()   # [spec, remaining uses (-1 = until reset)]
        self._records: list[RecordedRequest] = []
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "FakeChatServer":
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self._port), _Handler)
        self._httpd.fake = self
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},
                                        name=f"fake-{self.profile.name}:{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:   # wake keep-alive handlers blocked on the next request line
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeChatServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def base_url(self) -> str:
        return self.url + self.profile.base_path

    # ---- scripting & inspection ------------------------------------------------------------
    def queue(self, *specs: dict | list) -> "FakeChatServer":
        """Append reply specs (dicts, or lists of dicts) to the FIFO; validated immediately."""
        flat: list[dict] = []
        for s in specs:
            flat.extend(s if isinstance(s, list) else [s])
        prepared = []
        for s in flat:
            r = self.profile.make_reply(s)
            prepared.append([copy.deepcopy(s), r.repeat])
        with self._lock:
            self._queue.extend(prepared)
        return self

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        suffix = self.profile.base_path + "/chat/completions"
        return [r for r in self.requests if r.path.split("?")[0] == suffix]

    @property
    def last(self) -> RecordedRequest | None:
        reqs = self.chat_requests
        return reqs[-1] if reqs else None

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._records.clear()

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> bool:
        end = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(interval)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        self.wait_until(lambda: len(self.chat_requests) >= n, timeout)
        return self.chat_requests

    def _next_spec(self, turn: Turn) -> tuple[dict, bool]:
        with self._lock:
            if self._queue:
                entry = self._queue[0]
                if entry[1] > 0:
                    entry[1] -= 1
                    if entry[1] == 0:
                        self._queue.popleft()
                return copy.deepcopy(entry[0]), True
        if self.default_reply is not None:
            return copy.deepcopy(self.default_reply), False
        return self.profile.default_spec(turn), False

    # ---- connection bookkeeping ------------------------------------------------------------
    def _conn_opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.add(sock)

    def _conn_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.discard(sock)

    # ---- request handling ------------------------------------------------------------------
    def _handle(self, h: _Handler) -> None:
        path = urlsplit(h.path).path
        try:
            raw = self._read_body(h)
        except (ValueError, OSError):
            h.close_connection = True
            self._plain(h, 400, {"error": "unreadable request body"})
            return
        if path.startswith("/_fake/"):
            self._control(h, path, raw)
            return
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            body = None
        rec = RecordedRequest(h.command, h.path, self._record_headers(h), raw, body)
        with self._lock:
            self._records.append(rec)
        try:
            self._serve(h, rec, path, raw, body)
        except (_ClientGone, BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            rec.completed = False
            rec.cancelled = True
            h.close_connection = True
        except Exception as e:   # a bug in the fake: say so loudly rather than hang the client
            sys.stderr.write(f"[fake {self.profile.name}] internal error: {e!r}\n")
            h.close_connection = True
            if rec.status is None:
                self._plain(h, 500, {"error": {"message": f"fake internal error: {e!r}", "type": "fake_internal"}})
            raise
        finally:
            rec._done.set()

    @staticmethod
    def _read_body(h: _Handler) -> bytes:
        if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                line = h.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(h.rfile.read(size))
                h.rfile.readline(3)
        n = int(h.headers.get("Content-Length") or 0)
        if n < 0:
            raise ValueError("negative Content-Length")
        return h.rfile.read(n) if n else b""

    def _record_headers(self, h: _Handler) -> Headers:
        out = Headers()
        for k, v in h.headers.items():
            lk = k.lower()
            if lk in ("authorization", "api-key"):
                scheme, _, val = v.partition(" ") if lk == "authorization" else ("", "", v)
                key = val.strip() if lk == "authorization" else v.strip()
                if key and not self.profile.is_test_key(key):
                    # Never keep a key the fake did not issue: it may be a real secret leaked by a bug.
                    v = (scheme + " " if scheme else "") + f"<redacted sha256:{key_fingerprint(key)}>"
            out[lk] = v
        return out

    def _serve(self, h: _Handler, rec: RecordedRequest, path: str, raw: bytes, body: Any) -> None:
        p = self.profile
        base = p.base_path
        try:
            if path == base + "/chat/completions":
                if h.command != "POST":
                    raise FakeError(405, p.status_error_body(405))
                p.authenticate(h.headers)
                if body is None:
                    try:
                        json.loads(raw)
                        detail = "empty body"
                    except (ValueError, UnicodeDecodeError) as e:
                        detail = str(e)
                    raise p.invalid_json(detail)
                turn = p.validate(body, len(raw))
                rec.model, rec.thinking, rec.effective = turn.model, turn.thinking, turn.effective
                spec, rec.scripted = self._next_spec(turn)
                rec.spec = spec
                reply = p.make_reply(spec)
                p.check_reply(turn, reply)
                if reply.error is not None:
                    self._wait(h, rec, reply.header_delay)
                    raise p.reply_error(reply.error)
                if turn.stream:
                    self._send_stream(h, rec, turn, reply)
                else:
                    self._send_completion(h, rec, turn, reply)
            elif path == base + "/models":
                p.authenticate(h.headers)
                self._send_json(h, rec, 200, p.models_list())
            elif path.startswith(base + "/models/") and h.command == "GET":
                p.authenticate(h.headers)
                mid = path[len(base + "/models/"):]
                if mid not in p.models:
                    raise p.not_found()
                self._send_json(h, rec, 200, p.model_object(mid))
            else:
                raise p.not_found()
        except FakeError as e:
            rec.error = e.body
            data, ctype = p.frame_error(e.body, rec.stream)
            if rec.stream:
                self._head(h, rec, e.status, {"Content-Type": ctype, "Transfer-Encoding": "chunked", **e.headers})
                rec.completed = True
                self._write_chunk(h, data)
                h.wfile.write(b"0\r\n\r\n")
            else:
                self._head(h, rec, e.status, {"Content-Type": ctype, "Content-Length": str(len(data)), **e.headers})
                rec.completed = True
                h.wfile.write(data)

    # ---- low-level writing -----------------------------------------------------------------
    def _head(self, h: _Handler, rec: RecordedRequest | None, status: int, headers: dict[str, str]) -> None:
        # Recorded state is updated before the bytes leave: a client that has read them sees it.
        if rec is not None:
            rec.status = status
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()

    @staticmethod
    def _write_chunk(h: _Handler, data: bytes) -> None:
        h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _send_json(self, h: _Handler, rec: RecordedRequest, status: int, obj: Any) -> None:
        data = dumps(obj)
        self._head(h, rec, status, {"Content-Type": "application/json", "Content-Length": str(len(data))})
        rec.completed = True
        h.wfile.write(data)

    def _plain(self, h: _Handler, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        try:
            self._head(h, None, status, {"Content-Type": "application/json", "Content-Length": str(len(data))})
            h.wfile.write(data)
        except OSError:
            h.close_connection = True

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        try:
            prev = sock.gettimeout()
            sock.settimeout(0)
            try:
                data = sock.recv(1, socket.MSG_PEEK)
            finally:
                sock.settimeout(prev)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        return data == b""

    def _wait(self, h: _Handler, rec: RecordedRequest, seconds: float) -> None:
        """Sleep, but notice a client hang-up (-> cancelled) or a server stop meanwhile."""
        end = time.monotonic() + seconds
        while True:
            if self._peer_closed(h.connection):
                raise _ClientGone()
            if self._stopping.is_set():
                raise _ClientGone()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.02, left))

    def _stall(self, h: _Handler, rec: RecordedRequest) -> None:
        while not self._stopping.is_set():
            if self._peer_closed(h.connection):
                raise _ClientGone()
            time.sleep(0.02)
        h.close_connection = True

    def _cut(self, h: _Handler, mode: str) -> None:
        h.close_connection = True
        sock = h.connection
        try:
            if mode == "rst":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # Drop the makefile() references so close() really closes now (and sends RST).
                h.rfile.close()
                h.wfile.close()
                h.rfile, h.wfile = io.BytesIO(), io.BytesIO()   # the handler still flushes/closes these
                sock.close()
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_stream(self, h: _Handler, rec: RecordedRequest, turn: Turn, reply: Reply) -> None:
        events = self.profile.stream_events(turn, reply)
        if reply.mid_error is not None:
            at = min(reply.mid_error.get("after", 2), len(events))
            err = self.profile.reply_error(reply.mid_error)
            events = events[:at] + [self.profile.frame_stream_error(err.body)]
        split = reply.split_utf8 if reply.split_utf8 is not None else self.profile.split_utf8_default
        self._wait(h, rec, reply.header_delay)
        self._head(h, rec, 200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                 "Transfer-Encoding": "chunked"})
        for i, ev in enumerate(events):
            if reply.cut_after is not None and i >= reply.cut_after:
                self._cut(h, reply.cut_mode)
                return
            if reply.stall_after is not None and i >= reply.stall_after:
                self._stall(h, rec)
                return
            if reply.chunk_delay and i:
                self._wait(h, rec, reply.chunk_delay)
            elif self._peer_closed(h.connection) or self._stopping.is_set():
                raise _ClientGone()
            if split:
                pos = _first_multibyte(ev)
                if pos is not None:
                    split = False
                    # Same event, two HTTP chunks, cut inside one UTF-8 code point.
                    rec.events_sent += 1
                    self._write_chunk(h, ev[:pos + 1])
                    time.sleep(0.002)
                    self._write_chunk(h, ev[pos + 1:])
                    continue
            rec.events_sent += 1
            self._write_chunk(h, ev)
        self._end(h, rec, reply, b"0\r\n\r\n")

    def _send_completion(self, h: _Handler, rec: RecordedRequest, turn: Turn, reply: Reply) -> None:
        data = dumps(self.profile.completion(turn, reply))
        self._wait(h, rec, reply.header_delay)
        self._head(h, rec, 200, {"Content-Type": "application/json", "Content-Length": str(len(data))})
        self._end(h, rec, reply, data, cut_partial=data[:len(data) // 2])

    def _end(self, h: _Handler, rec: RecordedRequest, reply: Reply, last: bytes, cut_partial: bytes = b"") -> None:
        """The end of an answer: cut (after `cut_partial`), stall, or complete with `last`."""
        if reply.cut_after is not None:
            h.wfile.write(cut_partial)
            self._cut(h, reply.cut_mode)
            return
        if reply.stall_after is not None:
            self._stall(h, rec)
            return
        rec.completed = True
        h.wfile.write(last)

    # ---- control API -----------------------------------------------------------------------
    def _control(self, h: _Handler, path: str, raw: bytes) -> None:
        try:
            if path == "/_fake/queue" and h.command == "POST":
                specs = json.loads(raw or b"[]")
                self.queue(*(specs if isinstance(specs, list) else [specs]))
                self._plain(h, 200, {"queued": len(specs) if isinstance(specs, list) else 1, "pending": self.pending})
            elif path == "/_fake/requests" and h.command == "GET":
                self._plain(h, 200, [r.to_dict() for r in self.requests])
            elif path == "/_fake/reset" and h.command == "POST":
                self.reset()
                self._plain(h, 200, {"ok": True})
            elif path == "/_fake/config" and h.command == "POST":
                self.profile.configure(**json.loads(raw or b"{}"))
                self._plain(h, 200, {"ok": True})
            elif path == "/_fake/health" and h.command == "GET":
                self._plain(h, 200, {"ok": True, "profile": self.profile.name, "pending": self.pending})
            else:
                self._plain(h, 404, {"error": f"no control endpoint {h.command} {path}"})
        except (ValueError, TypeError) as e:
            self._plain(h, 400, {"error": str(e)})


_LEAD_BYTE = re.compile(rb"[\xc0-\xff]")


def _first_multibyte(data: bytes) -> int | None:
    m = _LEAD_BYTE.search(data)
    return m.start() if m else None


def serve_until_signal(fake: "FakeChatServer") -> int:
    """The fakes' command-line mode: announce the URL, serve until SIGINT/SIGTERM."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fake.start()
    print(f"listening on {fake.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0
