"""Strict fake of MiniMax (sources cited in rules/minimax.yaml)."""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterable

from .chat_server import FakeError, ModelInfo, Reply, Turn
from .strict import StrictProfile, TEXT_IMAGE, TEXT_ONLY


class MiniMaxProfile(StrictProfile):
    name = "minimax"
    base_path = "/v1"
    models = {m.id: m for m in (
        ModelInfo("MiniMax-M3", 1_000_000, 524_288, TEXT_IMAGE, True, (), None, False, "minimax"),
        ModelInfo("MiniMax-M2.7", 204_800, 131_072, TEXT_ONLY, True, (), None, False, "minimax"),
        ModelInfo("MiniMax-M2.7-highspeed", 204_800, 131_072, TEXT_ONLY, True, (), None, False, "minimax"),
        ModelInfo("MiniMax-M2.5", 204_800, 131_072, TEXT_ONLY, True, (), None, False, "minimax"),
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
