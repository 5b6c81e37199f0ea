"""Bits every part of the fake shares: its error exception, the SSE/JSON encoders, chunk splitting."""

from __future__ import annotations

import hashlib
import json
from typing import Any

RESPONSES_ONLY_FIELDS = (
    "input", "instructions", "store", "include", "previous_response_id", "max_output_tokens",
    "text", "reasoning", "prompt_cache_key", "client_metadata", "truncation", "background",
    "conversation", "context_management",
)


_MEDIA_PARTS = {"image_url": "image", "input_audio": "audio", "video_url": "video"}


class FakeError(Exception):
    """An HTTP error answer: status plus the exact JSON body (dict) or raw text the service sends."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        super().__init__(f"{status}: {body!r}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def key_fingerprint(key: str) -> str:
    """Short stable digest used in recorded headers instead of keys the fake does not know."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def sse(obj: Any) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def est_tokens(s: str | None) -> int:
    return (len(s.encode()) + 3) // 4 if s else 0


def split_cyclic(s: str, sizes: tuple[int, ...]) -> list[str]:
    out, i, k = [], 0, 0
    while i < len(s):
        n = sizes[k % len(sizes)]
        out.append(s[i:i + n])
        i += n
        k += 1
    return out


def split_arguments(s: str, sizes: tuple[int, ...] = (6, 3, 9, 4, 7)) -> list[str]:
    """Cut a JSON text the way a token stream does: at arbitrary points, always including a cut
    between a backslash and the character it escapes and one inside every \\uXXXX escape."""
    cuts: set[int] = set()
    i = k = 0
    while i < len(s):
        cuts.add(i)
        i += sizes[k % len(sizes)]
        k += 1
    i = 0
    while i < len(s) - 1:
        if s[i] == "\\":
            cuts.add(i + 1)
            if s[i + 1] == "u":
                cuts.add(i + 4)
                i += 6
            else:
                i += 2
            continue
        i += 1
    points = sorted(c for c in cuts if 0 < c < len(s))
    return [s[a:b] for a, b in zip([0, *points], [*points, len(s)])] if s else []


def orjson_style_error(text: str) -> str | None:
    """None if `text` is valid JSON, else a parser message shaped like the one MiMo returns
    ("unexpected end of data: line 1 column 46 (char 45)" for truncated input)."""
    if text == "":
        return "Input is a zero-length, empty document: line 1 column 1 (char 0)"
    try:
        json.loads(text)
        return None
    except json.JSONDecodeError as e:
        if e.msg.startswith("Unterminated string") or e.pos >= len(text.rstrip()):
            pos = len(text)
            line = text.count("\n", 0, pos) + 1
            col = pos - (text.rfind("\n", 0, pos) + 1) + 1
            return f"unexpected end of data: line {line} column {col} (char {pos})"
        return str(e)

