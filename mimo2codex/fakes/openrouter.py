"""Strict fake of OpenRouter (sources cited in rules/openrouter.yaml)."""

from __future__ import annotations

import uuid
from typing import Any, Iterable

from .chat_server import RESPONSES_ONLY_FIELDS, FakeError, ModelInfo, Reply, Turn, sse
from .strict import StrictProfile, TEXT_IMAGE, TEXT_ONLY


class OpenRouterProfile(StrictProfile):
    name = "openrouter"
    base_path = "/api/v1"
    models = {m.id: m for m in (
        ModelInfo("deepseek/deepseek-v4-pro", 1_048_576, 384_000, TEXT_ONLY, True, ("low", "high", "xhigh"), None, False, "deepseek"),
        ModelInfo("moonshotai/kimi-k3", 1_048_576, 131_072, TEXT_ONLY, True, ("low", "high", "xhigh"), None, False, "moonshotai"),
        ModelInfo("z-ai/glm-5.2", 1_048_576, 131_072, TEXT_ONLY, True, ("high", "xhigh"), None, False, "z-ai"),
        ModelInfo("xiaomi/mimo-v2.6-pro", 1_048_576, 131_072, TEXT_IMAGE, True, ("low", "medium", "high"), None, False, "xiaomi"),
        ModelInfo("anthropic/claude-sonnet-5", 1_000_000, 64_000, TEXT_IMAGE, False, ("minimal", "low", "medium", "high", "xhigh"),
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
    unknown_model = {"status": 400, "message": "{model} is not a valid model ID"}

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
