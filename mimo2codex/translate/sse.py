"""Server-sent events both ways: an incremental parser for the provider's Chat stream and a cheap
encoder for the Responses events we send back.

The parser works on bytes and only ever cuts at line ends, so a UTF-8 character split across two
upstream reads is reassembled before anything is decoded (json.loads takes the bytes as they are).
The encoder is on the hot path (one call per upstream token): full events are serialised once,
deltas go through a pre-rendered template where only the sequence number and the delta string
are filled in (see mitmproxy-notes §10 for the budget).
"""

from __future__ import annotations

import itertools
import json
from json.encoder import encode_basestring
from typing import Any, Iterator

DONE = b"[DONE]"
_NONE = itertools.repeat(None)  # the event name of frames without an `event:` line

# ----------------------------------------------------------------------------------------------
# Parsing


class SSEParser:
    """Feed raw bytes, get back complete events as (event name or None, data bytes).

    Accepts `data:` with or without the space, multi-line data (joined with "\\n"), `event:`,
    `id:`, `retry:` and comment lines, LF / CRLF / CR line ends, and frames split or merged at any
    byte. The data of `[DONE]` is returned like any other (compare with DONE).
    """

    __slots__ = ("_buf", "_data", "_event", "_cr", "idle")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._data: list[bytes] = []
        self._event: str | None = None
        self._cr = False  # the previous feed ended on "\r": a "\n" opening this one belongs to it
        # True between frames, nothing half-read waiting for more bytes. An attribute, not a method:
        # the stream's fast path asks once per upstream chunk.
        self.idle = True

    def feed(self, data: bytes) -> list[tuple[str | None, bytes]]:
        if not data:
            return []
        if (
            data[:5] == b"data:"
            and data[-2:] == b"\n\n"
            and not self._buf
            and not self._data
            and not self._cr
            and self._event is None
            and b"\r" not in data
        ):
            # The usual read: whole `data: ...` (or `data:...`, as some providers write it) frames and nothing else.
            lead = 6 if data[5:6] == b" " else 5
            body = data[lead:-2]
            frames = body.split(b"\n\n" + data[:lead])
            # Each frame one line (no line end but the separators), all written alike (with the space
            # or all without): checked in C, no Python loop over the frames.
            if body.count(b"\n") == 2 * len(frames) - 2 and (lead == 6 or b"\n\ndata: " not in data):
                return list(zip(_NONE, frames))  # idle before, idle after
        if self._cr:
            self._cr = False
            if data[:1] == b"\n":
                data = data[1:]
        if b"\r" in data:
            if data[-1:] == b"\r":
                self._cr = True
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = data.rfind(b"\n")
        if end < 0:
            self._buf += data
            out = []
        else:
            if self._buf:
                self._buf += data[: end + 1]
                block = bytes(self._buf)
                self._buf = bytearray(data[end + 1 :])
            else:
                block = data[: end + 1]
                if end + 1 < len(data):
                    self._buf += data[end + 1 :]
            out = self._lines(block.split(b"\n")[:-1])
        self.idle = not self._buf and not self._data and not self._cr and self._event is None
        return out

    def resume(self, data: bytes) -> bytes | None:
        """The start of a line held back from the last feed, handed back, followed by `data`: for a
        caller that reads whole frames itself and feeds the parser what it leaves. None (nothing
        handed back) when more is held: a frame's earlier lines, an `event:`, a "\\r" whose "\\n" may follow."""
        if self._data or self._event is not None or self._cr:
            return None
        held = bytes(self._buf)
        self._buf.clear()
        self.idle = True
        return held + data

    def close(self) -> list[tuple[str | None, bytes]]:
        """End of input: an unterminated last line and a frame without its blank line still count."""
        lines = [bytes(self._buf)] if self._buf else []
        self._buf = bytearray()
        self._cr = False
        lines.append(b"")
        self.idle = True  # the blank line appended ends any frame
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[tuple[str | None, bytes]]:
        out: list[tuple[str | None, bytes]] = []
        data = self._data
        for line in lines:
            if line[:6] == b"data: ":
                data.append(line[6:])
            elif line[:5] == b"data:":  # other providers write no space: not worth the general field split
                data.append(line[5:])
            elif not line:
                if data:
                    out.append((self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data.clear()
                self._event = None
            elif line[:1] == b":":
                continue
            else:
                name, sep, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    data.append(value)
                elif name == b"event":
                    self._event = value.decode("utf-8", "replace")
                # id / retry / unknown fields: nothing we act on
        return out


def payloads(body: bytes) -> list[bytes]:
    """The data of every event in a complete SSE body."""
    parser = SSEParser()
    return [d for _, d in parser.feed(body) + parser.close()]


def iter_events(body: bytes) -> Iterator[dict]:
    """The JSON events of a complete SSE body (e.g. our own Responses output); [DONE] and
    non-JSON data are skipped."""
    for data in payloads(body):
        if data.strip() == DONE:
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj


def strip_data_prefix(body: bytes) -> bytes:
    """A body that may be SSE framed (`data:{...}` / `data: {...}`, as MiMo sends errors on stream
    requests) reduced to its first payload; anything else unchanged apart from outer whitespace."""
    text = body.strip()
    if text[:5] in (b"data:", b"event") or text[:1] == b":":
        found = [p for p in payloads(text) if p.strip() and p.strip() != DONE]
        if found:
            return found[0].strip()
    return text


# ----------------------------------------------------------------------------------------------
# Encoding

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _clean(text: str) -> str:
    """Pair up surrogate halves that arrived in separate pieces; replace lone ones."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def dumps(obj: Any) -> bytes:
    try:
        return _ENCODER.encode(obj).encode()
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode()


def dump_str(text: str) -> bytes:
    """JSON string literal for one delta (the hot path)."""
    try:
        return encode_basestring(text).encode()
    except UnicodeEncodeError:
        return encode_basestring(_clean(text)).encode()


def taken(out: list[bytes]) -> bytes:
    """The bytes of one translator call, its list emptied: the translator keeps the list until its
    next call, and a burst's rendered events would stay in memory that long (every flow at once)."""
    data = out[0] if len(out) == 1 else b"".join(out)
    out.clear()
    return data


_LEAD = ("id", "object", "created_at", "status", "model", "output")  # response_object's own facts, in its order
_LAST = ("usage", "error", "incomplete_details")


def response_event(etype: str, seq: int, resp: dict, echo: list[bytes]) -> bytes:
    """`event(etype, seq, {"response": resp})` for a response_object, with the request fields it
    echoes dumped once per turn into `echo` (Codex's `tools` alone is ~18 KB: ~80 µs a dump, and a
    turn sends the Response three times or more: created, in_progress, each keep-alive, the end)."""
    if not echo:
        echo.append(dumps({k: v for k, v in resp.items() if k not in _LEAD and k not in _LAST})[1:-1])
    lead = dumps({k: resp[k] for k in _LEAD})
    last = dumps({k: resp[k] for k in _LAST})
    return (b"event: " + etype.encode() + b'\ndata: {"type":' + dump_str(etype) + b',"sequence_number":%d,"response":' % seq
            + lead[:-1] + b"," + echo[0] + b"," + last[1:] + b"}\n\n")


def event(etype: str, seq: int, fields: dict) -> bytes:
    """One Responses event: `event: <type>` + `data: {"type","sequence_number",...fields}`."""
    body = {"type": etype, "sequence_number": seq}
    body.update(fields)
    return b"event: " + etype.encode() + b"\ndata: " + dumps(body) + b"\n\n"


class DeltaTemplate:
    """A delta event pre-rendered around two holes: the sequence number and the delta string.

    `render(seq, text)` costs one string escape and one bytes format instead of a dict build and
    a full json.dumps per token.
    """

    __slots__ = ("_tmpl", "_piece", "_pair")

    def __init__(self, etype: str, before: dict, key: str = "delta", after: dict | None = None) -> None:
        head = dumps(before)[1:-1].replace(b"%", b"%%")
        tail = dumps(after)[1:-1].replace(b"%", b"%%") if after else b""
        start = (b"event: " + etype.encode() + b'\ndata: {"type":' + dump_str(etype) + b',"sequence_number":%d'
                 + (b"," + head if head else b"") + b',"' + key.encode() + b'":')
        end = (b"," + tail if tail else b"") + b"}\n\n"
        self._tmpl = start + b"%b" + end
        self._piece = start + b'"%b"' + end
        self._pair = self._piece * 2

    def render(self, seq: int, text: str) -> bytes:
        return self._tmpl % (seq, dump_str(text))

    def render_piece(self, seq: int, piece: bytes) -> bytes:
        """The same for a delta whose UTF-8 needs no escape (no quote, backslash or control
        character), copied as is between the quotes."""
        return self._piece % (seq, piece)

    def render_pieces(self, seq: int, pieces: list[bytes]) -> bytes:
        """render_piece for consecutive deltas numbered from `seq`, in one call (one or two pieces,
        the usual counts per read, with one format: map and zip cost more than they save there)."""
        if len(pieces) == 1:
            return self._piece % (seq, pieces[0])
        if len(pieces) == 2:
            return self._pair % (seq, pieces[0], seq + 1, pieces[1])
        return b"".join(map(self._piece.__mod__, zip(range(seq, seq + len(pieces)), pieces)))


# ----------------------------------------------------------------------------------------------
# The Response object every lifecycle event carries


def usage_from_chat(usage: Any) -> dict | None:
    """Chat `usage` -> Responses `usage` (None when the provider sent none). Providers that keep
    the counts elsewhere are normalised before this by the rules' `response.usage` chunk hook."""
    if not isinstance(usage, dict):
        return None

    def num(d: Any, key: str) -> int:
        v = d.get(key) if isinstance(d, dict) else None
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0

    inp, out = num(usage, "prompt_tokens"), num(usage, "completion_tokens")
    return {
        "input_tokens": inp,
        # cache_write_tokens: the openai SDK types require it; providers do not report it.
        "input_tokens_details": {"cached_tokens": num(usage.get("prompt_tokens_details"), "cached_tokens"), "cache_write_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": num(usage.get("completion_tokens_details"), "reasoning_tokens")},
        "total_tokens": num(usage, "total_tokens") or inp + out,
    }


def response_object(turn: Any, status: str, output: list | None = None, *, usage: dict | None = None,
                    error: dict | None = None, incomplete_details: dict | None = None) -> dict:
    """The Response object for `turn`: our own facts, then the request fields it echoes."""
    resp: dict[str, Any] = {
        "id": turn.response_id,
        "object": "response",
        "created_at": turn.created_at,
        "status": status,
        "model": turn.model,
        "output": output if output is not None else [],
    }
    # Required by the Response schema; the request side's echo (turn.echo) says what was asked.
    for key, value in (("parallel_tool_calls", True), ("tool_choice", "auto"), ("tools", []), *(turn.echo or {}).items()):
        if key not in _OWN:
            resp[key] = value
    resp["usage"] = usage
    resp["error"] = error
    resp["incomplete_details"] = incomplete_details
    return resp


_OWN = frozenset({"id", "object", "created_at", "status", "model", "output", "usage", "error", "incomplete_details"})
