"""Readable one-line-per-step renderings of what crosses the proxy: Responses SSE, Chat SSE, and the
two request shapes. Used by the mitmweb contentviews (addon/views.py), `launch.py show` and
`launch.py compare`, so a diff between two recordings reads like the views do.

Runs of deltas for the same item are folded into one line (`×N` + the joined text): a 2,000-token
answer is one line, not 2,000.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from mimo2codex.translate.sse import DONE, payloads

PREVIEW = 160


def preview(text: Any, limit: int = PREVIEW) -> str:
    """One printable line: newlines shown as ⏎, long text cut with its full length noted."""
    if not isinstance(text, str):
        text = json.dumps(text, ensure_ascii=False)
    if not text:
        return '""'
    flat = text.replace("\r\n", "\n").replace("\n", "⏎").replace("\r", "⏎").replace("\t", "→")
    if limit and len(flat) > limit:
        return f"{flat[:limit]}… ({len(text):,} chars)"
    return flat


def parse_events(body: bytes | str | None) -> list[Any]:
    """Every SSE data payload, JSON-decoded when it is JSON (`[DONE]` and junk stay as str)."""
    if not body:
        return []
    if isinstance(body, str):
        body = body.encode()
    out: list[Any] = []
    for data in payloads(body):
        if data.strip() == DONE:
            out.append("[DONE]")
            continue
        try:
            out.append(json.loads(data))
        except ValueError:
            out.append(data.decode("utf-8", "replace"))
    return out


def as_bytes(body: bytes | str | None) -> bytes:
    return body.encode() if isinstance(body, str) else (body or b"")


def looks_like_sse(body: bytes | str | None) -> bool:
    head = as_bytes(body).lstrip()[:6]
    return head.startswith((b"data:", b"event:", b":", b"id:"))


def is_responses_stream(events: list[Any]) -> bool:
    return any(isinstance(e, dict) and str(e.get("type", "")).startswith("response.") for e in events[:3])


def is_chat_stream(events: list[Any]) -> bool:
    return any(isinstance(e, dict) and ("choices" in e or e.get("object") == "chat.completion.chunk") for e in events[:3])


# ------------------------------------------------------------------------------------------------
# Folding: (number, kind, key, text, mergeable) steps -> lines


def _fold(steps: Iterable[tuple[int, str, Any, str, bool]], limit: int) -> list[str]:
    lines: list[str] = []
    run: list[Any] | None = None  # [first, last, kind, key, [texts]]

    def flush() -> None:
        nonlocal run
        if run:
            first, last, kind, key, texts = run
            num = f"{first}" if first == last else f"{first}-{last}"
            where = f" {key}" if key not in (None, "") else ""
            lines.append(f"{num:>7}  {kind}{where} ×{len(texts)} {preview(''.join(texts), limit)}")
        run = None

    for num, kind, key, text, mergeable in steps:
        if mergeable:
            if run and run[2] == kind and run[3] == key:
                run[1] = num
                run[4].append(text)
                continue
            flush()
            run = [num, num, kind, key, [text]]
            continue
        flush()
        lines.append(f"{num:>7}  {kind}{(' ' + text) if text else ''}")
    flush()
    return lines


# ------------------------------------------------------------------------------------------------
# Responses events


def usage_text(usage: Any) -> str:
    if not isinstance(usage, dict):
        return "usage none"
    inp = usage.get("input_tokens", usage.get("prompt_tokens"))
    out = usage.get("output_tokens", usage.get("completion_tokens"))
    cached = (usage.get("input_tokens_details") or usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    reasoning = (usage.get("output_tokens_details") or usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    total = usage.get("total_tokens")
    return f"in={inp} (cached {cached or 0}) out={out} (reasoning {reasoning or 0}) total={total}"


def item_text(item: dict, limit: int = PREVIEW) -> str:
    """One line for a Responses output/input item."""
    t = item.get("type")
    if t == "message":
        parts = item.get("content")
        text = parts if isinstance(parts, str) else "".join(
            p.get("text") or ("[image]" if "image" in str(p.get("type")) else "") for p in parts or [] if isinstance(p, dict))
        return f"message {item.get('role') or '?'} {preview(text, limit)}"
    if t == "reasoning":
        summary = "".join(s.get("text", "") for s in item.get("summary") or [] if isinstance(s, dict))
        raw = "".join(s.get("text", "") for s in item.get("content") or [] if isinstance(s, dict))
        extra = f" · content {preview(raw, limit)}" if raw and raw != summary else ""
        sealed = " · encrypted_content" if item.get("encrypted_content") else ""
        return f"reasoning {preview(summary, limit)}{extra}{sealed}"
    if t == "function_call":
        name = f"{item['namespace']}.{item.get('name')}" if item.get("namespace") else item.get("name")
        return f"function_call {name} ({item.get('call_id')}) {preview(item.get('arguments', ''), limit)}"
    if t == "custom_tool_call":
        return f"custom_tool_call {item.get('name')} ({item.get('call_id')}) {preview(item.get('input', ''), limit)}"
    if t in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
        return f"{t} ({item.get('call_id')}) {preview(output_text(item.get('output')), limit)}"
    if t == "local_shell_call":
        return f"local_shell_call ({item.get('call_id')}) {preview(item.get('action'), limit)}"
    return f"{t} {preview({k: v for k, v in item.items() if k != 'type'}, limit)}"


def output_text(output: Any) -> str:
    """A tool output as text (outputs may be a string or a list of content parts)."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(p.get("text") or ("[image]" if "image" in str(p.get("type")) else "") for p in output if isinstance(p, dict))
    return "" if output is None else json.dumps(output, ensure_ascii=False)


def _responses_steps(events: list[Any], limit: int):
    for n, ev in enumerate(events):
        if not isinstance(ev, dict):
            yield n, str(ev) if ev == "[DONE]" else "(not JSON)", None, "" if ev == "[DONE]" else preview(ev, limit), False
            continue
        t = str(ev.get("type", "?"))
        num = ev.get("sequence_number", n)
        oi = ev.get("output_index")
        where = f"[{oi}]" if oi is not None else ""
        part = ev.get("content_index", ev.get("summary_index"))
        key = f"{where}.{part}" if part is not None else where
        if t.endswith(".delta"):
            delta = ev.get("delta")
            yield num, t, key, delta if isinstance(delta, str) else json.dumps(delta, ensure_ascii=False), True
        elif t in ("response.created", "response.in_progress", "response.completed", "response.incomplete", "response.failed"):
            r = ev.get("response") or {}
            text = f"{r.get('id')} {r.get('model')} {r.get('status')}"
            if t != "response.created" and t != "response.in_progress":
                text += f" · {usage_text(r.get('usage'))}"
                if r.get("incomplete_details"):
                    text += f" · incomplete {json.dumps(r['incomplete_details'], ensure_ascii=False)}"
                if r.get("error"):
                    err = r["error"]
                    text += f" · error {err.get('code')}: {preview(err.get('message', ''), limit)}" if isinstance(err, dict) else f" · error {err}"
            yield num, t, None, text, False
        elif t in ("response.output_item.added", "response.output_item.done"):
            item = ev.get("item") or {}
            if t.endswith("added"):
                text = f"{item.get('type')} {item.get('id', '')}"
                if item.get("name"):
                    text += f" {item.get('name')}"
            else:
                text = item_text(item, limit)
            yield num, t, None, f"{where} {text}", False
        elif t.endswith(".done") and any(k in ev for k in ("text", "arguments", "input")):
            val = ev.get("text", ev.get("arguments", ev.get("input")))
            yield num, t, None, f"{key} {preview(val, limit)}", False
        elif isinstance(ev.get("part"), dict):
            yield num, t, None, f"{key} {ev['part'].get('type')}", False
        elif t == "error":
            yield num, t, None, preview(ev.get("error", ev), limit), False
        else:
            rest = {k: v for k, v in ev.items() if k not in ("type", "sequence_number")}
            yield num, t, None, preview(rest, limit) if rest else "", False


def responses_lines(body: bytes | str | None, limit: int = PREVIEW) -> list[str]:
    events = parse_events(body)
    return _fold(_responses_steps(events, limit), limit)


# ------------------------------------------------------------------------------------------------
# Chat Completions chunks


def _chat_steps(events: list[Any], limit: int):
    for n, ev in enumerate(events):
        if not isinstance(ev, dict):
            yield n, str(ev) if ev == "[DONE]" else "(not JSON)", None, "" if ev == "[DONE]" else preview(ev, limit), False
            continue
        if "error" in ev:
            err = ev["error"]
            msg = f"{err.get('code')}: {err.get('message')}" if isinstance(err, dict) else str(err)
            yield n, "error", None, preview(msg, limit), False
            continue
        for choice in ev.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            for k, v in delta.items():
                if v is None or v == "" or v == []:
                    continue
                if k == "role":
                    yield n, "role", None, str(v), False
                elif k == "tool_calls" and isinstance(v, list):
                    for tc in v:
                        if not isinstance(tc, dict):
                            continue
                        idx = f"[{tc.get('index', 0)}]"
                        fn = tc.get("function") or {}
                        if tc.get("id") or fn.get("name"):
                            yield n, "tool_call", None, f"{idx} {fn.get('name') or ''} id={tc.get('id')}", False
                        if fn.get("arguments"):
                            yield n, "tool_call.arguments", idx, fn["arguments"], True
                elif isinstance(v, str):
                    yield n, k, None, v, True
                else:
                    yield n, k, None, preview(v, limit), False
            if choice.get("finish_reason"):
                yield n, "finish_reason", None, str(choice["finish_reason"]), False
        if isinstance(ev.get("usage"), dict):
            yield n, "usage", None, usage_text(ev["usage"]), False


def chat_lines(body: bytes | str | None, limit: int = PREVIEW) -> list[str]:
    events = parse_events(body)
    return _fold(_chat_steps(events, limit), limit)


def body_lines(body: bytes | str | None, limit: int = PREVIEW) -> list[str]:
    """Whichever stream `body` holds (or pretty JSON, or the text itself)."""
    if isinstance(body, str):
        body = body.encode()
    if not body:
        return ["(empty)"]
    if looks_like_sse(body):
        events = parse_events(body)
        if is_chat_stream(events):
            return chat_lines(body, limit)
        return responses_lines(body, limit)
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False).splitlines()
    except ValueError:
        return body.decode("utf-8", "replace").splitlines()


# ------------------------------------------------------------------------------------------------
# Requests


def _tool_names(tools: Any) -> list[str]:
    names = []
    for t in tools or []:
        if not isinstance(t, dict):
            continue
        kind = t.get("type")
        fn = t.get("function") if isinstance(t.get("function"), dict) else t
        if kind == "namespace":
            inner = ",".join(str(i.get("name")) for i in t.get("tools") or [] if isinstance(i, dict))
            names.append(f"{t.get('name')}.{{{inner}}}")
        elif kind in ("function", None):
            names.append(str(fn.get("name")))
        elif kind == "custom":
            names.append(f"{t.get('name')} (custom)")
        else:
            names.append(f"{t.get('name') or kind} ({kind})")
    return names


def _params(req: dict, skip: tuple[str, ...]) -> str:
    return " · ".join(f"{k} {json.dumps(v, ensure_ascii=False)}" for k, v in req.items() if k not in skip)


def responses_request_lines(req: Any, limit: int = PREVIEW) -> list[str]:
    if not isinstance(req, dict):
        return [preview(req, limit)]
    lines = [_params(req, ("input", "tools", "client_metadata", "instructions"))]
    if req.get("instructions"):
        lines.append(f"instructions {preview(req['instructions'], limit)}")
    tools = _tool_names(req.get("tools"))
    lines.append(f"tools ({len(tools)}): {', '.join(tools) or '-'}")
    items = req.get("input")
    if isinstance(items, str):
        lines.append(f"input {preview(items, limit)}")
    else:
        lines.append(f"input ({len(items or [])} items):")
        for i, item in enumerate(items or []):
            lines.append(f"  [{i}] {item_text(item, limit) if isinstance(item, dict) else preview(item, limit)}")
    return lines


def chat_message_text(m: dict, limit: int = PREVIEW) -> str:
    content = m.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text") or f"[{p.get('type')}]" for p in content if isinstance(p, dict))
    text = f"{m.get('role')}"
    if m.get("tool_call_id"):
        text += f" ({m['tool_call_id']})"
    if content:
        text += f" {preview(content, limit)}"
    for k, v in m.items():
        if k not in ("role", "content", "tool_calls", "tool_call_id", "name") and isinstance(v, str) and v:
            text += f" · {k} {preview(v, limit)}"
    for tc in m.get("tool_calls") or []:
        fn = tc.get("function") or {}
        text += f" · call {fn.get('name')} ({tc.get('id')}) {preview(fn.get('arguments', ''), limit)}"
    return text


def chat_request_lines(req: Any, limit: int = PREVIEW) -> list[str]:
    if not isinstance(req, dict):
        return [preview(req, limit)]
    lines = [_params(req, ("messages", "tools"))]
    tools = _tool_names(req.get("tools"))
    lines.append(f"tools ({len(tools)}): {', '.join(tools) or '-'}")
    msgs = req.get("messages") or []
    lines.append(f"messages ({len(msgs)}):")
    for i, m in enumerate(msgs):
        lines.append(f"  [{i}] {chat_message_text(m, limit) if isinstance(m, dict) else preview(m, limit)}")
    return lines
