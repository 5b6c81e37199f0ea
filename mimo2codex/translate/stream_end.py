"""How a Responses stream ends: completed, incomplete (length, content filter) or failed.

A mixin of ResponsesStream (stream.py): maps the provider's finish_reason to a terminal state,
closes what is still open (display item, tool calls) and emits the one terminal event with the
final Response object. Nothing else emits a terminal event. Also here: a provider error object
inside the stream, an internal error (`_crash`), and what the finished stream reports
(`response`, `summary`).
"""

from __future__ import annotations

import json

from mimo2codex.translate.errors import map_upstream
from mimo2codex.translate.sse import response_event, response_object, usage_from_chat
from mimo2codex.translate.stream_tools import _BadCall

# finish_reason -> (terminal status, incomplete reason | error code)
_INCOMPLETE = {
    "length": "max_output_tokens",
    "repetition_truncation": "max_output_tokens",
    "content_filter": "content_filter",
    "sensitive": "content_filter",  # GLM
}
_FAILED = {
    "model_context_window_exceeded": ("context_length_exceeded", "The prompt exceeds the model's context window (finish_reason model_context_window_exceeded)."),  # GLM
    "network_error": ("server_error", "The provider reported a network error while generating (finish_reason network_error)."),  # GLM
}


class Endings:
    """Mixin of ResponsesStream: the terminal state and the one terminal event."""

    def _emit_response(self, etype: str, resp: dict) -> None:
        self._out.append(response_event(etype, self._next(), resp, self._echo))

    def _terminal_from_finish(self) -> None:
        fr = self._finish_reason
        if fr in _FAILED:
            code, message = _FAILED[fr]
            self._end("failed", code=code, message=message)
            return
        if fr in _INCOMPLETE:
            self._end("incomplete", reason=_INCOMPLETE[fr])
        elif fr == "error":
            self._end("failed", code="server_error", message=f"The {self._provider()} stream ended with finish_reason 'error'.")
        elif fr is None and not self._output:  # slots are reserved when an item starts
            # [DONE] after nothing usable: an empty "completed" would end the Codex turn without a word.
            self._end("failed", code="server_error",
                      message=f"The {self._provider()} stream ended ([DONE]) without any chat completion content or finish_reason.")
        else:
            self._end("completed")

    def _end(self, status: str, *, reason: str | None = None, code: str | None = None, message: str | None = None) -> None:
        if self.done or self._ending:
            return
        self._ending = True
        item_status = "completed" if status == "completed" else "incomplete"
        self._close_display(item_status)
        try:
            self._close_calls(status)
        except _BadCall as exc:
            status, code, message = "failed", "server_error", str(exc)
            self._close_calls("failed")
        for kind, parts in (("reasoning", self._late_reasoning), ("message", self._late_text)):
            if parts:
                text = "".join(parts)
                parts.clear()
                self._whole_item(kind, text, "completed" if status == "completed" else "incomplete")
        self._status = status
        error = incomplete = None
        if status == "failed":
            error = self._error = {"code": code or "server_error", "message": message or "upstream failure"}
        elif status == "incomplete":
            incomplete = self._incomplete = {"reason": reason or "max_output_tokens"}
        self._final = response_object(
            self.turn,
            status,
            [i for i in self._output if i is not None],
            usage=usage_from_chat(self._usage_raw),
            error=error,
            incomplete_details=incomplete,
        )
        self.done = True
        self._emit_response(f"response.{status}", self._final)

    @property
    def response(self) -> dict:
        if self._final is not None:
            return self._final
        return response_object(
            self.turn, self._status, [i for i in self._output if i is not None], usage=usage_from_chat(self._usage_raw)
        )

    @property
    def summary(self) -> dict:
        usage = usage_from_chat(self._usage_raw) or {}
        return {
            "model": self.turn.model,
            "upstream_model": self.turn.upstream_model or self.turn.model,
            "status": self._status,
            "finish_reason": self._finish_reason,
            "input_tokens": usage.get("input_tokens", 0),
            "cached_tokens": (usage.get("input_tokens_details") or {}).get("cached_tokens", 0),
            "output_tokens": usage.get("output_tokens", 0),
            "reasoning_tokens": (usage.get("output_tokens_details") or {}).get("reasoning_tokens", 0),
            "tool_calls": list(self._tool_names),
            "error": (self._error or {}).get("message"),
            "incomplete_reason": (self._incomplete or {}).get("reason"),
            "warnings": list(self.warnings),
        }

    def _crash(self, exc: BaseException) -> None:
        msg = f"mimo2codex internal error: {type(exc).__name__}: {exc}"
        self._warn(msg)
        if self.done:
            return
        if not self._ending:
            try:
                self._end("failed", code="server_error", message=msg)
                return
            except Exception:
                pass
        # State is beyond repair: a bare terminal event with what is known to be finished.
        self.done = True
        self._status = "failed"
        self._error = {"code": "server_error", "message": msg}
        self._final = response_object(self.turn, "failed", [i for i in self._output if i is not None], error=self._error)
        try:
            self._emit_response("response.failed", self._final)
        except Exception:
            pass

    def _upstream_error(self, chunk: dict) -> None:
        err = chunk.get("error")
        if not isinstance(err, dict):
            err = chunk  # `event: error` with the fields at the top level
        code = err.get("code")
        try:
            status = int(str(code).strip())
        except (TypeError, ValueError):
            status = 0
        if not 400 <= status <= 599:
            status = 500
        mapped = map_upstream(self.rules, status, json.dumps(chunk, ensure_ascii=False).encode(), None)
        self._end("failed", code=mapped.code, message=mapped.message)
