"""The stream fast path for any provider's framing: a payload template learnt from the general path.

A mixin of ResponsesStream (stream.py). The MiMo byte patterns in stream.py (_PIECES) know only
MiMo's key order and explicit nulls; other OpenAI-compatible servers (no nulls, `index` and
`logprobs` in the choice, more envelope, `data:` without a space, events split across reads) would
take the JSON parser on every chunk. So the first frame of an item the general path finds to be one
plain piece teaches a template, the payload bytes around that piece (_learn); later payloads with
the same two ends skip the parser (_learned_piece). It works on payloads, after the SSE parser, so
also on frames split across reads. Once used, the template is compiled as whole frames (frames(),
`self._frames`) and whole runs of them are translated per read, a few calls whatever their number,
before the parser sees them (_learned_run; a frame the read cuts off waits in `self._held`). All
ways give the same bytes after the same reads (tests/test_stream.py). The state is set up in
ResponsesStream.__init__.
"""

from __future__ import annotations

import re

SPECIAL = re.compile(rb'[\x00-\x1f"\\]')  # a piece with any of these is decoded (and checked) as JSON
# A piece as the frame reader copies it: none of the bytes SPECIAL lists, not empty, not starting with
# a UTF-8 continuation byte. Pieces that each start a character and decode as a whole each decode alone.
PIECE = rb'[^"\\\x00-\x1f\x80-\xbf][^"\\\x00-\x1f]*'


def frames(kind: str, head: bytes, tail: bytes, key: bytes, show: bool) -> tuple:
    """The template as whole frames (_learned_run): its kind, a regex finding every piece after
    `key` (the field's name as the template writes it, up to the piece), whether pieces are shown,
    and for each way of writing `data:` (without, with the space) what precedes a piece, what
    follows it, what lies between two, and where the regex first matches in a run of frames."""
    end = tail + b"\n\n"
    # The regex searches for its first byte, then checks the rest: the fewer times that byte occurs
    # in a frame, the fewer false starts. The key (with a bit of head before it, if that starts
    # with a rarer byte) occurs once per frame of the template.
    frame = head + tail
    at = min(range(max(0, len(head) - len(key) - 16), len(head) - len(key) + 1), key=lambda i: (frame.count(head[i : i + 1]), -i))
    find = re.compile(re.escape(head[at:]) + b"(" + PIECE + b')"').findall
    bare, spaced = ((lead + head, end, end + lead + head, len(lead) + at) for lead in (b"data:", b"data: "))
    return kind, find, show, bare, spaced


class LearntTemplate:
    """Mixin of ResponsesStream: learn a plain-piece payload template, then translate by it."""

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
        if SPECIAL.search(raw) is not None:
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
        self._learned = (kind, head, tail, len(head) + len(tail), payload[at:start])
        self._frames = None  # compiled once the template has been used (_learned_piece): some envelopes change every chunk

    def _learned_piece(self, learned: tuple[str, bytes, bytes, int, bytes], payload: bytes, data: bytes, idle: bool) -> bool:
        """Translate a payload matching the learnt template; False leaves it to the general path."""
        kind, head, tail, _, key = learned
        piece = payload[len(head) : len(payload) - len(tail)]
        if SPECIAL.search(piece) is not None:
            return False
        try:
            self._parts.append(piece.decode())
        except ValueError:
            return False
        if self._frames is None and b"\n" not in payload:
            self._frames = frames(kind, head, tail, key, kind == "message" or self._show)
        if idle and len(data) - len(payload) in (7, 8) and data.endswith(payload + b"\n\n"):
            lead = data[: len(data) - len(payload) - 2]
            if lead in (b"data: ", b"data:"):  # the read was this one frame: next time skip the parser too
                self._same = (kind, lead + head, tail + b"\n\n", len(lead) + len(head) + len(tail) + 2)
        if kind == "message" or self._show:
            seq = self._seq  # self._next() inline: once per event of such a stream
            self._seq = seq + 1
            self._out.append(self._tmpl.render_piece(seq, piece))  # type: ignore[union-attr]
        return True

    def _learned_run(self, frames: tuple, data: bytes) -> bytes:
        """Translate the leading frames of the read (after what the last one left) that fit the learnt
        template, all at once; what is left for the parser (then between frames).

        One regex finds the pieces (no escape), the frames they would make are compared with the
        read's bytes in one go, they are rendered with one call: a few calls per read instead of a
        parse (or a template check) per frame. The first frame of another shape and the rest of the
        read go the usual way. A frame cut off by the end of the read is kept here, not in the parser,
        for the next read to complete (finish hands it over); the read-level shortcut is off meanwhile.
        """
        kind, find, show, bare, spaced = frames
        held = self._held
        if held:
            data = held + data
            self._held = b""
        elif not self._parser.idle:  # it went the usual way so far: take over what the parser holds
            joined = self._parser.resume(data)
            if joined is None:
                return data
            data = joined
        start, end, between, first = spaced if data[5:6] == b" " else bare
        pieces = find(data, first)
        if not pieces:
            return data
        # removeprefix rather than startswith and a slice: one call less, and a quick one (bytes.startswith,
        # find and count parse their arguments the slow way; `in` even formats a TypeError first).
        rest = data.removeprefix(start + between.join(pieces) + end)
        if rest is data:  # the last frame is cut off by the end of the read, or another frame is in the way
            pieces.pop()
            if not pieces:
                return data
            rest = data.removeprefix(start + between.join(pieces) + end)
            if rest is data:
                return data
        try:
            self._parts.append(b"".join(pieces).decode())
        except ValueError:
            return data
        if show:
            seq = self._seq
            self._seq = seq + len(pieces)
            self._out.append(self._tmpl.render_pieces(seq, pieces))  # type: ignore[union-attr]
        if rest and not rest.partition(b"\n")[1] and not rest.partition(b"\r")[1]:
            self._held = rest
            self._same = None
            return b""
        return rest
