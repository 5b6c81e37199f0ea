"""`launch.py show FILE`: a recorded session as a transcript a person can read.

Codex re-sends the whole conversation on every request, so the transcript prints, per request,
only what is new in its input (the user's text, tool outputs) and then what the model answered
(reasoning, text, tool calls with their arguments), with tokens, timing and errors. Local
answers (`/v1/models`, refused requests) appear as one line each.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from mimo2codex.sessions import eventlist
from mimo2codex.sessions.recording import Exchange, normalise

ECHOED = {"reasoning", "function_call", "custom_tool_call", "local_shell_call"}
TOOL_OUTPUTS = {"function_call_output", "custom_tool_call_output", "local_shell_call_output"}
SHORT_LINES = 12


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    out = []
    for p in content or []:
        if isinstance(p, dict):
            if p.get("text") is not None:
                out.append(str(p["text"]))
            elif "image" in str(p.get("type")):
                out.append("[image]")
    return "".join(out)


def _block(text: str, indent: str, full: bool, max_lines: int = SHORT_LINES) -> list[str]:
    lines = text.rstrip("\n").splitlines() or [""]
    if not full and len(lines) > max_lines:
        cut = len(lines) - max_lines
        lines = lines[:max_lines] + [f"… {cut} more line{'s' if cut != 1 else ''} (--full shows everything)"]
    return [indent + line for line in lines]


def _labelled(label: str, text: str, full: bool, indent: str = "  ", max_lines: int = SHORT_LINES) -> list[str]:
    """`label text` on one line, or the label alone with the text indented below it."""
    if "\n" not in text.rstrip("\n"):
        return _block(f"{label} {text}", indent, full, max_lines)
    return [f"{indent}{label}", *_block(text, indent + "    ", full, max_lines)]


def _context(text: str) -> str:
    fields = dict(re.findall(r"<(cwd|shell|current_date|timezone|sandbox_mode|approval_policy)>([^<]*)<", text))
    return " · ".join(f"{k} {v.strip()}" for k, v in fields.items()) or f"{len(text):,} chars"


def _user_item(item: dict, full: bool) -> list[str]:
    text = _text_of(item.get("content"))
    stripped = text.lstrip()
    if stripped.startswith("<environment_context>"):
        return [f"  [context] {_context(text)}"]
    if stripped.startswith(("<user_instructions>", "# AGENTS.md", "<INSTRUCTIONS>")) and not full:
        return [f"  [instructions] {len(text):,} chars (--full shows them)"]
    return _labelled("user>", text, full, max_lines=40)


def _args(text: str) -> str:
    try:
        obj = json.loads(text)
    except (TypeError, ValueError):
        return text
    return json.dumps(obj, ensure_ascii=False) if len(text) < 200 else json.dumps(obj, indent=2, ensure_ascii=False)


def item_lines(item: dict, full: bool, history: bool = False) -> list[str]:
    t = item.get("type", "message")
    mark = " (history)" if history else ""
    if t == "message":
        role = item.get("role")
        if role == "user":
            return _user_item(item, full)
        if role in ("developer", "system"):
            text = _text_of(item.get("content"))
            return _labelled(f"[{role}]", text, True) if full else [f"  [{role}] {len(text):,} chars (--full shows it)"]
        return _labelled(f"assistant{mark}>", _text_of(item.get("content")), full, max_lines=60)
    if t == "reasoning":
        summary = "".join(s.get("text", "") for s in item.get("summary") or [] if isinstance(s, dict))
        raw = "".join(s.get("text", "") for s in item.get("content") or [] if isinstance(s, dict))
        return _labelled(f"thinking{mark}>", summary or raw or "(sealed)", full)
    if t == "function_call":
        name = f"{item['namespace']}.{item.get('name')}" if item.get("namespace") else item.get("name")
        return _labelled(f"→ {name}{mark} ({item.get('call_id')})", _args(item.get("arguments", "")), full, max_lines=30)
    if t == "custom_tool_call":
        return _labelled(f"→ {item.get('name')}{mark} ({item.get('call_id')})", str(item.get("input", "")), full, max_lines=30)
    if t == "local_shell_call":
        return _labelled(f"→ local_shell{mark} ({item.get('call_id')})", json.dumps(item.get("action"), ensure_ascii=False), full)
    if t in TOOL_OUTPUTS:
        return _labelled(f"← output ({item.get('call_id')})", eventlist.output_text(item.get("output")), full)
    return [f"  [{t}] {eventlist.preview(item, 200)}"]


def _clock(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "--:--:--"


def _usage(e: Exchange) -> str:
    u = e.usage()
    if not u:
        return ""
    cached = (u.get("input_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (u.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    return f"in {u.get('input_tokens', 0):,}{f' (cached {cached:,})' if cached else ''} · out {u.get('output_tokens', 0):,}" \
           f"{f' (reasoning {reasoning:,})' if reasoning else ''}"


def _failure(e: Exchange) -> list[str]:
    lines = []
    r = e.response if isinstance(e.response, dict) else {}
    if r.get("status") == "incomplete":
        lines.append(f"  ✗ incomplete: {(r.get('incomplete_details') or {}).get('reason', 'unknown')}")
    err = r.get("error") if isinstance(r.get("error"), dict) else None
    if err:
        lines.append(f"  ✗ failed: {err.get('code')}: {err.get('message')}")
    elif e.error:
        lines.append(f"  ✗ error: {e.error}")
    return lines


def summary(exchanges: list[Exchange]) -> list[str]:
    translated = [e for e in exchanges if e.translated]
    tin = sum((e.usage() or {}).get("input_tokens", 0) or 0 for e in translated)
    tout = sum((e.usage() or {}).get("output_tokens", 0) or 0 for e in translated)
    calls = sum(1 for e in translated for i in e.output() if i.get("type") in ECHOED - {"reasoning"})
    failed = sum(1 for e in exchanges if e.failed)
    models = sorted({e.model for e in translated if e.model})
    providers = sorted({e.provider for e in translated if e.provider})
    starts = [e.started for e in exchanges if e.started]
    ends = [e.ended or e.started for e in exchanges if e.started]
    span = f", {_clock(min(starts))} → {_clock(max(ends))} ({max(ends) - min(starts):.1f} s)" if starts else ""
    return [f"{len(exchanges)} flows, {len(translated)} model requests to {', '.join(providers) or '?'} "
            f"({', '.join(models) or '?'}){span}",
            f"tokens in {tin:,} · out {tout:,} · {calls} tool call{'s' if calls != 1 else ''} · "
            f"{failed} failed request{'s' if failed != 1 else ''}"]


def render(exchanges: list[Exchange], *, full: bool = False, title: str = "") -> str:
    out = [f"Session {title}".rstrip(), *summary(exchanges)]
    prev: list | None = None
    turn = 0
    for e in exchanges:
        if not e.translated:
            status = e.client_status if e.client_status is not None else "no answer"
            out.append(f"\n· #{e.index} {_clock(e.started)} {e.method} {e.path} → {status}"
                       + (f" ✗ {e.error}" if e.error else ""))
            continue
        req = e.responses_request if isinstance(e.responses_request, dict) else {}
        items = req.get("input")
        if isinstance(items, str):
            items = [{"type": "message", "role": "user", "content": items}]
        items = [i for i in items or [] if isinstance(i, dict)]
        norm = [normalise(i) for i in items]
        if prev is not None and norm[:len(prev)] == prev:
            new, history = items[len(prev):], False
            retry = not new
        else:
            new, history, retry = items, prev is not None or any(i.get("role") == "assistant" for i in items), False
        if any(i.get("type", "message") == "message" and i.get("role") == "user" for i in new):
            turn += 1
            out.append(f"\n═══ turn {turn} " + "═" * 60)
        dur = f" · {e.duration:.2f} s" if e.duration is not None else ""
        status = e.status or ("failed" if e.failed else "?")
        head = f"── #{e.index} {_clock(e.started)} · {e.model or req.get('model', '?')}{dur} · {status}"
        usage = _usage(e)
        if usage:
            head += f" · {usage}"
        if e.replay:
            head += f" · replayed {e.replay}"
        if e.retries:
            head += f" · retries: {e.retries}"
        if e.bodies:
            head += f" · bodies {e.bodies}"
        out.append(head + (" · same input again (retry)" if retry else ""))
        for item in new:
            if item.get("type") in ECHOED or (item.get("type", "message") == "message" and item.get("role") == "assistant"):
                if history:
                    out += item_lines(item, full, history=True)
                continue  # the previous request's answer, already shown
            out += item_lines(item, full)
        for item in e.output():
            out += item_lines(item, full)
        out += _failure(e)
        prev = norm
    return "\n".join(out) + "\n"
