"""Salvage JSON that arrives cut short (tool-call arguments).

Chat providers stream arguments as free text; a stream cut by max tokens (or a model slip) leaves
`{"cmd": "ls -l` behind. MiMo rejects such history with 400 and Codex must not run it, so both
directions repair a truncation - and only a truncation: garbage in the middle is refused.
"""

from __future__ import annotations

import json
import re


_STR_SPECIAL = re.compile(r'["\\]')
_PARTIAL_ESCAPE = re.compile(r"\\u[0-9a-fA-F]{0,3}$|\\$")


def complete_json(text: str) -> bool:
    """True when `text` is already a whole JSON object/array (more input could only break it)."""
    s = text.rstrip()
    if not s or s[-1] not in "}]":
        return False
    try:
        return isinstance(json.loads(s), (dict, list))
    except ValueError:
        return False


# Where a truncated document stops: nothing, an unterminated string, a cut escape, a partial literal.
_TRUNCATED_TAIL = re.compile(
    r'(?s)\s*(?:"(?:[^"\\]|\\.)*\\?|\\(?:u[0-9a-fA-F]{0,3})?|(?<=\\)u[0-9a-fA-F]{0,3}|t(?:r(?:u)?)?|f(?:a(?:l(?:s)?)?)?|n(?:u(?:l)?)?'
    r"|-?\d*(?:\.\d*)?(?:[eE][-+]?\d*)?)?\s*"
)


def _truncated(text: str) -> bool:
    """True when `text` is valid JSON cut short: the decoder's complaint is about its very end,
    not a mistake in the middle (`{"a": 1 2}` is garbage, `{"a": "1 2` is truncated)."""
    try:
        json.loads(text, strict=False)
        return False
    except json.JSONDecodeError as exc:
        return _TRUNCATED_TAIL.fullmatch(text, exc.pos) is not None


def salvage_json(text: str) -> str | None:
    """Repair a JSON object/array that was cut short: close an open string and brackets, or cut
    back to the last complete member. None when it is not a truncation or nothing valid remains."""
    s = text.strip()
    if not s or s[0] not in "{[" or not _truncated(s):
        return None
    fixed = _cut_back(s)
    if fixed is None:
        return None
    value = json.loads(fixed, strict=False)  # raw control characters inside strings are a model slip
    try:
        json.loads(fixed)
        return fixed
    except ValueError:
        return json.dumps(value, ensure_ascii=False)


def _cut_back(s: str) -> str | None:
    stack: list[str] = []
    cuts: list[tuple[int, str]] = []  # (keep s[:pos], closers) at member boundaries, latest last
    i, n, open_str = 0, len(s), False
    while i < n:
        ch = s[i]
        if ch == '"':
            j = i + 1
            while True:
                m = _STR_SPECIAL.search(s, j)
                if m is None:
                    open_str = True
                    break
                if m.group() == "\\":
                    j = m.end() + 1
                    if j > n:
                        open_str = True
                        break
                    continue
                i = m.end()
                break
            if open_str:
                break
            cuts.append((i, "".join(reversed(stack))))
            continue
        if ch in "{[":
            stack.append("}" if ch == "{" else "]")
            i += 1
            cuts.append((i, "".join(reversed(stack))))
            continue
        if ch in "}]":
            if not stack or stack[-1] != ch:
                return None
            stack.pop()
            i += 1
            cuts.append((i, "".join(reversed(stack))))
            continue
        if ch == ",":
            cuts.append((i, "".join(reversed(stack))))
        i += 1
    closers = "".join(reversed(stack))
    if open_str:
        head = _PARTIAL_ESCAPE.sub("", s) + '"'
    else:
        head = s.rstrip()
        if head.endswith(","):
            head = head[:-1]
        elif head.endswith(":"):
            head += "null"
    for cand in [head + closers] + [s[:pos] + close for pos, close in reversed(cuts[-64:])]:
        try:
            value = json.loads(cand, strict=False)
        except ValueError:
            continue
        if isinstance(value, (dict, list)):
            return cand
    return None


def repair(text: str) -> str | None:
    """`text` if it is valid JSON, else its salvaged form, else None."""
    try:
        json.loads(text)
        return text
    except ValueError:
        return salvage_json(text)
