"""Strict fake of Zhipu GLM (sources cited in rules/glm.yaml)."""

from __future__ import annotations

from typing import Iterable

from .chat_server import FakeError, ModelInfo, Reply, Turn
from .strict import StrictProfile, TEXT_ONLY


class GlmProfile(StrictProfile):
    name = "glm"
    base_path = "/api/paas/v4"
    models = {m.id: m for m in (
        ModelInfo("glm-5.2", 1_048_576, 131_072, TEXT_ONLY, True,
                  ("none", "minimal", "low", "medium", "high", "xhigh", "max"), None, False, "zhipu"),
        ModelInfo("glm-5.1", 202_752, 131_072, TEXT_ONLY, True, (), None, False, "zhipu"),
        ModelInfo("glm-4.7", 202_752, 131_072, TEXT_ONLY, True, (), None, False, "zhipu"),
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
    unknown_model = {"status": 400, "body": {"error": {"code": "1211", "message": "模型不存在，请检查模型代码。"}}}

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
