"""Strict fake of Moonshot Kimi (sources cited in rules/kimi.yaml)."""

from __future__ import annotations

from .chat_server import FakeError, ModelInfo, Reply, Turn
from .strict import SAMPLING, StrictProfile, TEXT_IMAGE, TEXT_ONLY


class KimiProfile(StrictProfile):
    name = "kimi"
    base_path = "/v1"
    models = {m.id: m for m in (
        ModelInfo("kimi-k3", 1_048_576, 131_072, TEXT_ONLY, True, ("low", "high", "max"), None, False, "moonshot"),
        ModelInfo("kimi-k2.6", 262_144, 262_144, TEXT_IMAGE, True, (), None, False, "moonshot"),
        ModelInfo("kimi-k2.5", 262_144, 262_144, TEXT_IMAGE, True, (), None, False, "moonshot"),
    )}
    retired = {"kimi-k2-thinking": "kimi-k2.6", "kimi-k2-thinking-turbo": "kimi-k2.6", "kimi-k2-turbo-preview": "kimi-k2.6"}
    always_thinking = ("kimi-k3",)
    passback = "tool_calls"
    thinking_tool_choices = ("auto", "none")
    # Fixed on kimi-*: "Cannot be modified" -> any value is refused (strict stand-in for "only 1 is allowed").
    fixed_params = SAMPLING + ("n",)
    allowed_fields = frozenset({"model", "messages", "thinking", "reasoning_effort", "max_tokens", "max_completion_tokens",
                                "temperature", "top_p", "frequency_penalty", "presence_penalty", "n", "stop", "stream",
                                "stream_options", "tools", "tool_choice", "response_format", "prompt_cache_key",
                                "parallel_tool_calls", "user"})
    default_speaker = "Kimi (fake)"
    unknown_model = {"status": 404, "message": "Not found the model {model} or Permission denied",
                     "type_": "resource_not_found_error"}

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
