"""Salvage tool-call arguments that arrive as truncated JSON.

Chat providers stream arguments as free text; a stream cut by max tokens (or a model slip) leaves
`{"cmd": "ls -l` behind. MiMo rejects such history with 400 and Codex cannot run it, so both
directions close what is open rather than pass garbage along.
"""

from __future__ import annotations

import json

_CLOSERS = {"{": "}", "[": "]"}


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def repair(text: str) -> str | None:
    """`text` if it is valid JSON, else a minimally completed version, else None."""
    if is_json(text):
        return text
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return None
    fixed = text
    if in_string:
        fixed = (fixed[:-1] if escaped else fixed) + '"'
    fixed = fixed.rstrip()
    # A dangling separator or key (`{"a": 1,` / `{"a":`) cannot be completed with a value we know.
    while fixed.endswith((",", ":")):
        fixed = fixed[:-1].rstrip()
    candidate = fixed + "".join(reversed(stack))
    if is_json(candidate):
        return candidate
    # Last resort for objects: drop the incomplete trailing member.
    cut = max(fixed.rfind(","), fixed.rfind("{"))
    if cut >= 0:
        candidate = fixed[: cut + (1 if fixed[cut] == "{" else 0)] + "".join(reversed(stack))
        if is_json(candidate):
            return candidate
    return None
