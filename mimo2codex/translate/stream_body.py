"""A whole upstream body (`whole`: Chat SSE or a non-stream `chat.completion`) through the same state machine.

A mixin of ResponsesStream (stream.py): turns the completion into the chunk the intake expects and
lets the stream finish as usual; it adds no state of its own.
"""

from __future__ import annotations

import json
from typing import Any


class WholeBody:
    """Mixin of ResponsesStream: a non-stream completion fed as one chunk."""

    def feed_completion(self, obj: Any) -> bytes:
        """A whole non-stream `chat.completion` (parsed JSON) -> the complete event stream."""
        if self.done:
            return b""
        out = self._out = []
        try:
            self._start()
            # Hooks see the whole answer first (they handle `message` as well as `delta`): some
            # providers put their failure (MiniMax base_resp) beside an ordinary-looking body.
            for hook in self._hooks if isinstance(obj, dict) else ():
                obj = hook(obj, self._hook_state)
                if obj is None:
                    obj = {"choices": []}
                    break
            if not isinstance(obj, dict):
                self._end("failed", code="server_error", message=f"The {self._provider()} answer was not a JSON object.")
            elif obj.get("error") is not None:
                self._upstream_error(obj)
            elif not isinstance(obj.get("choices"), list):
                self._end("failed", code="server_error",
                          message=f"The {self._provider()} answer was JSON but not a chat completion (no choices list).")
            else:
                choices = obj["choices"]
                converted = []
                for choice in choices[:1]:
                    if not isinstance(choice, dict):
                        continue
                    delta = dict(choice.get("message") or choice.get("delta") or {})
                    calls = delta.get("tool_calls")
                    if isinstance(calls, list):
                        delta["tool_calls"] = [
                            dict(c, index=c.get("index", i)) if isinstance(c, dict) else c for i, c in enumerate(calls)
                        ]
                    fr = choice.get("finish_reason") or ("tool_calls" if calls else "stop")
                    converted.append({"index": 0, "delta": delta, "finish_reason": fr})
                if not converted:
                    converted = [{"index": 0, "delta": {}, "finish_reason": "stop"}]
                self._chunk({"choices": converted, "usage": obj.get("usage")}, None, hooked=True)
                if not self.done:
                    self._terminal_from_finish()
        except Exception as exc:
            self._crash(exc)
        return b"".join(out)

    def whole(self, body: bytes, content_type: str = "") -> bytes:
        """A whole upstream body -> the rest of the event stream.

        Handles a Chat SSE body (replayed flows, clients that did not stream) and a non-stream
        `chat.completion` JSON, which goes through the same state machine as one chunk.
        """
        head = (body or b"").lstrip()[:6]
        if "event-stream" in (content_type or "").lower() or head.startswith((b"data:", b"event:", b":", b"id:")):
            return self.feed(body or b"") + self.finish()
        try:
            obj = json.loads(body) if body else None
        except ValueError:
            obj = None
        if obj is None:
            return self.fail("server_error", f"The {self._provider()} answer was neither an event stream nor JSON.")
        return self.feed_completion(obj)
