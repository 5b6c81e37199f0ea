"""Strict fake of Local servers (vLLM-style errors, Ollama-style fields) (sources cited in rules/local.yaml)."""

from __future__ import annotations

from typing import Any, Iterable

from .chat_server import FakeError, ModelInfo, Reply, Turn
from .strict import StrictProfile, TEXT_ONLY


class LocalProfile(StrictProfile):
    name = "local"
    base_path = "/v1"
    models = {m.id: m for m in (
        ModelInfo("gpt-oss:20b", 131_072, 131_072, TEXT_ONLY, True, ("low", "medium", "high"), None, False, "library"),
        ModelInfo("qwen3:8b", 40_960, 32_768, TEXT_ONLY, True, ("none",), "none", False, "library"),
        ModelInfo("qwen3-coder:30b", 262_144, 65_536, TEXT_ONLY, False, (), None, False, "library"),
        ModelInfo("tiny:1b", 2_048, 2_048, TEXT_ONLY, False, (), None, False, "library"),
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
    unknown_model = {"status": 404, "message": "The model `{model}` does not exist.", "type_": "NotFoundError"}

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
