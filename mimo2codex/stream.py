"""Chat Completions stream -> Responses stream: the state machine behind the mitmproxy stream callable.

`ResponsesStream.feed()` takes upstream bytes cut anywhere and returns the Responses SSE bytes they
complete; `finish()` / `fail()` end the stream. What Codex needs from the output is set out in
codex-responses.md §3-4; the choices made here:

- Items never interleave. Reasoning and text are streamed live. Of the tool calls, one is streamed
  live and the others are buffered; the live one is closed early when a new call starts and its
  arguments already form a complete JSON document (sequential calls), all others close at the end
  in index order. Text or reasoning that arrives after the first tool call is emitted after the calls.
- Codex runs a tool as soon as its `output_item.done` arrives. So a call is only closed when its
  arguments are whole: a call cut short (finish_reason length / content_filter, stream error, EOF)
  gets no `output_item.done`; it appears, salvaged and marked incomplete, only in the final
  Response object (logs, other clients). Unrepairable arguments at a normal finish fail the
  response instead of handing Codex garbage.
- Reasoning is always sealed into `encrypted_content` (envelope.seal) so Codex carries it back and
  the request side can restore `reasoning_content`; the summary text is shown unless
  `turn.show_reasoning` is off.
- Nothing raises out of feed/finish/fail: an internal error becomes `response.failed` (server_error).
"""

from __future__ import annotations

import json
import json.scanner
import re
from typing import Any

from mimo2codex import envelope
from mimo2codex.jsonfix import complete_json, salvage_json
from mimo2codex.errors import map_upstream
from mimo2codex.hooks import REGISTRY
from mimo2codex.sse import DONE, DeltaTemplate, SSEParser, event, response_object, usage_from_chat
from mimo2codex.turn import Turn, new_id

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


_SCAN = json.scanner.make_scanner(json.JSONDecoder())


def _loads(payload: bytes) -> Any:
    """json.loads for one SSE payload, about twice as fast on the common case (the C scanner
    straight on a decoded str, no encoding sniffing or whitespace regexes); same errors."""
    text = payload.decode("utf-8", "replace")
    try:
        obj, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)  # raises the proper JSONDecodeError (or copes with leading blanks)
    if end != len(text) and text[end:].strip():
        return json.loads(text)
    return obj


# The common MiMo chunk, one reasoning or text piece and nothing else (mimo-chat.md §4), found
# by comparing the raw frame with fixed byte strings: no JSON parse, no dict dispatch, and a piece
# with nothing to escape is copied into the delta event as it came. The envelope around it (id,
# model, created...) is checked by a regex only when it changes, which in a MiMo stream is rarely.
# Any other chunk, or any doubt, goes the general way; both give the same bytes (tests/test_stream.py).
_ENVELOPE = rb'(?:"(?:id|model|object|system_fingerprint)":"[^"\\]*"|"created":\d+|"usage":null)'
_HEAD = re.compile(rb'data: ?\{(?:' + _ENVELOPE + rb',)*')  # greedy: ends where "choices" starts
_TAIL = re.compile(rb'(?:,' + _ENVELOPE + rb')*\}\n\n')
_PIECES = (
    ("message", b'"choices":[{"delta":{"content":"',
     b'","role":null,"tool_calls":null,"reasoning_content":null},"finish_reason":null,"index":0}]'),
    ("reasoning", b'"choices":[{"delta":{"content":null,"role":null,"tool_calls":null,"reasoning_content":"',
     b'"},"finish_reason":null,"index":0}]'),
)
_SPECIAL = re.compile(rb'[\x00-\x1f"\\]')  # a piece with any of these is decoded (and checked) as JSON


class _BadCall(Exception):
    """A tool call whose arguments cannot be handed to the client."""


class _Call:
    __slots__ = ("index", "call_id", "name", "parts", "state", "kind", "item_id", "out_idx", "tmpl")

    def __init__(self, index: int) -> None:
        self.index = index
        self.call_id: str | None = None
        self.name: str | None = None
        self.parts: list[str] = []
        self.state = "pending"  # pending (buffered) -> live -> closed
        self.kind = ""
        self.item_id = ""
        self.out_idx = -1
        self.tmpl: DeltaTemplate | None = None


# ----------------------------------------------------------------------------------------------
# Tool-argument repair


def _fix_args(raw: str) -> tuple[str | None, bool, str]:
    """(arguments to use or None, whether they were repaired, the JSON error if any)."""
    if not raw.strip():
        return "{}", False, ""
    try:
        json.loads(raw)
        return raw, False, ""
    except ValueError as exc:
        err = str(exc)
    try:  # raw newlines/tabs inside strings: re-encode
        return json.dumps(json.loads(raw, strict=False), ensure_ascii=False), True, err
    except ValueError:
        pass
    fixed = salvage_json(raw)
    return fixed, fixed is not None, err


# ----------------------------------------------------------------------------------------------


class ResponsesStream:
    """Feed Chat SSE bytes, get Responses SSE bytes. See the module docstring."""

    def __init__(self, turn: Turn, rules: Any) -> None:
        self.warnings: list[str] = []
        self.turn = turn
        self.rules = rules
        reasoning = getattr(rules, "reasoning", None) or {}
        self._fields = tuple(reasoning.get("fields") or ("reasoning_content",))
        self._hooks = []
        for name in (getattr(rules, "hooks", None) or {}).get("chunk", ()):
            fn = name if callable(name) else REGISTRY["chunk"].get(name)
            if fn is None:
                self.warnings.append(f"unknown chunk hook {name!r} skipped")
            else:
                self._hooks.append(fn)
        self._hook_state: dict = {"turn": turn, "rules": rules}
        # Hooks must see every chunk; a provider reading reasoning elsewhere would ignore MiMo's field.
        self._fast = not self._hooks and "reasoning_content" in self._fields
        self._envelope = (b"", b"")  # the last head and tail around a plain piece that passed the check
        self._same: tuple[str, bytes, bytes, int] | None = None  # kind, bytes before and after the piece, their length
        # The same idea for any provider's framing, learnt from a frame the general path found to be
        # a plain piece: that frame's payload around the piece (see _learn). Works on payloads, so
        # also on frames split across reads and on framings _PIECES does not know.
        self._learned: tuple[str, bytes, bytes, int] | None = None

        self._show = bool(turn.show_reasoning)
        self._parser = SSEParser()
        self._seq = 0
        self._out: list[bytes] = []
        self._started = False
        self._ending = False
        self.done = False
        self._final: dict | None = None

        self._output: list[dict | None] = []  # slots reserved at output_item.added
        self._open: str | None = None  # "reasoning" | "message": the display item being streamed
        self._item_id = ""
        self._out_idx = -1
        self._parts: list[str] = []
        self._tmpl: DeltaTemplate | None = None

        self._calls: dict[int, _Call] = {}
        self._live: _Call | None = None
        self._late_reasoning: list[str] = []
        self._late_text: list[str] = []
        self._annotations: list[dict] = []

        self._finish_reason: str | None = None
        self._usage_raw: dict | None = None
        self._status = "in_progress"
        self._error: dict | None = None
        self._incomplete: dict | None = None
        self._tool_names: list[str] = []
        self._abandoned = False  # a cut-off tool call was opened (added) and never closed

    # ---------------------------------------------------------------- public API

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        same = self._same
        if (same is not None and len(data) > same[3] and data.startswith(same[1]) and data.endswith(same[2])
                and self._open == same[0] and not self._calls and self._parser.idle()):
            # The read is one frame like the last plain one, only the piece differs (the usual case).
            piece = data[len(same[1]) : len(data) - len(same[2])]
            if _SPECIAL.search(piece) is None:
                try:
                    self._parts.append(piece.decode())
                except ValueError:
                    pass  # bad UTF-8: the general path warns about it
                else:
                    if same[0] == "reasoning" and not self._show:
                        return b""
                    return self._tmpl.render_literal(self._next(), b'"' + piece + b'"')  # type: ignore[union-attr]
        out = self._out = []
        try:
            if not self._started:
                self._start()
            if self._fast and self._parser.idle():
                taken = self._plain(data)
                if taken:
                    if taken == len(data):
                        return out[0] if len(out) == 1 else b"".join(out)
                    data = data[taken:]
            idle = self._parser.idle()
            for name, payload in self._parser.feed(data):
                if payload[:1] == b"{" and name is None:
                    learned = self._learned
                    if (learned is not None and len(payload) > learned[3] and payload.startswith(learned[1])
                            and payload.endswith(learned[2]) and self._open == learned[0] and not self._calls
                            and self._learned_piece(learned, payload, data, idle)):
                        continue
                    try:
                        chunk = _loads(payload)
                    except ValueError:
                        self._on_event(name, payload)
                    else:
                        self._chunk(chunk, None)
                        if self._fast and not self.done:
                            self._learn(payload, chunk)
                else:
                    self._on_event(name, payload)
                if self.done:
                    break
        except Exception as exc:
            self._crash(exc)
        return out[0] if len(out) == 1 else b"".join(out)

    def _plain(self, data: bytes) -> int:
        """Translate the leading plain-piece frames of `data` (see _PIECES); how many bytes were taken."""
        pos = 0
        end = len(data)
        while pos < end and not self._calls:
            head, tail = self._envelope
            if head and data.startswith(head, pos):
                at = pos + len(head)
            else:
                m = _HEAD.match(data, pos)
                if m is None:
                    break
                at = m.end()
            for kind, opening, closing in _PIECES:
                if data.startswith(opening, at):
                    break
            else:
                break
            start = at + len(opening)
            close = data.find(b'"', start)  # the closing quote, unless the piece holds an escaped one
            if close < 0:
                break
            if not data.startswith(closing, close):
                close = data.find(closing, start)
                if close < 0:
                    break
            after = close + len(closing)
            if tail and data.startswith(tail, after):
                stop = after + len(tail)
            else:
                m = _TAIL.match(data, after)
                if m is None:
                    break
                stop = m.end()
                self._envelope = (data[pos:at], data[after:stop])
            piece = data[start:close]
            if piece:
                if self._open != kind:
                    break  # opening an item: the general path
                try:
                    if _SPECIAL.search(piece) is None:
                        text = piece.decode()
                        literal = b'"' + piece + b'"'
                    else:
                        text = json.loads(b'"' + piece + b'"')
                        literal = None
                except ValueError:
                    break  # bad UTF-8, escape or quote: the general path warns about it
                self._parts.append(text)
                if pos == 0 and stop == end and literal:
                    self._same = (kind, data[:start], data[close:], start + end - close)
                if kind == "message" or self._show:
                    tmpl = self._tmpl
                    self._out.append(tmpl.render_literal(self._next(), literal) if literal else tmpl.render(self._next(), text))  # type: ignore[union-attr]
            pos = stop
        return pos

    def _learn(self, payload: bytes, chunk: dict) -> None:
        """Remember `payload` as a template if the general path just read it as one plain piece.

        The same bytes with another piece between the same two ends, a piece holding no quote,
        backslash or control character, are the same JSON but for that string: the general path
        would do exactly what it did here (append the piece to the open item) with the new one.
        """
        if chunk.get("error") is not None or chunk.get("usage"):
            return
        choices = chunk.get("choices")
        if type(choices) is not list or len(choices) != 1 or type(choices[0]) is not dict or choices[0].get("finish_reason"):
            return
        delta = choices[0].get("delta")
        if type(delta) is not dict or delta.get("tool_calls") or delta.get("annotations"):
            return
        key, reasoning = "", None
        for key in self._fields:  # the field _chunk reads reasoning from
            reasoning = delta.get(key)
            if reasoning is not None:
                break
        content = delta.get("content")
        if reasoning and not content:
            kind, text = "reasoning", reasoning
        elif content and not reasoning:
            kind, key, text = "message", "content", content
        else:
            return
        if type(text) is not str or self._open != kind or self._calls:
            return
        try:
            raw = text.encode()
        except UnicodeEncodeError:  # a lone surrogate half: nothing to learn from
            return
        if _SPECIAL.search(raw) is not None:
            return
        name = b'"' + key.encode() + b'"'
        at = payload.find(name)
        if at < 0 or payload.find(name, at + 1) >= 0:  # a key occurs only as itself; twice would be ambiguous
            return
        start = at + len(name)
        while payload[start : start + 1] in (b" ", b"\t"):
            start += 1
        if payload[start : start + 1] != b":":
            return
        start += 1
        while payload[start : start + 1] in (b" ", b"\t"):
            start += 1
        if payload[start : start + 1] != b'"' or payload[start + 1 : start + 2 + len(raw)] != raw + b'"':
            return  # the piece is written with escapes (ensure_ascii, say): no template
        start += 1
        head, tail = payload[:start], payload[start + len(raw) :]
        self._learned = (kind, head, tail, len(head) + len(tail))

    def _learned_piece(self, learned: tuple[str, bytes, bytes, int], payload: bytes, data: bytes, idle: bool) -> bool:
        """Translate a payload matching the learnt template; False leaves it to the general path."""
        kind, head, tail, _ = learned
        piece = payload[len(head) : len(payload) - len(tail)]
        if _SPECIAL.search(piece) is not None:
            return False
        try:
            self._parts.append(piece.decode())
        except ValueError:
            return False
        if idle and len(data) - len(payload) in (7, 8) and data.endswith(payload + b"\n\n"):
            lead = data[: len(data) - len(payload) - 2]
            if lead in (b"data: ", b"data:"):  # the read was this one frame: next time skip the parser too
                self._same = (kind, lead + head, tail + b"\n\n", len(lead) + len(head) + len(tail) + 2)
        if kind == "message" or self._show:
            self._out.append(self._tmpl.render_literal(self._next(), b'"' + piece + b'"'))  # type: ignore[union-attr]
        return True

    def finish(self) -> bytes:
        if self.done:
            return b""
        out = self._out = []
        try:
            self._start()
            for name, payload in self._parser.close():
                self._on_event(name, payload)
                if self.done:
                    break
            if not self.done:
                if self._finish_reason is not None:
                    self._terminal_from_finish()
                else:
                    self._end(
                        "failed",
                        code="server_error",
                        message=f"The {self._provider()} stream ended early (no finish_reason and no [DONE]); the answer is incomplete.",
                    )
        except Exception as exc:
            self._crash(exc)
        return b"".join(out)

    def fail(self, code: str, message: str) -> bytes:
        if self.done:
            return b""
        out = self._out = []
        try:
            self._start()
            self._end("failed", code=code or "server_error", message=message or "upstream failure")
        except Exception as exc:
            self._crash(exc)
        return b"".join(out)

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

    # ---------------------------------------------------------------- non-stream bodies

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

    # ---------------------------------------------------------------- plumbing

    def _provider(self) -> str:
        return getattr(self.rules, "name", "") or "upstream"

    def _next(self) -> int:
        seq = self._seq
        self._seq = seq + 1
        return seq

    def _emit(self, etype: str, fields: dict) -> None:
        self._out.append(event(etype, self._next(), fields))

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        resp = response_object(self.turn, "in_progress")
        self._emit("response.created", {"response": resp})
        self._emit("response.in_progress", {"response": resp})

    def _warn(self, text: str) -> None:
        if len(self.warnings) < 20:
            self.warnings.append(text)

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
            self._emit("response.failed", {"response": self._final})
        except Exception:
            pass

    # ---------------------------------------------------------------- upstream events

    def _on_event(self, name: str | None, payload: bytes) -> None:
        if payload[:1] != b"{" and payload.strip() == DONE:
            self._terminal_from_finish()
            return
        try:
            chunk = _loads(payload)
        except ValueError:
            if b"\n" in payload:  # data lines of separate chunks without the blank line between
                for line in payload.split(b"\n"):
                    if line.strip() and not self.done:
                        self._on_event(name, line)
                return
            if payload.strip():
                self._warn(f"ignored a non-JSON upstream event: {payload[:120]!r}")
            return
        if not isinstance(chunk, dict):
            self._warn(f"ignored a non-object upstream event: {payload[:120]!r}")
            return
        self._chunk(chunk, name)

    def _chunk(self, chunk: dict, name: str | None, hooked: bool = False) -> None:
        for hook in () if hooked else self._hooks:
            chunk = hook(chunk, self._hook_state)
            if chunk is None:
                return
        if chunk.get("error") is not None or name == "error":
            self._upstream_error(chunk)
            return
        usage = chunk.get("usage")
        if usage:
            self._usage_raw = usage
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            if type(choice) is not dict:
                return
            delta = choice.get("delta")
            if delta and type(delta) is dict:
                reasoning = None
                for field in self._fields:
                    reasoning = delta.get(field)
                    if reasoning is not None:
                        break
                if reasoning:
                    if type(reasoning) is str:
                        self._reasoning(reasoning)
                    else:
                        self._reasoning(_as_text(reasoning))
                annotations = delta.get("annotations")
                if annotations:
                    self._annotations_in(annotations)
                content = delta.get("content")
                if content:
                    if type(content) is str:
                        self._text(content)
                    else:
                        self._text(_as_text(content))
                calls = delta.get("tool_calls")
                if calls:
                    for call in calls:
                        self._tool(call)
            finish = choice.get("finish_reason")
            if finish:
                self._finish_reason = finish
        elif usage and self._finish_reason is not None:
            # The usage chunk is the last one MiMo sends after the finish chunk: no need to wait for [DONE].
            self._terminal_from_finish()

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

    # ---------------------------------------------------------------- reasoning / text

    def _reasoning(self, text: str) -> None:
        if not text:
            return
        if self._calls:
            self._late_reasoning.append(text)
            return
        if self._open != "reasoning":
            self._close_display("completed")
            self._open_reasoning()
        self._parts.append(text)
        if self._show:
            self._out.append(self._tmpl.render(self._next(), text))  # type: ignore[union-attr]

    def _text(self, text: str) -> None:
        if not text:
            return
        if self._calls:
            self._late_text.append(text)
            return
        if self._open != "message":
            self._close_display("completed")
            self._open_message()
        self._parts.append(text)
        self._out.append(self._tmpl.render(self._next(), text))  # type: ignore[union-attr]

    def _reserve(self) -> int:
        self._output.append(None)
        return len(self._output) - 1

    def _open_reasoning(self) -> None:
        iid, idx = new_id("rs"), self._reserve()
        self._open, self._item_id, self._out_idx, self._parts = "reasoning", iid, idx, []
        self._emit("response.output_item.added", {"output_index": idx, "item": {"id": iid, "type": "reasoning", "summary": []}})
        if self._show:
            where = {"item_id": iid, "output_index": idx, "summary_index": 0}
            self._emit("response.reasoning_summary_part.added", {**where, "part": {"type": "summary_text", "text": ""}})
            self._tmpl = DeltaTemplate("response.reasoning_summary_text.delta", where)

    def _open_message(self) -> None:
        iid, idx = new_id("msg"), self._reserve()
        self._open, self._item_id, self._out_idx, self._parts = "message", iid, idx, []
        self._emit(
            "response.output_item.added",
            {"output_index": idx, "item": {"id": iid, "type": "message", "status": "in_progress", "role": "assistant", "content": []}},
        )
        where = {"item_id": iid, "output_index": idx, "content_index": 0}
        self._emit("response.content_part.added", {**where, "part": {"type": "output_text", "text": "", "annotations": []}})
        self._tmpl = DeltaTemplate("response.output_text.delta", where, after={"logprobs": []})

    def _close_display(self, status: str) -> None:
        kind = self._open
        if kind is None:
            return
        self._open = None
        text = "".join(self._parts)
        self._parts = []
        iid, idx = self._item_id, self._out_idx
        item = self._display_item(kind, iid, text, status)
        if kind == "reasoning":
            where = {"item_id": iid, "output_index": idx, "summary_index": 0}
            if self._show:
                self._emit("response.reasoning_summary_text.done", {**where, "text": text})
                self._emit("response.reasoning_summary_part.done", {**where, "part": {"type": "summary_text", "text": text}})
        else:
            where = {"item_id": iid, "output_index": idx, "content_index": 0}
            part = item["content"][0]
            for n, ann in enumerate(part["annotations"]):
                self._emit("response.output_text.annotation.added", {**where, "annotation_index": n, "annotation": ann})
            self._emit("response.output_text.done", {**where, "text": text, "logprobs": []})
            self._emit("response.content_part.done", {**where, "part": part})
        self._output[idx] = item
        self._emit("response.output_item.done", {"output_index": idx, "item": item})

    def _display_item(self, kind: str, iid: str, text: str, status: str) -> dict:
        if kind == "reasoning":
            summary = [{"type": "summary_text", "text": text}] if self._show else []
            return {"id": iid, "type": "reasoning", "summary": summary, "encrypted_content": envelope.seal(text)}
        part = {"type": "output_text", "text": text, "annotations": self._take_annotations(len(text))}
        return {"id": iid, "type": "message", "status": status, "role": "assistant", "content": [part]}

    def _whole_item(self, kind: str, text: str, status: str) -> None:
        """A reasoning or message item emitted in one go (text that arrived after the tool calls)."""
        if self._abandoned:
            # A cut-off call was opened and left without its done event; opening another item
            # after it would interleave, so this one goes into the record only.
            idx = self._reserve()
            self._output[idx] = self._display_item(kind, new_id("rs" if kind == "reasoning" else "msg"), text, status)
            return
        if kind == "reasoning":
            self._open_reasoning()
        else:
            self._open_message()
        self._parts = [text]
        if kind == "message" or self._show:
            self._out.append(self._tmpl.render(self._next(), text))  # type: ignore[union-attr]
        self._close_display(status)

    def _annotations_in(self, annotations: Any) -> None:
        if not isinstance(annotations, list):
            return
        for a in annotations:
            if isinstance(a, dict):
                url = a.get("url") or (a.get("url_citation") or {}).get("url")
                if url:
                    src = a.get("url_citation") if isinstance(a.get("url_citation"), dict) else a
                    self._annotations.append({"url": str(url), "title": str(src.get("title") or src.get("site_name") or url)})

    def _take_annotations(self, end: int) -> list[dict]:
        if not self._annotations:
            return []
        taken, self._annotations = self._annotations, []
        # MiMo gives sources without positions: cite them at the end of the text.
        return [{"type": "url_citation", "url": a["url"], "title": a["title"], "start_index": end, "end_index": end} for a in taken]

    # ---------------------------------------------------------------- tool calls

    def _tool(self, frag: Any) -> None:
        if not isinstance(frag, dict) or self.done:  # done: an earlier fragment of this chunk failed the response
            return
        fn = frag.get("function")
        if not isinstance(fn, dict):
            fn = {}
        idx = frag.get("index")
        cid = frag.get("id")
        if not isinstance(idx, int) or isinstance(idx, bool):
            idx = next((c.index for c in self._calls.values() if cid and c.call_id == cid), None)
            if idx is None:
                if cid or not self._calls:
                    idx = max(self._calls, default=-1) + 1
                else:
                    idx = max(self._calls)
        call = self._calls.get(idx)
        new = call is None
        if new:
            self._close_display("completed")
            call = self._calls[idx] = _Call(idx)
        elif call.state == "closed":
            piece = fn.get("arguments")
            if isinstance(piece, str) and piece.strip():
                self._warn(f"ignored arguments sent after tool call {call.name!r} was complete: {piece[:80]!r}")
            return
        if cid and not call.call_id:
            call.call_id = str(cid)
        name = fn.get("name")
        named = False
        if name and not call.name:
            call.name = str(name)
            named = True
        piece = fn.get("arguments")
        if piece is not None and not isinstance(piece, str):
            piece = json.dumps(piece, ensure_ascii=False)
        if piece:
            call.parts.append(piece)
            if call.state == "live" and call.tmpl is not None:
                self._out.append(call.tmpl.render(self._next(), piece))
        if new or named:
            self._schedule(new)

    def _kind(self, name: str) -> str:
        t = self.turn
        if name in t.custom_tools:
            return "custom"
        if name in t.namespaces:
            return "namespace"
        if t.local_shell and name == t.local_shell:
            return "local_shell"
        return "function"

    def _schedule(self, new_call: bool) -> None:
        """Pick the call streamed live; close the live one early when a new call shows it is whole."""
        while True:
            live = self._live
            if live is not None:
                if not new_call or not any(c.state == "pending" for c in self._calls.values()):
                    return
                if not complete_json("".join(live.parts)):
                    return
                try:
                    built = self._build(live, "completed")  # whole JSON: cannot need repair
                except _BadCall as exc:
                    self._end("failed", code="server_error", message=str(exc))
                    return
                self._finish_call(live, built)
            nxt = min((c for c in self._calls.values() if c.state == "pending" and c.name), key=lambda c: c.index, default=None)
            if nxt is None:
                return
            self._go_live(nxt)

    def _go_live(self, call: _Call) -> None:
        self._live = call
        call.state = "live"
        call.kind = self._kind(call.name or "")
        if not call.call_id:
            call.call_id = new_id("call")
        if call.kind == "local_shell":
            return  # its item is only known once the arguments are decoded
        self._open_call(call)
        if call.kind in ("function", "namespace"):
            call.tmpl = DeltaTemplate("response.function_call_arguments.delta", {"item_id": call.item_id, "output_index": call.out_idx})
            buffered = "".join(call.parts)
            if buffered:
                self._out.append(call.tmpl.render(self._next(), buffered))

    def _open_call(self, call: _Call) -> None:
        call.out_idx = self._reserve()
        if call.kind == "custom":
            call.item_id = call.item_id or new_id("ctc")
            item = {"id": call.item_id, "type": "custom_tool_call", "status": "in_progress", "call_id": call.call_id, "name": call.name, "input": ""}
        else:
            call.item_id = call.item_id or new_id("fc")
            item = {"id": call.item_id, "type": "function_call", "status": "in_progress", "call_id": call.call_id, "name": call.name, "arguments": ""}
            if call.kind == "namespace":
                ns, inner = self.turn.namespaces[call.name]
                item.update(name=inner, namespace=ns)
        self._emit("response.output_item.added", {"output_index": call.out_idx, "item": item})

    def _build(self, call: _Call, terminal: str) -> tuple[dict, bool]:
        """(item, whole): the Responses item for a finished call; whole=False when its arguments were
        cut off or unusable (only allowed when the response does not complete). Raises _BadCall."""
        name = call.name or ""
        kind = call.kind or self._kind(name)
        raw = "".join(call.parts)
        args, repaired, err = _fix_args(raw)
        whole = args is not None and not repaired
        if not whole and terminal == "completed":
            if repaired:
                self._warn(f"repaired invalid JSON arguments of tool {name!r} ({err})")
                whole = True
            elif kind == "custom" and not raw.lstrip().startswith(("{", "[")):
                whole = True  # the model wrote the freeform text itself instead of a JSON object
            else:
                raise _BadCall(f"{self._provider()} produced invalid JSON arguments for tool {name!r}: {err}")
        status = "completed" if whole else "incomplete"
        iid = call.item_id or new_id({"custom": "ctc", "local_shell": "lsh"}.get(kind, "fc"))
        call.item_id = iid
        cid = call.call_id or new_id("call")
        if kind == "custom":
            text = self._custom_input(name, raw, args, strict=whole)
            return {"id": iid, "type": "custom_tool_call", "status": status, "call_id": cid, "name": name, "input": text}, whole
        if kind == "local_shell":
            action = self._shell_action(name, args, strict=whole)
            return {"id": iid, "type": "local_shell_call", "status": status, "call_id": cid, "action": action}, whole
        item = {"id": iid, "type": "function_call", "status": status, "call_id": cid, "name": name, "arguments": args if args is not None else raw}
        if kind == "namespace":
            ns, inner = self.turn.namespaces[name]
            item.update(name=inner, namespace=ns)
        return item, whole

    def _custom_input(self, name: str, raw: str, args: str | None, strict: bool) -> str:
        if args is None:
            return raw
        value = json.loads(args)
        param = self.turn.custom_param
        if isinstance(value, dict):
            text = value.get(param)
            if isinstance(text, str):
                return text
            strings = [v for v in value.values() if isinstance(v, str)]
            if len(strings) == 1:
                return strings[0]
        if strict:
            raise _BadCall(f"tool {name!r} was called without its string parameter {param!r}: {args[:200]}")
        return ""

    def _shell_action(self, name: str, args: str | None, strict: bool) -> dict:
        value: Any = {}
        if args is not None:
            value = json.loads(args)
        if not isinstance(value, dict):
            value = {}
        cmd = value.get("command", value.get("cmd"))
        if isinstance(cmd, str):
            cmd = ["bash", "-lc", cmd]
        if not (isinstance(cmd, list) and cmd and all(isinstance(c, (str, int, float)) for c in cmd)):
            if strict:
                raise _BadCall(f"tool {name!r} was called without a command: {(args or '')[:200]}")
            cmd = []
        action: dict[str, Any] = {"type": "exec", "command": [str(c) for c in cmd]}
        env = value.get("env")
        action["env"] = {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}
        cwd = value.get("workdir", value.get("working_directory", value.get("cwd")))
        if isinstance(cwd, str) and cwd:
            action["working_directory"] = cwd
        timeout = value.get("timeout_ms", value.get("timeout"))
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
            action["timeout_ms"] = int(timeout)
        user = value.get("user")
        if isinstance(user, str) and user:
            action["user"] = user
        return action

    def _finish_call(self, call: _Call, built: tuple[dict, bool]) -> None:
        """Emit the closing events of a call (opening it first if it was buffered)."""
        item, whole = built
        call.state = "closed"
        if self._live is call:
            self._live = None
        if not whole:
            # Cut short: never hand it to Codex (it would run it); keep it for the record only.
            item["status"] = "incomplete"
            if call.out_idx >= 0:
                self._abandoned = True
            if call.out_idx < 0:
                call.out_idx = self._reserve()
            self._output[call.out_idx] = item
            return
        kind = call.kind or self._kind(call.name or "")
        call.kind = kind
        if call.out_idx < 0:
            call.call_id = item["call_id"]
            if kind == "local_shell":
                call.out_idx = self._reserve()
                self._emit("response.output_item.added", {"output_index": call.out_idx, "item": dict(item, status="in_progress")})
            else:
                self._open_call(call)
        idx, iid = call.out_idx, call.item_id
        if kind == "custom":
            self._emit("response.custom_tool_call_input.delta", {"item_id": iid, "output_index": idx, "delta": item["input"]})
            self._emit("response.custom_tool_call_input.done", {"item_id": iid, "output_index": idx, "input": item["input"]})
        elif kind in ("function", "namespace"):
            args = item["arguments"]
            if call.tmpl is None and args:  # buffered until now: its arguments in one delta
                self._emit("response.function_call_arguments.delta", {"item_id": iid, "output_index": idx, "delta": args})
            self._emit("response.function_call_arguments.done", {"item_id": iid, "output_index": idx, "name": item["name"], "arguments": args})
        self._output[idx] = item
        self._tool_names.append(f"{item['namespace']}.{item['name']}" if item.get("namespace") else item.get("name") or "local_shell")
        self._emit("response.output_item.done", {"output_index": idx, "item": item})

    def _close_calls(self, terminal: str) -> None:
        """Close every open call: live first, then the buffered ones in index order. For a completed
        response all are checked before any is emitted, so a bad one fails the whole set."""
        order = []
        if self._live is not None:
            order.append(self._live)
        order += sorted((c for c in self._calls.values() if c.state == "pending"), key=lambda c: c.index)
        for call in [c for c in order if not c.name]:
            # Never named: nothing a client could run. Dropped rather than sent as a nameless call.
            self._warn(f"dropped a tool call without a name (arguments {''.join(call.parts)[:80]!r})")
            call.state = "closed"
            order.remove(call)
        if not order:
            return
        if terminal == "failed":
            for call in order:
                call.kind = call.kind or self._kind(call.name or "")
                try:
                    item, _ = self._build(call, "failed")
                except _BadCall:
                    call.state = "closed"
                    if self._live is call:
                        self._live = None
                    continue
                self._finish_call(call, (item, False))
            return
        built = []
        for call in order:
            call.kind = call.kind or self._kind(call.name or "")
            built.append((call, self._build(call, terminal)))  # may raise _BadCall
        for call, b in built:
            self._finish_call(call, b)

    # ---------------------------------------------------------------- endings

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
        self._emit(f"response.{status}", {"response": self._final})


def _as_text(value: Any) -> str:
    """Text of a content value that is not a plain string (a list of parts, say)."""
    if isinstance(value, list):
        return "".join(p.get("text") or "" if isinstance(p, dict) else str(p) for p in value)
    return "" if value is None else str(value)


def translate_body(turn: Turn, rules: Any, body: bytes, content_type: str = "") -> tuple[bytes, ResponsesStream]:
    """A whole upstream body -> (Responses SSE bytes, the finished stream: .response, .summary).

    Handles a Chat SSE body (replayed flows, clients that did not stream) and a non-stream
    `chat.completion` JSON, which goes through the same state machine as one chunk.
    """
    stream = ResponsesStream(turn, rules)
    head = (body or b"").lstrip()[:6]
    if "event-stream" in (content_type or "").lower() or head.startswith((b"data:", b"event:", b":", b"id:")):
        out = stream.feed(body or b"") + stream.finish()
    else:
        try:
            obj = json.loads(body) if body else None
        except ValueError:
            obj = None
        if obj is None:
            out = stream.fail("server_error", f"The {stream._provider()} answer was neither an event stream nor JSON.")
        else:
            out = stream.feed_completion(obj)
    return out, stream
