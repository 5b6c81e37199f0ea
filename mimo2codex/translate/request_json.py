"""The request's JSON both ways, without escaping again what the client already escaped.

A large Codex request is mostly a few hundred long strings (tool outputs, pasted files, the
instructions). Encoding them again for the provider was the largest cost of the request hook
(~17 of 26 ms at 4 MB: the C encoder escapes every newline of every tool output once more).
`loads` parses a body exactly as `json.loads` does and also notes where in the raw bytes each
long string of the body and of its input items was written; `encode` serialises the Chat payload
and, where a value is one of those very string objects (still the same object: untouched by the
mapping, the rules and the hooks), copies the client's bytes instead of encoding it.

The walk runs over the body decoded as Latin-1 (one character per byte), so its offsets are byte
offsets: JSON's structure is ASCII and every byte of a multi-byte UTF-8 character is >= 0x80, so
the structure reads the same, and only values holding raw non-ASCII bytes are decoded again from
UTF-8 (a long literal with such bytes near its start: only from UTF-8, its end found by a few
searches for its closing quote). Anything the walk does not expect (invalid JSON, other encodings)
falls back to `json.loads`, which then gives its own answer or error.
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring
from typing import Any, Callable

from mimo2codex.translate.sse import dumps

BIG = 1024  # characters: a shorter string is cheaper to escape again than to track
MIN_BODY = 256 * 1024  # a smaller body has too little to splice to pay for the walk
_WS = " \t\n\r"
_ws = re.compile(r"[ \t\n\r]*").match
_scan = json.JSONDecoder().scan_once  # the C scanner json.loads uses, with its defaults
# Codex writes every input item (and content part) as an object tagged first. `{"type":` cannot
# occur inside a string literal (its quotes would be escaped), so finding the next one soon after
# an item's start says the item is probably short. Only a guess: a short item guessed long is
# walked, a long one guessed short is parsed twice; the result is the same.
_NEXT_ITEM = '{"type":'
_QUOTES = 16  # searches for a long literal's closing quote before scanning it instead


class Literals:
    """Long strings of one parsed body, by identity, with the byte span of their JSON literal."""

    __slots__ = ("raw", "spans")

    def __init__(self, raw: bytes = b"") -> None:
        self.raw = memoryview(raw)
        self.spans: dict[int, tuple[str, int, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.spans)

    def __len__(self) -> int:
        return len(self.spans)

    def get(self, value: str) -> memoryview | None:
        """The client's own literal of this very string object (quotes included), or None. An entry
        holds its string, so while it exists its id names no other object."""
        entry = self.spans.get(id(value))
        return None if entry is None else self.raw[entry[1] : entry[2]]


def loads(raw: bytes) -> tuple[Any, Literals]:
    """`json.loads(raw)`, and the literals of its long strings (none for small or non-UTF-8 bodies)."""
    if len(raw) < MIN_BODY or json.detect_encoding(raw) != "utf-8":
        return json.loads(raw), Literals()
    try:
        return _Walk(raw).run()
    except Exception:  # invalid or unusual JSON: json.loads gives the verdict, and its message
        return json.loads(raw), Literals()


class _Walk:
    __slots__ = ("raw", "text", "ascii", "lits")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.text = raw.decode("latin-1")
        self.ascii = raw.isascii()  # then every value reads right as Latin-1
        self.lits = Literals(raw)

    def run(self) -> tuple[Any, Literals]:
        text = self.text
        idx = _skip(text, 0)
        if text[idx] == "{":
            body, idx = self.object(idx, self.field)
        else:
            body, idx = self.leaf(idx)
        if _ws(text, idx).end() != len(text):
            raise ValueError("extra data")
        return body, self.lits

    # -- what each level does with its values

    def field(self, key: str, idx: int) -> tuple[Any, int]:
        """A value of the body: the input array is walked item by item, strings are noted."""
        if key == "input" and self.text[idx] == "[":
            return self.array(idx, self.item)
        return self.leaf(idx)

    def item(self, idx: int) -> tuple[Any, int]:
        text = self.text
        if text[idx] != "{":
            return self.leaf(idx)
        if 0 <= text.find(_NEXT_ITEM, idx + 1, idx + BIG):
            value, end = self.leaf(idx)
            if end - idx < BIG:
                return value, end
        return self.object(idx, lambda _key, i: self.nested(i, 2))

    def nested(self, idx: int, depth: int) -> tuple[Any, int]:
        """Inside a long item: its content parts and their strings (depth levels down)."""
        c = self.text[idx]
        if depth and c == "{":
            return self.object(idx, lambda _key, i: self.nested(i, depth - 1))
        if depth and c == "[":
            return self.array(idx, lambda i: self.nested(i, depth - 1))
        return self.leaf(idx)

    def leaf(self, idx: int) -> tuple[Any, int]:
        """Any value at idx, parsed by the C scanner; a string's literal is noted when it is long."""
        text = self.text
        if text[idx] == '"':
            # A long literal with raw UTF-8 in its first BIG bytes is decoded once, from UTF-8: scanning
            # it as Latin-1 first cost as much again (4 MB of Chinese tool outputs: loads 10 ms, json.loads 5-6.5).
            if not self.ascii and ((q := text.find('"', idx + 1, idx + BIG)) < 0 or text[q - 1] == "\\") \
                    and not text[idx : idx + BIG].isascii() and (end := self._end(idx)):
                return self._utf8_string(idx, end)
            value, end = scanstring(text, idx + 1)
            if not value.isascii() and not self.ascii and not text[idx:end].isascii():
                return self._utf8_string(idx, end)
            if len(value) >= BIG:
                self.lits.spans[id(value)] = (value, idx, end)
            return value, end
        value, end = _scan(text, idx)
        if not self.ascii and not text[idx:end].isascii():  # raw UTF-8 inside: its strings read wrong as Latin-1
            value = _scan(self.raw[idx:end].decode("utf-8", "surrogatepass"), 0)[0]
        return value, end

    def _end(self, idx: int) -> int | None:
        """Past the closing quote of the string literal at idx, by a few searches for a quote that no
        odd run of backslashes escapes; None when it holds too many escaped quotes for that to pay."""
        text = self.text
        q = idx
        for _ in range(_QUOTES):
            q = text.find('"', q + 1)
            if q < 0:
                return None
            k = q
            while text[k - 1] == "\\":  # the opening quote stops this
                k -= 1
            if not (q - k) & 1:
                return q + 1
        return None

    def _utf8_string(self, idx: int, end: int) -> tuple[str, int]:
        literal = self.raw[idx:end]
        try:
            text = literal.decode("utf-8")
        except UnicodeDecodeError:  # a surrogate written raw (json.loads takes it): decoded, never copied
            text = literal.decode("utf-8", "surrogatepass")
            return _whole(text), end
        value = _whole(text)
        if len(value) >= BIG:
            self.lits.spans[id(value)] = (value, idx, end)
        return value, end

    # -- containers, as json.loads builds them (a repeated key keeps its first place, its last value)

    def object(self, idx: int, child: Callable[[str, int], tuple[Any, int]]) -> tuple[dict, int]:
        text = self.text
        out: dict = {}
        idx = _skip(text, idx + 1)
        if text[idx] == "}":
            return out, idx + 1
        while True:
            if text[idx] != '"':
                raise ValueError("expected a key")
            key, idx = self.leaf(idx)
            idx = _skip(text, idx)
            if text[idx] != ":":
                raise ValueError("expected ':'")
            out[key], idx = child(key, _skip(text, idx + 1))
            idx, done = _after(text, idx, "}")
            if done:
                return out, idx

    def array(self, idx: int, child: Callable[[int], tuple[Any, int]]) -> tuple[list, int]:
        text = self.text
        out: list = []
        idx = _skip(text, idx + 1)
        if text[idx] == "]":
            return out, idx + 1
        while True:
            value, idx = child(idx)
            out.append(value)
            idx, done = _after(text, idx, "]")
            if done:
                return out, idx


def _whole(literal: str) -> str:
    """The value of a string literal that must end where the text does (or the walk gives up)."""
    value, end = scanstring(literal, 1)
    if end != len(literal):
        raise ValueError("string literal ends early")
    return value


def _after(text: str, idx: int, close: str) -> tuple[int, bool]:
    """Past the `,` after a value (then at the next one), or past the container's `close` (done)."""
    idx = _skip(text, idx)
    if text[idx] == close:
        return idx + 1, True
    if text[idx] != ",":
        raise ValueError(f"expected ',' or '{close}'")
    return _skip(text, idx + 1), False


def _skip(text: str, idx: int) -> int:
    """Past JSON whitespace (Codex writes none: one comparison)."""
    return _ws(text, idx).end() if text[idx] in _WS else idx


# ----------------------------------------------------------------------------------------------
# Encoding


def encode(chat: dict, lits: Literals | None = None) -> bytes:
    """The Chat request as compact UTF-8 JSON: after `json.loads`, equal to what
    `json.dumps(chat, ensure_ascii=False, separators=(",", ":"))` gives (byte for byte when no
    literal is copied), serialised message by message.

    One non-Latin-1 character (Codex's instructions hold several) makes a whole-payload string
    two bytes per character and its UTF-8 encoding a real transcode (~5 ms of a 4 MB request); in
    groups of 16 messages, only the groups that hold one pay for it. A lone surrogate (JSON allows
    `\\ud800`) makes its own run of values ASCII-escaped instead of raising. A message holding one
    of the client's long strings is written part by part, that string copied from the client's
    bytes, and each run of values around it (the other messages of its group, its other fields)
    dumped in one call: a call per value cost ~1 ms of a 4 MB request.
    """
    out: list = [b"{"]
    rest: dict = {}  # the fields around the messages, each run of them dumped in one call (two per field cost ~40 µs a request)
    for key, value in chat.items():
        if key != "messages" or type(value) is not list:
            rest[key] = value
            continue
        if rest:
            out += (dumps(rest)[1:-1], b",")
            rest = {}
        # In groups: one call per message costs more on many small ones.
        out.append(b'"messages":[')
        for i in range(0, len(value), 16):
            if i:
                out.append(b",")
            _items(value[i : i + 16], lits, 4, out) if lits else out.append(dumps(value[i : i + 16])[1:-1])
        out += (b"]", b",")
    if rest:
        out.append(dumps(rest)[1:-1])
    elif len(out) > 1:
        out.pop()  # the comma after the messages
    out.append(b"}")
    return b"".join(out)


def _holds(obj: Any, spans: dict, depth: int) -> bool:
    t = type(obj)
    if t is str:
        return len(obj) >= BIG and id(obj) in spans
    if depth and (t is dict or t is list or t is tuple):
        for v in obj.values() if t is dict else obj:
            if _holds(v, spans, depth - 1):
                return True
    return False


def _items(values: list, lits: Literals, depth: int, out: list) -> None:
    """A list's elements, comma-separated: runs holding no literal dumped in one call each."""
    run: list = []
    for v in values:
        if not _holds(v, lits.spans, depth):
            run.append(v)
            continue
        if run:
            out += (dumps(run)[1:-1], b",")
            run = []
        _emit(v, lits, depth, out)
        out.append(b",")
    if run:
        out.append(dumps(run)[1:-1])
    elif values:
        out.pop()  # the comma after the last value


def _emit(obj: Any, lits: Literals, depth: int, out: list) -> None:
    """A value that holds a literal (depth levels down at most)."""
    t = type(obj)
    if t is str:
        literal = lits.get(obj)
        out.append(literal if literal is not None else dumps(obj))
    elif depth and t is dict and all(type(k) is str for k in obj):  # other keys: json's own conversion, below
        out.append(b"{")
        run: dict = {}
        for k, v in obj.items():
            if not _holds(v, lits.spans, depth - 1):
                run[k] = v
                continue
            if run:
                out += (dumps(run)[1:-1], b",")
                run = {}
            out += (dumps(k), b":")
            _emit(v, lits, depth - 1, out)
            out.append(b",")
        if run:
            out.append(dumps(run)[1:-1])
        elif obj:
            out.pop()
        out.append(b"}")
    elif depth and (t is list or t is tuple):
        out.append(b"[")
        _items(obj, lits, depth - 1, out)
        out.append(b"]")
    else:
        out.append(dumps(obj))
