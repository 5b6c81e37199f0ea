"""Named hooks: the behaviour a rules file cannot say declaratively, referred to by name.

`hooks.request` entries run on the finished Chat request: fn(chat: dict, turn: Turn, rules) -> None.
`hooks.chunk` entries run on every parsed upstream chunk before the stream state machine:
fn(chunk: dict, state: dict) -> dict | None (None drops the chunk); `state` is per stream.

Some declarative keys (`drop`, `messages.system`, `reasoning.pass_back_as`, `reasoning.think_tags`,
`response.*`) are carried out by built-in hooks that `assemble` binds to the file's settings and
adds to `Rules.hooks` under reserved names starting with "@"; a rules file cannot name those.
Order: built-in request hooks that reshape messages, then the file's request hooks, then `drop`;
the file's chunk hooks, then the built-in chunk hooks.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any, Callable

REGISTRY: dict[str, dict[str, Callable]] = {"request": {}, "chunk": {}}
BUILTIN = "@"
# A `drop` path: dotted keys, `[]` after a key applies the rest to every element of that list.
DROP_PATH = re.compile(r"^[A-Za-z_][\w-]*(\[\])?(\.[A-Za-z_][\w-]*(\[\])?)*$")


def hook(stage: str) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        REGISTRY[stage][fn.__name__] = fn
        return fn

    return register


# ----------------------------------------------------------------------------------------------
# Named hooks (rules files list these under hooks.request / hooks.chunk)


@hook("chunk")
def minimax_base_resp(chunk: dict, state: dict) -> dict | None:
    """MiniMax reports some failures (rate limit 1002, balance 1008, ...) as HTTP 200 with a
    non-zero `base_resp.status_code` instead of an HTTP error; make that a stream error."""
    base = chunk.get("base_resp")
    if isinstance(base, dict) and base.get("status_code") not in (None, 0, "0"):
        code = str(base.get("status_code"))
        return {"error": {"message": f"{base.get('status_msg') or 'request failed'} ({code})", "type": "provider_error", "code": code}}
    return chunk


@hook("chunk")
def reasoning_details_text(chunk: dict, state: dict) -> dict | None:
    """OpenRouter (and MiniMax with reasoning_split) carry reasoning in `reasoning_details[]`; when a
    delta/message has no plain `reasoning` string, take the readable text from the details."""
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        for key in ("delta", "message"):
            part = choice.get(key)
            if not isinstance(part, dict) or isinstance(part.get("reasoning"), str) and part["reasoning"]:
                continue
            details = part.get("reasoning_details")
            if isinstance(details, list):
                text = "".join(d.get("text") or d.get("summary") or "" for d in details
                               if isinstance(d, dict) and isinstance(d.get("text") or d.get("summary") or "", str))
                if text:
                    part["reasoning"] = text
    return chunk


# ----------------------------------------------------------------------------------------------
# Built-in hooks behind declarative keys


def _builtin_pass_back_as(chat: dict, turn: Any, rules: Any, *, cfg: dict) -> None:
    """reasoning.pass_back_as: move the passed-back reasoning from its field to where the provider wants it."""
    field = cfg["field"]
    for msg in chat.get("messages") or ():
        if msg.get("role") != "assistant" or field not in msg:
            continue
        reasoning = msg.pop(field)
        if cfg["as"] == "think_tags":
            opening, closing = cfg["tags"]
            msg["content"] = f"{opening}{reasoning}{closing}\n\n" + (msg.get("content") or "")
        else:  # reasoning_details (OpenRouter's shape)
            msg["reasoning_details"] = [{"type": "reasoning.text", "text": reasoning, "format": "unknown", "index": 0}]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


def _builtin_merge_system(chat: dict, turn: Any, rules: Any, *, cfg: dict) -> None:
    """messages.system: merge — one leading system message holding every system text, in order."""
    messages = chat.get("messages") or []
    systems = [m for m in messages if m.get("role") == "system"]
    if not systems or (len(systems) == 1 and messages[0] is systems[0]):
        return
    text = "\n\n".join(t for t in (_text(m.get("content")) for m in systems) if t)
    chat["messages"] = [{"role": "system", "content": text}] + [m for m in messages if m.get("role") != "system"]


def _drop_path(obj: Any, parts: list[str]) -> None:
    if not parts or not isinstance(obj, dict):
        return
    head, rest = parts[0], parts[1:]
    each = head.endswith("[]")
    key = head[:-2] if each else head
    if key not in obj:
        return
    if not rest:
        del obj[key]
    elif each:
        for item in obj[key] if isinstance(obj[key], list) else ():
            _drop_path(item, rest)
    else:
        _drop_path(obj[key], rest)


def _builtin_drop(chat: dict, turn: Any, rules: Any, *, cfg: dict) -> None:
    """drop: fields the provider rejects (or mishandles), removed from the final request."""
    for path in cfg["paths"]:
        _drop_path(chat, path.split("."))


def _split_tags(text: str, st: dict, opening: str, closing: str, final: bool) -> tuple[str, str]:
    """Feed content text through the think-tag splitter; returns (reasoning, content) pieces.

    Only a block that opens the answer counts (leading whitespace allowed): a `<think>` later in
    the text is the answer talking about tags, not reasoning. Tags split across chunks are held
    back until they can be decided; `final` flushes whatever is held.
    """
    reasoning, content = [], []
    buf, st["buf"] = st["buf"] + text, ""
    while True:
        mode = st["mode"]
        if mode == "start":
            stripped = buf.lstrip()
            if stripped.startswith(opening):
                st["mode"], st["strip"], buf = "in", True, stripped[len(opening):]
                continue
            if opening.startswith(stripped) and not final:
                st["buf"] = buf
                break
            st["mode"] = "out"
            continue
        if mode == "in":
            if st["strip"]:  # the line break right after the opening tag
                buf = buf.lstrip("\r\n")
                st["strip"] = not buf
            i = buf.find(closing)
            if i >= 0:
                reasoning.append(buf[:i].rstrip("\r\n"))
                buf, st["mode"], st["strip"] = buf[i + len(closing):], "out", True
                continue
            if final:
                keep = 0
            else:  # a closing tag may be starting; line breaks may be the ones before it
                keep = next((k for k in range(min(len(closing) - 1, len(buf)), 0, -1) if buf.endswith(closing[:k])), 0)
                keep += len(buf[: len(buf) - keep]) - len(buf[: len(buf) - keep].rstrip("\r\n"))
            reasoning.append(buf[: len(buf) - keep])
            st["buf"] = buf[len(buf) - keep:]
            break
        if st["strip"]:  # the blank line(s) between </think> and the answer
            stripped = buf.lstrip("\r\n")
            if stripped:
                st["strip"] = False
            buf = stripped
        content.append(buf)
        break
    return "".join(reasoning), "".join(content)


def _builtin_think_tags(chunk: dict, state: dict, *, cfg: dict) -> dict | None:
    """reasoning.think_tags: reasoning written inline at the start of `content` becomes the reasoning field."""
    opening, closing, field = cfg["open"], cfg["close"], cfg["field"]
    streams = state.setdefault("@think_tags", {})
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        for key in ("delta", "message"):
            part = choice.get(key)
            if not isinstance(part, dict):
                continue
            if key == "message":  # a whole answer: split it in one go
                st = {"mode": "start", "buf": "", "strip": False}
            else:
                st = streams.setdefault(choice.get("index", 0), {"mode": "start", "buf": "", "strip": False})
            text = part.get("content")
            final = key == "message" or choice.get("finish_reason") is not None
            if not isinstance(text, str) and not (final and st["buf"]):
                continue
            reasoning, content = _split_tags(text if isinstance(text, str) else "", st, opening, closing, final)
            if reasoning:
                part[field] = (part.get(field) or "") + reasoning
            part["content"] = content if content or key == "message" else None
    return chunk


def _builtin_finish_reasons(chunk: dict, state: dict, *, cfg: dict) -> dict | None:
    """response.finish_reasons: the provider's own stop reasons, as standard ones (or a stream error)."""
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason in cfg["map"]:
            target = cfg["map"][reason]
            if target == "error":
                return {"error": {"message": f"the provider stopped the answer (finish_reason {reason})",
                                  "type": "server_error", "code": reason}}
            choice["finish_reason"] = target
    return chunk


def _dig(obj: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _builtin_usage(chunk: dict, state: dict, *, cfg: dict) -> dict | None:
    """response.usage: bring a provider's usage into the OpenAI shape the stream side reads.

    Usage sent inside the finishing choice (Moonshot) moves to the top level; cached and
    reasoning token counts are taken from the first listed path that holds a number.
    """
    usage = chunk.get("usage")
    if not isinstance(usage, dict):
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and isinstance(choice.get("usage"), dict):
                usage = chunk["usage"] = choice.pop("usage")
                break
    if not isinstance(usage, dict):
        return chunk
    for target, parent, leaf in (("cached_tokens", "prompt_tokens_details", "cached_tokens"),
                                 ("reasoning_tokens", "completion_tokens_details", "reasoning_tokens")):
        if isinstance(_dig(usage, f"{parent}.{leaf}"), int):
            continue
        value = next((v for v in (_dig(usage, p) for p in cfg[target]) if isinstance(v, int) and not isinstance(v, bool)), None)
        if value is not None:
            if not isinstance(usage.get(parent), dict):
                usage[parent] = {}
            usage[parent][leaf] = value
    return chunk


_BUILTINS: dict[str, tuple[str, Callable]] = {
    "pass_back_as": ("request", _builtin_pass_back_as),
    "merge_system": ("request", _builtin_merge_system),
    "drop": ("request", _builtin_drop),
    "think_tags": ("chunk", _builtin_think_tags),
    "finish_reasons": ("chunk", _builtin_finish_reasons),
    "usage": ("chunk", _builtin_usage),
}


def _bind(kind: str, cfg: dict) -> str:
    """Register the built-in `kind` with these settings; the name is stable for equal settings."""
    stage, fn = _BUILTINS[kind]
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{BUILTIN}{kind}#{digest}"
    REGISTRY[stage].setdefault(name, functools.partial(fn, cfg=cfg))
    return name


def assemble(d: dict, named: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The hook lists a merged rules mapping runs: its named hooks plus the built-ins its keys ask for."""
    reasoning, resp = d["reasoning"], d.get("response") or {}
    before: list[str] = []
    after: list[str] = []
    chunk: list[str] = []
    if reasoning.get("pass_back_as", "field") != "field":
        before.append(_bind("pass_back_as", {"as": reasoning["pass_back_as"], "field": reasoning["pass_back_field"],
                                             "tags": reasoning.get("think_tags")}))
    if d["messages"].get("system", "keep") == "merge":
        before.append(_bind("merge_system", {}))
    if d.get("drop"):
        after.append(_bind("drop", {"paths": list(d["drop"])}))
    tags = reasoning.get("think_tags")
    if tags:
        chunk.append(_bind("think_tags", {"open": tags[0], "close": tags[1], "field": reasoning["fields"][0]}))
    if resp.get("finish_reasons"):
        chunk.append(_bind("finish_reasons", {"map": dict(resp["finish_reasons"])}))
    usage = resp.get("usage") or {}
    if usage.get("cached_tokens") or usage.get("reasoning_tokens"):
        chunk.append(_bind("usage", {"cached_tokens": list(usage.get("cached_tokens") or ()),
                                     "reasoning_tokens": list(usage.get("reasoning_tokens") or ())}))
    return {"request": (*before, *named["request"], *after), "chunk": (*named["chunk"], *chunk)}
