"""Strict fakes of the other Chat Completions providers a rules file in rules/ targets (stdlib only).

Each provider is a `Profile` (chat_server.py) that states the service as its docs describe it,
independently of rules/*.yaml: a test must not pass because the translator and the fake share a
mistake. Where a provider's behaviour is undocumented the fake is stricter than the real service
(marked "strict stand-in"): it rejects fields the provider does not document, so a translator that
leaks another provider's knob (`thinking` to Qwen, `enable_thinking` to DeepSeek, `max_tokens` to
MiniMax...) fails here instead of being silently ignored upstream. Sources are cited in the
matching rules file.

    from mimo2codex.fakes.providers import fake_server
    with fake_server("deepseek") as fake:   # FakeChatServer with the DeepSeek profile
        fake.queue({"text": "hi", "reasoning": "..."})

CLI: python -m mimo2codex.fakes.providers NAME [--port 0] [--any-key]
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any, Callable, Iterable

try:  # `python -m mimo2codex.fakes.providers` and package imports both work
    from .chat_server import (RESPONSES_ONLY_FIELDS, FakeChatServer, FakeError, ModelInfo, Profile, Reply, Turn,
                              serve_until_signal, sse)
except ImportError:  # pragma: no cover - run as a plain script
    from mimo2codex.fakes.chat_server import (RESPONSES_ONLY_FIELDS, FakeChatServer, FakeError, ModelInfo, Profile, Reply,
                                              Turn, serve_until_signal, sse)

_TEXT = frozenset({"text"})
_IMG = frozenset({"text", "image"})
_SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


class StrictProfile(Profile):
    """A Profile whose differences from the generic one are class attributes."""

    accept_api_key_header = False       # Bearer only, unlike MiMo
    allowed_fields: frozenset[str] | None = None   # None: anything not Responses-only is accepted
    thinking_types: tuple[str, ...] = ("enabled", "disabled")
    thinking_keys: tuple[str, ...] = ("type",)
    ranges: dict[str, tuple[float, float]] = {"temperature": (0, 2), "top_p": (0, 1),
                                              "frequency_penalty": (-2, 2), "presence_penalty": (-2, 2)}
    response_formats: tuple[str, ...] = ("text", "json_object")
    tool_choices: tuple[str, ...] = ("auto", "none", "required", "function")
    thinking_tool_choices: tuple[str, ...] | None = None   # None: same as tool_choices
    tool_function_keys: tuple[str, ...] = ("name", "description", "parameters", "strict")
    passback_field: str | None = None   # field checked by the pass-back rule (default: reasoning_field)
    extra_texts: dict[str, str] = {}

    def __init__(self, keys: Iterable[str] | None = ("sk-test",)):
        super().__init__(keys)
        self.TEXTS = {**Profile.TEXTS, "unknown_field": "Unrecognized request argument supplied: {field}",
                      "tool_choice": "tool_choice {value!r} is not supported",
                      "thinking_tool_choice": "Thinking mode does not support this tool_choice",
                      "thinking_keys": "thinking.{key}: Extra inputs are not permitted",
                      "tool_key": "tools[].function.{key}: Extra inputs are not permitted", **self.extra_texts}

    # ---- validation --------------------------------------------------------------------------
    def validate(self, body: Any, raw_size: int) -> Turn:
        turn = super().validate(body, raw_size)
        self.after_validate(turn)
        return turn

    def after_validate(self, turn: Turn) -> None:
        tc = turn.body.get("tool_choice")
        if tc is not None and turn.thinking and self.thinking_tool_choices is not None:
            if self.tool_choice_kind(tc) not in self.thinking_tool_choices:
                raise self.bad("thinking_tool_choice")

    def check_foreign_fields(self, body: dict) -> None:
        super().check_foreign_fields(body)
        if self.allowed_fields is not None:
            for f in body:
                if f not in self.allowed_fields:
                    raise self.bad("unknown_field", field=f)

    @staticmethod
    def tool_choice_kind(tc: Any) -> Any:
        return tc.get("type") if isinstance(tc, dict) else tc

    def check_thinking_object(self, body: dict) -> None:
        if "thinking" not in body:
            return
        t = body["thinking"]
        if not isinstance(t, dict) or t.get("type") not in self.thinking_types:
            raise FakeError(400, self.error_body(400, "Bad Request", "Input should be " + self.quote_list(self.thinking_types)))
        for k in t:
            if k not in self.thinking_keys:
                raise self.bad("thinking_keys", key=k)

    def check_params(self, body: dict, info: ModelInfo) -> tuple[bool, bool]:
        if "n" in body and body["n"] != 1:
            raise self.bad("n")
        self.check_max_tokens(body, info)
        if "reasoning_effort" in body and body["reasoning_effort"] not in info.efforts:
            raise self.bad("effort", allowed=self.quote_list(info.efforts) if info.efforts else "absent (this model takes no effort)")
        self.check_thinking_object(body)
        rf = body.get("response_format")
        if rf is not None:
            rtype = rf.get("type") if isinstance(rf, dict) else rf
            if rtype not in self.response_formats:
                raise self.bad("response_format", rtype=rtype)
        for key, (lo, hi) in self.ranges.items():
            self._number(body, key, lo, hi)
        tc = body.get("tool_choice")
        if tc is not None and self.tool_choice_kind(tc) not in self.tool_choices:
            raise self.bad("tool_choice", value=tc)
        # The rest (stream, stream_options, stop, parallel_tool_calls) as the generic profile checks it.
        handled = {"n", "reasoning_effort", "thinking", "response_format", "tool_choice", "max_tokens",
                   "max_completion_tokens", *_SAMPLING, *self.ranges}
        return Profile.check_params(self, {k: v for k, v in body.items() if k not in handled}, info)

    def check_function_tool(self, t: dict) -> str:
        fn = t.get("function")
        if isinstance(fn, dict):
            for k in fn:
                if k not in self.tool_function_keys:
                    raise self.bad("tool_key", key=k)
        return super().check_function_tool(t)

    def check_passback(self, messages: list, thinking: bool) -> None:
        if not thinking or self.passback is None:
            return
        field = self.passback_field or self.reasoning_field
        for i, m in enumerate(messages):
            if m["role"] != "assistant" or (self.passback == "tool_calls" and not m.get("tool_calls")):
                continue
            value = m.get(field)
            if not (isinstance(value, str) and value.strip() or isinstance(value, list) and value):
                raise self.passback_error(i)

    def passback_error(self, index: int) -> FakeError:
        return self.bad("passback")

    # ---- replies -----------------------------------------------------------------------------
    def rewrite(self, events: list[bytes], fn: Callable[[dict], list[dict]]) -> list[bytes]:
        """Apply fn to every JSON chunk of a finished event list (fn returns the chunks to send)."""
        out: list[bytes] = []
        for ev in events:
            if ev.startswith(b"data: {"):
                out.extend(sse(o) for o in fn(json.loads(ev[6:])))
            else:
                out.append(ev)
        return out


# ----------------------------------------------------------------------------------------------
# DeepSeek


class DeepSeekProfile(StrictProfile):
    name = "deepseek"
    base_path = ""      # https://api.deepseek.com/chat/completions
    models = {m.id: m for m in (
        ModelInfo("deepseek-v4-pro", 1_048_576, 384_000, _TEXT, True, ("low", "high", "max"), None, False, "deepseek"),
        ModelInfo("deepseek-v4-flash", 1_048_576, 384_000, _TEXT, True, ("low", "high", "max"), None, False, "deepseek"),
    )}
    retired = {"deepseek-chat": "deepseek-v4-flash", "deepseek-reasoner": "deepseek-v4-flash"}
    passback = "tool_calls"     # documented: tool-call turns must carry it; plain turns are ignored
    thinking_tool_choices = ("auto",)
    # No max_completion_tokens in the docs: strict stand-in.
    allowed_fields = frozenset({"model", "messages", "thinking", "reasoning_effort", "max_tokens", "temperature", "top_p",
                                "frequency_penalty", "presence_penalty", "stop", "stream", "stream_options", "tools",
                                "tool_choice", "response_format", "logprobs", "top_logprobs", "parallel_tool_calls", "user_id"})
    default_speaker = "DeepSeek (fake)"
    extra_texts = {"passback": "The `reasoning_content` in the thinking mode must be passed back to the API."}

    def error_body(self, status: int, message: str = "", param: str = "", type_: str | None = "", code: str | None = None) -> dict:
        text = f"{message}: {param}" if param and message and message != "Bad Request" else (param or message)
        return {"error": {"message": text, "type": type_ or "invalid_request_error", "param": None,
                          "code": code or "invalid_request_error"}}

    def auth_error(self) -> FakeError:
        return FakeError(401, self.error_body(401, "Authentication Fails, Your api key is invalid", type_="authentication_error"))

    def status_error_body(self, status: int) -> dict:
        texts = {402: ("Insufficient Balance", "unknown_error"), 422: ("Invalid Parameters", "invalid_request_error"),
                 429: ("Rate Limit Reached", "rate_limit_error"), 500: ("Server Error", "server_error"),
                 503: ("Server Overloaded", "server_error")}
        message, type_ = texts.get(status, (super().status_error_body(status)["error"]["message"], "invalid_request_error"))
        return self.error_body(status, message, type_=type_)

    def usage(self, turn: Turn, reply: Reply, plan: dict) -> dict | None:
        u = super().usage(turn, reply, plan)
        if u is None:
            return None
        details = u.pop("prompt_tokens_details") or {}
        hit = details.get("cached_tokens", 0)
        u["prompt_cache_hit_tokens"] = hit
        u["prompt_cache_miss_tokens"] = u["prompt_tokens"] - hit
        return u

    def stream_events(self, turn: Turn, reply: Reply) -> list[bytes]:
        events = super().stream_events(turn, reply)
        # SSE comments keep the connection open while the model works.
        return [b": keep-alive\n\n", events[0], b": keep-alive\n\n", *events[1:]]


# ----------------------------------------------------------------------------------------------
# Moonshot Kimi


class KimiProfile(StrictProfile):
    name = "kimi"
    base_path = "/v1"
    models = {m.id: m for m in (
        ModelInfo("kimi-k3", 1_048_576, 131_072, _TEXT, True, ("low", "high", "max"), None, False, "moonshot"),
        ModelInfo("kimi-k2.6", 262_144, 262_144, _IMG, True, (), None, False, "moonshot"),
        ModelInfo("kimi-k2.5", 262_144, 262_144, _IMG, True, (), None, False, "moonshot"),
    )}
    retired = {"kimi-k2-thinking": "kimi-k2.6", "kimi-k2-thinking-turbo": "kimi-k2.6", "kimi-k2-turbo-preview": "kimi-k2.6"}
    always_thinking = ("kimi-k3",)
    passback = "tool_calls"
    thinking_tool_choices = ("auto", "none")
    # Fixed on kimi-*: "Cannot be modified" -> any value is refused (strict stand-in for "only 1 is allowed").
    fixed_params = _SAMPLING + ("n",)
    allowed_fields = frozenset({"model", "messages", "thinking", "reasoning_effort", "max_tokens", "max_completion_tokens",
                                "temperature", "top_p", "frequency_penalty", "presence_penalty", "n", "stop", "stream",
                                "stream_options", "tools", "tool_choice", "response_format", "prompt_cache_key",
                                "parallel_tool_calls", "user"})
    default_speaker = "Kimi (fake)"

    def error_body(self, status: int, message: str = "", param: str = "", type_: str | None = "", code: str | None = None) -> dict:
        text = param if param and message in ("Bad Request", "") else (f"{message}: {param}" if param else message)
        return {"error": {"message": text, "type": type_ or "invalid_request_error"}}

    def auth_error(self) -> FakeError:
        return FakeError(401, self.error_body(401, "Invalid Authentication", type_="invalid_authentication_error"))

    def status_error_body(self, status: int) -> dict:
        if status == 429:
            return self.error_body(429, "Your account reached max request: 3, please try again after 1 seconds",
                                   type_="rate_limit_reached_error")
        if status == 402:
            return self.error_body(402, "Your account is suspended, please check your plan and billing details",
                                   type_="exceeded_current_quota_error")
        return super().status_error_body(status)

    def passback_error(self, index: int) -> FakeError:
        return FakeError(400, self.error_body(400, f"thinking is enabled but reasoning_content is missing in assistant "
                                                   f"tool call message at index {index}"))

    def check_params(self, body: dict, info: ModelInfo) -> tuple[bool, bool]:
        for key in self.fixed_params:
            if key in body:
                raise FakeError(400, self.error_body(400, f"invalid {key}: this parameter of model {info.id} cannot be modified"))
        if info.id in self.always_thinking and isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "disabled":
            raise FakeError(400, self.error_body(400, f"thinking cannot be disabled for model {info.id}"))
        return super().check_params(body, info)

    def check_model(self, body: dict) -> str:
        model = body.get("model")
        if isinstance(model, str) and model not in self.models and model not in self.retired:
            raise FakeError(404, self.error_body(404, f"Not found the model {model} or Permission denied",
                                                 type_="resource_not_found_error"))
        return super().check_model(body)

    def _kimi_ids(self, turn: Turn, reply: Reply) -> None:
        for i, c in enumerate(reply.tool_calls):
            if c.id is None:
                c.id = f"functions.{c.name}:{i}"

    def stream_events(self, turn: Turn, reply: Reply) -> list[bytes]:
        self._kimi_ids(turn, reply)
        usage = self.usage(turn, reply, self.plan(turn, reply))
        include = turn.include_usage
        turn.include_usage = False
        try:
            events = super().stream_events(turn, reply)
        finally:
            turn.include_usage = include

        def move_usage(chunk: dict) -> list[dict]:
            chunk.pop("usage", None)
            choice = (chunk.get("choices") or [{}])[0]
            if choice.get("finish_reason") and usage is not None:
                choice["usage"] = usage   # Moonshot streams usage inside the finishing choice
            return [chunk]

        return self.rewrite(events, move_usage)

    def completion(self, turn: Turn, reply: Reply) -> dict:
        self._kimi_ids(turn, reply)
        return super().completion(turn, reply)

    def usage(self, turn: Turn, reply: Reply, plan: dict) -> dict | None:
        u = super().usage(turn, reply, plan)
        if u is not None:
            details = u.pop("prompt_tokens_details") or {}
            u["cached_tokens"] = details.get("cached_tokens", 0)
        return u


# ----------------------------------------------------------------------------------------------
# Zhipu GLM


class GlmProfile(StrictProfile):
    name = "glm"
    base_path = "/api/paas/v4"
    models = {m.id: m for m in (
        ModelInfo("glm-5.2", 1_048_576, 131_072, _TEXT, True,
                  ("none", "minimal", "low", "medium", "high", "xhigh", "max"), None, False, "zhipu"),
        ModelInfo("glm-5.1", 202_752, 131_072, _TEXT, True, (), None, False, "zhipu"),
        ModelInfo("glm-4.7", 202_752, 131_072, _TEXT, True, (), None, False, "zhipu"),
    )}
    finish_reasons = ("stop", "length", "tool_calls", "content_filter", "sensitive", "network_error",
                      "model_context_window_exceeded")
    passback = None             # preserved thinking: accepted and used, never demanded
    thinking_keys = ("type", "clear_thinking")
    ranges = {"temperature": (0, 1), "top_p": (0.01, 1)}
    tool_choices = ("auto",)
    tool_function_keys = ("name", "description", "parameters")
    # Strict stand-in: no stream_options, max_completion_tokens, parallel_tool_calls or penalties in the docs.
    allowed_fields = frozenset({"model", "messages", "request_id", "do_sample", "stream", "thinking", "reasoning_effort",
                                "temperature", "top_p", "max_tokens", "tool_stream", "tools", "tool_choice", "stop",
                                "response_format", "user_id"})
    default_speaker = "GLM (fake)"

    def __init__(self, keys: Iterable[str] | None = ("0123456789abcdef.testsecret",)):
        super().__init__(keys)

    def error_body(self, status: int, message: str = "", param: str = "", type_: str | None = "", code: str | None = None) -> dict:
        text = param if param and message in ("Bad Request", "") else (f"{message}: {param}" if param else message)
        return {"error": {"code": code or ("1214" if status == 400 else str(status)), "message": text}}

    def auth_error(self) -> FakeError:
        return FakeError(401, {"error": {"code": "1000", "message": "身份验证失败。"}})

    def status_error_body(self, status: int) -> dict:
        bodies = {429: {"code": "1302", "message": "您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。"},
                  500: {"code": "500", "message": "Internal Error"}}
        if status in bodies:
            return {"error": dict(bodies[status])}
        return super().status_error_body(status)

    def check_params(self, body: dict, info: ModelInfo) -> tuple[bool, bool]:
        if "reasoning_effort" in body and not info.efforts:
            raise self.bad("unknown_field", field="reasoning_effort")
        return super().check_params(body, info)

    def check_model(self, body: dict) -> str:
        model = body.get("model")
        if isinstance(model, str) and model not in self.models:
            raise FakeError(400, {"error": {"code": "1211", "message": "模型不存在，请检查模型代码。"}})
        return super().check_model(body)

    def resolve_thinking(self, body: dict, info: ModelInfo) -> bool:
        thinking = super().resolve_thinking(body, info)
        return thinking and body.get("reasoning_effort") not in ("none", "minimal")

    def stream_events(self, turn: Turn, reply: Reply) -> list[bytes]:
        usage = self.usage(turn, reply, self.plan(turn, reply))
        whole_calls = not turn.body.get("tool_stream")
        calls: dict[int, dict] = {}

        def reshape(chunk: dict) -> list[dict]:
            choice = chunk["choices"][0]
            frags = choice["delta"].get("tool_calls")
            if frags and whole_calls:
                # Without tool_stream a call arrives in one piece once it is complete.
                for f in frags:
                    c = calls.setdefault(f["index"], {"index": f["index"], "id": f["id"], "type": "function",
                                                      "function": {"name": f["function"]["name"], "arguments": ""}})
                    c["function"]["arguments"] += f["function"]["arguments"]
                return []
            out = []
            if choice.get("finish_reason"):
                if whole_calls and calls:
                    out.append({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": list(calls.values())},
                                                      "finish_reason": None}]})
                chunk.pop("usage", None)
                if usage is not None:
                    chunk["usage"] = usage   # GLM sends usage with the finishing chunk
            out.append(chunk)
            return out

        return self.rewrite(super().stream_events(turn, reply), reshape)


# ----------------------------------------------------------------------------------------------
# Qwen (Alibaba Model Studio, compatible mode)


class QwenProfile(StrictProfile):
    name = "qwen"
    base_path = "/compatible-mode/v1"
    models = {m.id: m for m in (
        ModelInfo("qwen3.8-max", 991_000, 65_536, _TEXT, False, (), None, False, "alibaba"),
        ModelInfo("qwen3.7-max", 991_000, 65_536, _TEXT, False, (), None, False, "alibaba"),
        ModelInfo("qwen3.7-plus", 1_000_000, 65_536, _IMG, False, (), None, False, "alibaba"),
        ModelInfo("qwen3-coder-plus", 1_000_000, 65_536, _TEXT, False, (), None, False, "alibaba"),
        ModelInfo("deepseek-v4-pro", 1_048_576, 65_536, _TEXT, False, (), None, False, "alibaba"),
    )}
    hybrid = ("qwen3.8-max", "qwen3.7-max", "qwen3.7-plus")
    passback = None
    ranges = {"temperature": (0, 1.99), "top_p": (0.01, 1), "presence_penalty": (-2, 2)}
    tool_choices = ("auto", "none", "function")
    thinking_tool_choices = ("auto", "none")
    # Strict stand-in: `thinking` / `reasoning_effort` are other providers' spellings.
    allowed_fields = frozenset({"model", "messages", "stream", "stream_options", "enable_thinking", "thinking_budget",
                                "temperature", "top_p", "top_k", "presence_penalty", "max_tokens", "seed", "stop", "tools",
                                "tool_choice", "parallel_tool_calls", "response_format", "enable_search", "search_options",
                                "logprobs", "top_logprobs", "n", "modalities", "translation_options"})
    default_speaker = "Qwen (fake)"

    def error_body(self, status: int, message: str = "", param: str = "", type_: str | None = "", code: str | None = None) -> dict:
        text = param if param and message in ("Bad Request", "") else (f"{message}: {param}" if param else message)
        return {"error": {"message": text, "type": type_ or "invalid_request_error", "param": None,
                          "code": code or "invalid_parameter_error"}, "id": "chatcmpl-" + uuid.uuid4().hex,
                "request_id": str(uuid.uuid4())}

    def auth_error(self) -> FakeError:
        return FakeError(401, self.error_body(401, "Incorrect API key provided. ", code="invalid_api_key"))

    def status_error_body(self, status: int) -> dict:
        if status == 429:
            return self.error_body(429, "Requests rate limit exceeded, please try again later.", type_="limit_requests",
                                   code="limit_requests")
        return super().status_error_body(status)

    def check_model(self, body: dict) -> str:
        model = body.get("model")
        if isinstance(model, str) and model not in self.models:
            raise FakeError(404, self.error_body(404, "The model `%s` does not exist or you do not have access to it." % model,
                                                 type_="invalid_request_error", code="model_not_found"))
        return super().check_model(body)

    def check_params(self, body: dict, info: ModelInfo) -> tuple[bool, bool]:
        et = body.get("enable_thinking")
        if et is not None and not isinstance(et, bool):
            raise self.bad("bad_type", field="enable_thinking", expected="Input should be a valid boolean")
        if et and info.id not in self.hybrid:
            raise self.bad("unknown_field", field="enable_thinking")
        if et and not body.get("stream"):
            raise FakeError(400, self.error_body(400, "parameter.enable_thinking must be set to false for non-streaming calls"))
        return super().check_params(body, info)

    def resolve_thinking(self, body: dict, info: ModelInfo) -> bool:
        return bool(body.get("enable_thinking", info.thinking_default))


# ----------------------------------------------------------------------------------------------
# MiniMax


class MiniMaxProfile(StrictProfile):
    name = "minimax"
    base_path = "/v1"
    models = {m.id: m for m in (
        ModelInfo("MiniMax-M3", 1_000_000, 524_288, _IMG, True, (), None, False, "minimax"),
        ModelInfo("MiniMax-M2.7", 204_800, 131_072, _TEXT, True, (), None, False, "minimax"),
        ModelInfo("MiniMax-M2.7-highspeed", 204_800, 131_072, _TEXT, True, (), None, False, "minimax"),
        ModelInfo("MiniMax-M2.5", 204_800, 131_072, _TEXT, True, (), None, False, "minimax"),
    )}
    always_thinking = ("MiniMax-M2.7", "MiniMax-M2.7-highspeed", "MiniMax-M2.5")
    passback = "tool_calls"
    passback_field = "content"
    thinking_types = ("adaptive", "disabled")
    ranges = {"temperature": (0.01, 1), "top_p": (0.01, 1)}
    tool_function_keys = ("name", "description", "parameters")
    # Strict stand-ins: tool_choice / parallel_tool_calls / response_format undocumented, max_tokens deprecated.
    allowed_fields = frozenset({"model", "messages", "stream", "stream_options", "max_completion_tokens", "temperature",
                                "top_p", "tools", "thinking", "reasoning_split", "mask_sensitive_info", "user"})
    default_speaker = "MiniMax (fake)"
    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self, keys: Iterable[str] | None = ("eyJ-test",)):
        super().__init__(keys)

    def error_body(self, status: int, message: str = "", param: str = "", type_: str | None = "", code: str | None = None) -> dict:
        text = param if param and message in ("Bad Request", "") else (f"{message}: {param}" if param else message)
        kind = {401: "authentication_error", 429: "rate_limit_error"}.get(status, type_ or "bad_request_error")
        return {"type": "error", "error": {"type": kind, "message": f"invalid params, {text} ({code or 2013})" if status == 400
                                           else f"{text} ({code or 1000})", "http_code": str(status)},
                "request_id": uuid.uuid4().hex}

    def auth_error(self) -> FakeError:
        return FakeError(401, self.error_body(401, "login fail: Please carry the API secret key in the 'Authorization' "
                                                   "field of the request header", code="1004"))

    def status_error_body(self, status: int) -> dict:
        if status == 429:
            return self.error_body(429, "rate limit exceeded(RPM)", code="1002")
        return super().status_error_body(status)

    @staticmethod
    def base_resp(code: int, msg: str) -> dict:
        """The HTTP-200 failure shape (queue it as {"error": {"status": 200, "body": base_resp(...)}})."""
        return {"id": uuid.uuid4().hex, "choices": None, "base_resp": {"status_code": code, "status_msg": msg}}

    def check_message_shapes(self, messages: list) -> None:
        super().check_message_shapes(messages)
        for i, m in enumerate(messages):
            if m["role"] == "system" and i != 0:
                raise self.bad("bad_type", field=f"messages[{i}]", expected="system message must be the first and only one")

    def check_arguments(self, messages: list) -> None:
        for m in messages:
            for c in m.get("tool_calls") or () if m["role"] == "assistant" else ():
                try:
                    json.loads(c["function"]["arguments"])
                except ValueError:
                    raise self.bad("bad_type", field="tool_calls", expected=f"invalid function arguments json string, tool_call_id: {c['id']}") from None

    def resolve_thinking(self, body: dict, info: ModelInfo) -> bool:
        if info.id in self.always_thinking:
            return True     # M2.x keep thinking even when asked not to
        t = body.get("thinking")
        return not (isinstance(t, dict) and t.get("type") == "disabled")

    def check_passback(self, messages: list, thinking: bool) -> None:
        # The whole earlier answer goes back: for a tool-call turn that means its <think> block (strict stand-in).
        if not thinking:
            return
        for i, m in enumerate(messages):
            if m["role"] == "assistant" and m.get("tool_calls"):
                content = m.get("content")
                if not (isinstance(content, str) and content.lstrip().startswith(self.OPEN) and self.CLOSE in content):
                    raise self.bad("bad_type", field=f"messages[{i}].content",
                                   expected="the assistant message must be passed back complete, <think> block included")

    def plan(self, turn: Turn, reply: Reply) -> dict:
        plan = super().plan(turn, reply)
        if plan["reasoning"]:
            # No reasoning_split: the thinking is inline at the start of content.
            plan["text"] = f"{self.OPEN}\n{plan['reasoning']}\n{self.CLOSE}\n\n" + (plan["text"] or "")
            plan["reasoning"] = None
        return plan

    def delta(self, content: Any = None, role: Any = None, tool_calls: Any = None, reasoning: Any = None) -> dict:
        d: dict[str, Any] = {"content": content, "role": role}
        if tool_calls is not None:
            d["tool_calls"] = tool_calls
        return d


# ----------------------------------------------------------------------------------------------
# OpenRouter


class OpenRouterProfile(StrictProfile):
    name = "openrouter"
    base_path = "/api/v1"
    models = {m.id: m for m in (
        ModelInfo("deepseek/deepseek-v4-pro", 1_048_576, 384_000, _TEXT, True, ("low", "high", "xhigh"), None, False, "deepseek"),
        ModelInfo("moonshotai/kimi-k3", 1_048_576, 131_072, _TEXT, True, ("low", "high", "xhigh"), None, False, "moonshotai"),
        ModelInfo("z-ai/glm-5.2", 1_048_576, 131_072, _TEXT, True, ("high", "xhigh"), None, False, "z-ai"),
        ModelInfo("xiaomi/mimo-v2.6-pro", 1_048_576, 131_072, _IMG, True, ("low", "medium", "high"), None, False, "xiaomi"),
        ModelInfo("anthropic/claude-sonnet-5", 1_000_000, 64_000, _IMG, False, ("minimal", "low", "medium", "high", "xhigh"),
                  None, False, "anthropic"),
    )}
    reasoning_field = "reasoning"
    passback = "tool_calls"
    passback_field = "reasoning_details"   # strict stand-in: OpenRouter asks for them back in tool loops
    reject_fields = tuple(f for f in RESPONSES_ONLY_FIELDS if f != "reasoning")
    message_keys = ("role", "content", "name", "tool_calls", "tool_call_id", "reasoning", "reasoning_details")
    allowed_fields = frozenset({"model", "models", "messages", "stream", "stream_options", "max_tokens",
                                "max_completion_tokens", "temperature", "top_p", "top_k", "frequency_penalty",
                                "presence_penalty", "repetition_penalty", "min_p", "seed", "stop", "tools", "tool_choice",
                                "parallel_tool_calls", "response_format", "reasoning", "usage", "provider", "transforms",
                                "user", "logprobs", "top_logprobs", "verbosity", "plugins"})
    REASONING_KEYS = ("effort", "max_tokens", "exclude", "enabled")
    EFFORTS = ("xhigh", "high", "medium", "low", "minimal", "none")
    default_speaker = "OpenRouter (fake)"

    def __init__(self, keys: Iterable[str] | None = ("sk-or-v1-test",)):
        super().__init__(keys)

    def error_body(self, status: int, message: str = "", param: str = "", type_: str | None = "", code: str | None = None) -> dict:
        text = param if param and message in ("Bad Request", "") else (f"{message}: {param}" if param else message)
        return {"error": {"code": status, "message": text, "metadata": {}}, "user_id": "user_fake"}

    def auth_error(self) -> FakeError:
        return FakeError(401, self.error_body(401, "No cookie auth credentials found"))

    def status_error_body(self, status: int) -> dict:
        texts = {402: "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
                 403: "Input was flagged by moderation", 408: "Request timed out",
                 429: "Rate limit exceeded: free-models-per-min", 502: "Provider returned error",
                 503: "No allowed providers are available for the selected model"}
        if status in texts:
            return self.error_body(status, texts[status])
        return super().status_error_body(status)

    def check_model(self, body: dict) -> str:
        model = body.get("model")
        if isinstance(model, str) and model not in self.models:
            raise FakeError(400, self.error_body(400, f"{model} is not a valid model ID"))
        return super().check_model(body)

    def check_params(self, body: dict, info: ModelInfo) -> tuple[bool, bool]:
        r = body.get("reasoning")
        if r is not None:
            if not isinstance(r, dict) or any(k not in self.REASONING_KEYS for k in r):
                raise FakeError(400, self.error_body(400, "reasoning: unknown key"))
            if "effort" in r and "max_tokens" in r:
                raise FakeError(400, self.error_body(400, "reasoning: only one of effort and max_tokens may be set"))
            if "effort" in r and r["effort"] not in self.EFFORTS:
                raise FakeError(400, self.error_body(400, f"reasoning.effort must be one of {', '.join(self.EFFORTS)}"))
            if "enabled" in r and not isinstance(r["enabled"], bool):
                raise FakeError(400, self.error_body(400, "reasoning.enabled must be a boolean"))
        return super().check_params(body, info)

    def resolve_thinking(self, body: dict, info: ModelInfo) -> bool:
        r = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
        if r.get("effort") == "none" or r.get("enabled") is False:
            return False
        return bool(r.get("enabled") or r.get("effort") or r.get("max_tokens") or info.thinking_default)

    def delta(self, content: Any = None, role: Any = None, tool_calls: Any = None, reasoning: Any = None) -> dict:
        d: dict[str, Any] = {"role": "assistant", "content": content if content is not None else ""}
        if reasoning is not None:
            d["reasoning"] = reasoning
            d["reasoning_details"] = [{"type": "reasoning.text", "text": reasoning, "format": "unknown", "index": 0}]
        if tool_calls is not None:
            d["tool_calls"] = tool_calls
        return d

    def chunk(self, rid: str, created: int, model: str, delta: dict, finish: str | None = None, final: bool = False) -> dict:
        c = super().chunk("gen-" + rid, created, model, delta, finish, final=False)
        c["provider"] = "FakeUpstream"
        c["choices"][0]["native_finish_reason"] = finish
        return c

    def frame_stream_error(self, body: Any) -> bytes:
        err = body.get("error", body) if isinstance(body, dict) else {"message": str(body)}
        return sse({"id": "gen-" + uuid.uuid4().hex, "object": "chat.completion.chunk", "provider": "FakeUpstream",
                    "error": {"code": err.get("code", 502), "message": err.get("message", "Provider disconnected")},
                    "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]})

    def usage(self, turn: Turn, reply: Reply, plan: dict) -> dict | None:
        u = super().usage(turn, reply, plan)
        if u is not None:
            u["cost"] = 0.0001
        return u

    def stream_events(self, turn: Turn, reply: Reply) -> list[bytes]:
        return [b": OPENROUTER PROCESSING\n\n", *super().stream_events(turn, reply)]


# ----------------------------------------------------------------------------------------------
# Local servers (vLLM-style errors, Ollama-style fields)


class LocalProfile(StrictProfile):
    name = "local"
    base_path = "/v1"
    models = {m.id: m for m in (
        ModelInfo("gpt-oss:20b", 131_072, 131_072, _TEXT, True, ("low", "medium", "high"), None, False, "library"),
        ModelInfo("qwen3:8b", 40_960, 32_768, _TEXT, True, ("none",), "none", False, "library"),
        ModelInfo("qwen3-coder:30b", 262_144, 65_536, _TEXT, False, (), None, False, "library"),
        ModelInfo("tiny:1b", 2_048, 2_048, _TEXT, False, (), None, False, "library"),
    )}
    inline_think = ("qwen3:8b",)   # served without a reasoning parser: <think> stays in content
    reasoning_field = "reasoning"
    passback = None
    message_keys = ("role", "content", "name", "tool_calls", "tool_call_id", "reasoning", "reasoning_content")
    # Strict stand-in: the spelling every local server takes is max_tokens.
    allowed_fields = frozenset({"model", "messages", "stream", "stream_options", "max_tokens", "temperature", "top_p",
                                "frequency_penalty", "presence_penalty", "seed", "stop", "tools", "tool_choice",
                                "parallel_tool_calls", "response_format", "reasoning_effort", "logprobs", "top_logprobs"})
    default_speaker = "local (fake)"

    def __init__(self, keys: Iterable[str] | None = None):
        super().__init__(keys)

    def authenticate(self, headers: Any) -> str:
        # Ollama / llama.cpp / vLLM without --api-key take requests with no credentials at all.
        if self.keys is None and headers.get("Authorization") is None:
            return ""
        return super().authenticate(headers)

    def error_body(self, status: int, message: str = "", param: str = "", type_: str | None = "", code: str | None = None) -> dict:
        text = param if param and message in ("Bad Request", "") else (f"{message}: {param}" if param else message)
        return {"object": "error", "message": text, "type": type_ or "BadRequestError", "param": None, "code": status}

    def check_model(self, body: dict) -> str:
        model = body.get("model")
        if isinstance(model, str) and model not in self.models:
            raise FakeError(404, self.error_body(404, f"The model `{model}` does not exist.", type_="NotFoundError"))
        return super().check_model(body)

    def validate(self, body: Any, raw_size: int) -> Turn:
        turn = super().validate(body, raw_size)
        if raw_size // 4 > turn.info.context:
            raise FakeError(400, {"error": {"code": 400, "message": "the request exceeds the available context size, "
                                            "try increasing it", "type": "exceed_context_size_error",
                                            "n_prompt_tokens": raw_size // 4, "n_ctx": turn.info.context}})
        return turn

    def plan(self, turn: Turn, reply: Reply) -> dict:
        plan = super().plan(turn, reply)
        if plan["reasoning"] and turn.model in self.inline_think:
            plan["text"] = f"<think>\n{plan['reasoning']}\n</think>\n\n" + (plan["text"] or "")
            plan["reasoning"] = None
        return plan


# ----------------------------------------------------------------------------------------------

PROFILES: dict[str, type[StrictProfile]] = {
    "deepseek": DeepSeekProfile, "kimi": KimiProfile, "glm": GlmProfile, "qwen": QwenProfile,
    "minimax": MiniMaxProfile, "openrouter": OpenRouterProfile, "local": LocalProfile,
}


def profile(name: str, keys: Iterable[str] | None | object = ...) -> Profile:
    """The strict profile of provider `name` (keys: accepted API keys; None = any; default: its test key)."""
    if name == "mimo":
        from mimo2codex.fakes.mimo import MimoProfile

        return MimoProfile() if keys is ... else MimoProfile(keys)
    cls = PROFILES[name]
    return cls() if keys is ... else cls(keys)


def default_key(name: str) -> str | None:
    """An API key the default profile of `name` accepts (None: it accepts any)."""
    keys = profile(name).keys
    return keys[0] if keys else None


def fake_server(name: str, keys: Iterable[str] | None | object = ..., **kw: Any) -> FakeChatServer:
    return FakeChatServer(profile(name, keys), **kw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mimo2codex.fakes.providers", description="Strict fake provider servers")
    ap.add_argument("name", choices=sorted(PROFILES))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--key", action="append", help="accepted API key (repeatable; default: the profile's test key)")
    ap.add_argument("--any-key", action="store_true", help="accept any key")
    ap.add_argument("--default-reply", metavar="JSON", help="reply spec for unscripted requests")
    args = ap.parse_args(argv)
    keys: Any = None if args.any_key else (args.key or ...)
    fake = fake_server(args.name, keys, host=args.host, port=args.port,
                       default_reply=json.loads(args.default_reply) if args.default_reply else None)
    return serve_until_signal(fake)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
