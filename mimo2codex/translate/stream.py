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

This file holds the intake: bytes -> SSE events -> chunks, with the byte-level fast path for plain
reasoning/text chunks (it must give the same bytes as the general path), the public API and the
plumbing every part emits through. The output items are built by mixins, each in its own file:
stream_text.py (reasoning and message items), stream_tools.py (tool calls), stream_end.py
(completed / incomplete / failed), stream_body.py (a non-stream completion as one chunk);
stream_learn.py holds the fast path for other providers' framing (a template learnt per stream).
"""

from __future__ import annotations

import json
import json.scanner
import re
from typing import Any

from mimo2codex.translate.hooks import REGISTRY
from mimo2codex.translate.sse import DONE, DeltaTemplate, SSEParser, event, response_object, taken
from mimo2codex.translate.stream_body import WholeBody
from mimo2codex.translate.stream_end import Endings
from mimo2codex.translate.stream_learn import SPECIAL as _SPECIAL, LearntTemplate
from mimo2codex.translate.stream_text import DisplayItems, _as_text
from mimo2codex.translate.stream_tools import ToolCalls, _Call
from mimo2codex.translate.turn import Turn

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


# ----------------------------------------------------------------------------------------------


class ResponsesStream(DisplayItems, ToolCalls, Endings, WholeBody, LearntTemplate):
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
        # a plain piece (stream_learn.py): kind, that payload's bytes around the piece, their length.
        self._learned: tuple[str, bytes, bytes, int, bytes] | None = None
        self._frames: tuple | None = None  # that template as whole frames (stream_learn.py)
        self._held = b""  # the start of a frame the last read cut off, when they go that way

        self._show = bool(turn.show_reasoning)
        self._parser = SSEParser()
        self._seq = 0
        self._out: list[bytes] = []
        self._started = False
        self._ending = False
        self.done = False
        self._final: dict | None = None
        self._echo: list[bytes] = []  # the Response's echoed request fields as JSON (sse.response_event)

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
                and self._open == same[0] and not self._calls and self._parser.idle):
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
                    seq = self._seq  # self._next(), one call less on the hottest line
                    self._seq = seq + 1
                    return self._tmpl.render_piece(seq, piece)  # type: ignore[union-attr]
        out = self._out = []
        try:
            if not self._started:
                self._start()
            frames, rest = self._frames, data
            if frames is not None and self._open == frames[0] and not self._calls:
                rest = self._learned_run(frames, data)  # what the parser still has to read
            if self._fast and self._parser.idle and rest and (rest is data or rest[-2:] == b"\n\n"):
                used = self._plain(rest)
                rest = rest[used:]
            if not rest:
                return taken(out)
            data = rest
            idle = self._parser.idle
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
        return taken(out)

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
                    plain = _SPECIAL.search(piece) is None
                    text = piece.decode() if plain else json.loads(b'"' + piece + b'"')
                except ValueError:
                    break  # bad UTF-8, escape or quote: the general path warns about it
                self._parts.append(text)
                if pos == 0 and stop == end and plain:
                    self._same = (kind, data[:start], data[close:], start + end - close)
                if kind == "message" or self._show:
                    tmpl = self._tmpl
                    self._out.append(tmpl.render_piece(self._next(), piece) if plain else tmpl.render(self._next(), text))  # type: ignore[union-attr]
            pos = stop
        return pos

    def finish(self) -> bytes:
        if self.done:
            return b""
        out = self._out = []
        try:
            self._start()
            self._parser.feed(self._held)  # no line end in it: held back by the parser too, then closed
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
        return taken(out)

    def keepalive(self) -> bytes:
        """Events for a client waiting while the provider is silent: the stream's start, then repeats
        of `response.in_progress` (Codex and the SDKs ignore them but they reset Codex's idle timer,
        which SSE comments do not)."""
        if self.done:
            return b""
        out = self._out = []
        if self._started:
            self._emit_response("response.in_progress", response_object(self.turn, "in_progress"))
        else:
            self._start()
        return taken(out)

    def fail(self, code: str, message: str) -> bytes:
        if self.done:
            return b""
        out = self._out = []
        try:
            self._start()
            self._end("failed", code=code or "server_error", message=message or "upstream failure")
        except Exception as exc:
            self._crash(exc)
        return taken(out)

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
        self._emit_response("response.created", resp)
        self._emit_response("response.in_progress", resp)

    def _warn(self, text: str) -> None:
        if len(self.warnings) < 20:
            self.warnings.append(text)

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


def translate_body(turn: Turn, rules: Any, body: bytes, content_type: str = "") -> tuple[bytes, ResponsesStream]:
    """A whole upstream body -> (Responses SSE bytes, the finished stream: .response, .summary)."""
    stream = ResponsesStream(turn, rules)
    return stream.whole(body, content_type), stream
