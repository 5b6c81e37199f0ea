"""Strict fake of DeepSeek (sources cited in rules/deepseek.yaml)."""

from __future__ import annotations

from .chat_server import FakeError, ModelInfo, Reply, Turn
from .strict import StrictProfile, TEXT_ONLY


class DeepSeekProfile(StrictProfile):
    name = "deepseek"
    base_path = ""      # https://api.deepseek.com/chat/completions
    models = {m.id: m for m in (
        ModelInfo("deepseek-v4-pro", 1_048_576, 384_000, TEXT_ONLY, True, ("low", "high", "max"), None, False, "deepseek"),
        ModelInfo("deepseek-v4-flash", 1_048_576, 384_000, TEXT_ONLY, True, ("low", "high", "max"), None, False, "deepseek"),
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
