"""Strict fake of Qwen (Alibaba Model Studio, compatible mode) (sources cited in rules/qwen.yaml)."""

from __future__ import annotations

import uuid

from .chat_server import FakeError, ModelInfo
from .strict import StrictProfile, TEXT_IMAGE, TEXT_ONLY


class QwenProfile(StrictProfile):
    name = "qwen"
    base_path = "/compatible-mode/v1"
    models = {m.id: m for m in (
        ModelInfo("qwen3.8-max", 991_000, 65_536, TEXT_ONLY, False, (), None, False, "alibaba"),
        ModelInfo("qwen3.7-max", 991_000, 65_536, TEXT_ONLY, False, (), None, False, "alibaba"),
        ModelInfo("qwen3.7-plus", 1_000_000, 65_536, TEXT_IMAGE, False, (), None, False, "alibaba"),
        ModelInfo("qwen3-coder-plus", 1_000_000, 65_536, TEXT_ONLY, False, (), None, False, "alibaba"),
        ModelInfo("deepseek-v4-pro", 1_048_576, 65_536, TEXT_ONLY, False, (), None, False, "alibaba"),
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
    unknown_model = {"status": 404, "message": "The model `{model}` does not exist or you do not have access to it.",
                     "type_": "invalid_request_error", "code": "model_not_found"}

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
