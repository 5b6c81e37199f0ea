"""StrictProfile: the generic Profile made strict by class attributes, the base of every provider but MiMo.

Fields a provider does not document are refused (a strict stand-in), so a translator leaking another
provider's knob fails here instead of being ignored upstream.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from .chat_server import FakeError, ModelInfo, Profile, Turn, sse

TEXT_ONLY = frozenset({"text"})
TEXT_IMAGE = frozenset({"text", "image"})
SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


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
                   "max_completion_tokens", *SAMPLING, *self.ranges}
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
