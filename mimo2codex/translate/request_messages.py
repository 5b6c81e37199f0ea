"""Codex's input items -> Chat messages, with the history repaired so the provider accepts it.

Tool calls paired with their outputs (an interrupted call gets INTERRUPTED), reasoning passed back
as the rules say, images kept or replaced by a note per model. Part of the request mapping (request.py).
"""

from __future__ import annotations

import json
from typing import Any

from mimo2codex.translate import envelope, jsonfix
from mimo2codex.translate.request_base import BadRequest, log, warn_once
from mimo2codex.translate.rules import Model, Rules
from mimo2codex.translate.turn import Turn

# History compacted by OpenAI (Codex replays it after a switch of provider): see _History.compaction.
COMPACTION_ITEMS = {"compaction", "compaction_summary"}
COMPACTED_PREFIX = "Summary of the earlier conversation (compacted):\n"
TOOL_OUTPUTS = {"function_call_output", "custom_tool_call_output", "local_shell_call_output"}
TOOL_CALLS = {"function_call", "custom_tool_call", "local_shell_call"}
INTERRUPTED = "aborted: the call was interrupted before it produced output"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for part in content:
        if isinstance(part, dict):
            text = part.get("text") if part.get("type") != "refusal" else part.get("refusal")
            if isinstance(text, str):
                parts.append(text)
        elif isinstance(part, str):
            parts.append(part)
    return "".join(parts)


def _user_parts(content: Any, rules: Rules, model: Model) -> str | list[dict]:
    """User content: a plain string unless images survive, then Chat content parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest("message 'content' must be a string or an array of content parts", "input")
    parts: list[dict] = []
    placeholder = rules.messages["vision_placeholder"].format(model=model.id)
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal", ""))})
        elif kind in ("input_image", "image_url"):
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not model.vision or not isinstance(url, str):
                parts.append({"type": "text", "text": placeholder if model.vision is False else "[image omitted: only URLs and data: URIs are supported]"})
            else:
                parts.append({"type": "image_url", "image_url": {"url": url}})
        elif kind == "input_file":
            name = part.get("filename") or part.get("file_id") or "file"
            warn_once("part:input_file", "input_file parts are not supported by Chat Completions; replaced by a placeholder")
            parts.append({"type": "text", "text": f"[file {name} omitted: files are not supported by this provider]"})
        else:
            warn_once(f"part:{kind}", f"dropping unsupported content part type {kind!r}")
    if not any(p["type"] == "image_url" for p in parts):
        return "".join(p["text"] for p in parts)
    filler = rules.messages.get("image_needs_text")
    if filler is not None and not any(p["type"] == "text" and p["text"].strip() for p in parts):
        parts.insert(0, {"type": "text", "text": filler})
    return parts


class _Memo:
    """A pure function of one string, remembered across requests: Codex sends the whole history
    every turn, so the same sealed reasoning and tool-call arguments come back each time (~100 of
    each in a 500-item request). Bounded by the characters held; emptied when full."""

    def __init__(self, fn, limit: int = 4_000_000) -> None:
        self.fn, self.limit, self.size, self.cache = fn, limit, 0, {}

    def __call__(self, key: str):
        try:
            return self.cache[key]
        except KeyError:
            pass
        value = self.fn(key)
        size = len(key) + (len(value) if isinstance(value, str) else 0)
        if self.size + size > self.limit:
            self.cache.clear()
            self.size = 0
        if size <= self.limit:
            self.cache[key] = value
            self.size += size
        return value


_unseal = _Memo(envelope.unseal)
_repair = _Memo(jsonfix.repair)


def _reasoning_text(item: dict) -> str:
    value = item.get("encrypted_content")
    sealed = _unseal(value) if isinstance(value, str) else None
    if sealed is not None:
        return sealed
    for key, kind in (("content", "reasoning_text"), ("summary", "summary_text")):
        texts = [p.get("text", "") for p in item.get(key) or [] if isinstance(p, dict) and p.get("type", kind) == kind]
        if any(texts):
            return "\n\n".join(t for t in texts if t)
    return ""


def _arguments(raw: Any) -> str:
    """Tool-call arguments as valid JSON text, whatever the history holds."""
    if isinstance(raw, (dict, list)):
        return json.dumps(raw, ensure_ascii=False)
    text = raw if isinstance(raw, str) else ""
    if not text.strip():
        return "{}"
    fixed = _repair(text)
    return fixed if fixed is not None else json.dumps({"raw_arguments": text}, ensure_ascii=False)


def _output_text(output: Any, rules: Rules, model: Model) -> tuple[str, list[dict]]:
    """A tool output as (string for the tool message, image parts to show in a follow-up user message)."""
    if isinstance(output, str):
        return output, []
    if not isinstance(output, list):
        return json.dumps(output, ensure_ascii=False) if output is not None else "", []
    texts, images = [], []
    for part in output:
        if not isinstance(part, dict):
            continue
        if part.get("type") in ("input_image", "image_url"):
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if model.vision and isinstance(url, str):
                images.append({"type": "image_url", "image_url": {"url": url}})
                texts.append("[image attached in the next message]")
            else:
                texts.append(rules.messages["vision_placeholder"].format(model=model.id))
        else:
            texts.append(_text_of([part]))
    return "\n".join(t for t in texts if t), images


class _History:
    """Builds the Chat message list from Responses items, folding one model turn into one assistant message."""

    def __init__(self, rules: Rules, model: Model, names: dict[tuple[str, str], str], turn: Turn) -> None:
        self.rules, self.model, self.names, self.turn = rules, model, names, turn
        self.messages: list[dict] = []
        self.assistant: dict | None = None
        self.pending_images: list[dict] = []

    def flush(self) -> None:
        self.assistant = None
        if self.pending_images:
            images, self.pending_images = self.pending_images, []
            self.messages.append({"role": "user", "content": [{"type": "text", "text": "Images returned by the tool calls above:"}, *images]})

    def current(self) -> dict:
        if self.assistant is None:
            self.flush()
            self.assistant = {"role": "assistant", "content": "", "_reasoning": "", "tool_calls": []}
            self.messages.append(self.assistant)
        return self.assistant

    def call(self, call_id: Any, name: str, arguments: str) -> None:
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest("a tool call item has no 'call_id'", "input")
        self.current()["tool_calls"].append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})

    def add(self, item: Any) -> None:
        if not isinstance(item, dict):
            raise BadRequest("each entry of 'input' must be an object", "input")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind is not None and not isinstance(kind, str):
            raise BadRequest(f"an input item's 'type' must be a string, not {type(kind).__name__}", "input")
        if kind == "message":
            self.message(item)
        elif kind == "reasoning":
            text = _reasoning_text(item)
            cur = self.assistant
            if cur is not None and (cur["content"] or cur["tool_calls"]):
                self.flush()
            cur = self.current()
            cur["_reasoning"] = (cur["_reasoning"] + "\n\n" + text) if cur["_reasoning"] and text else (cur["_reasoning"] or text)
        elif kind == "function_call":
            ns = item.get("namespace") or ""
            name = str(item.get("name") or "")
            self.call(item.get("call_id"), self.names.get((ns, name), name if not ns else f"{ns}__{name}"[:64]), _arguments(item.get("arguments")))
        elif kind == "custom_tool_call":
            name = str(item.get("name") or "")
            args = json.dumps({self.turn.custom_param: item.get("input") or ""}, ensure_ascii=False)
            self.call(item.get("call_id"), self.names.get(("", name), name), args)
        elif kind == "local_shell_call":
            action = item.get("action") or {}
            args = {"command": action.get("command") or []}
            if action.get("working_directory"):
                args["workdir"] = action["working_directory"]
            if action.get("timeout_ms"):
                args["timeout_ms"] = action["timeout_ms"]
            self.call(item.get("call_id") or item.get("id"), self.rules.tools["local_shell_name"], json.dumps(args, ensure_ascii=False))
        elif kind in TOOL_OUTPUTS:
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise BadRequest(f"a {kind} item has no 'call_id'", "input")
            text, images = _output_text(item.get("output"), self.rules, self.model)
            self.assistant = None  # a model turn ends where its tool outputs begin
            self.messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
            self.pending_images += images
        elif kind in COMPACTION_ITEMS:
            self.compaction(item)
        elif kind == "compaction_trigger":
            # Server-side compaction asks for one `compaction` item holding OpenAI's encrypted state: a
            # Chat provider has no such thing. Codex compacts inline (an ordinary turn) with custom providers.
            raise BadRequest("'compaction_trigger' asks for OpenAI's server-side compaction, which a Chat "
                             "Completions provider cannot do; let Codex compact inline (the default for a "
                             "custom model provider)", "input", code="unsupported_compaction")
        elif kind in ("item_reference", "web_search_call", "image_generation_call", "file_search_call",
                      "code_interpreter_call", "computer_call", "computer_call_output", "mcp_list_tools"):
            warn_once(f"item:{kind}", f"ignoring input item type {kind!r}: no Chat Completions equivalent")
        else:
            raise BadRequest(f"unsupported input item type {kind!r}", "input")

    def compaction(self, item: dict) -> None:
        """History compacted elsewhere: keep a readable summary, drop (and say so) an opaque blob."""
        summary = _text_of(item.get("summary") or item.get("content"))
        if summary:
            self.flush()
            self.messages.append({"role": "user", "content": COMPACTED_PREFIX + summary})
            return
        # OpenAI's encrypted compaction state: only OpenAI can read it. Refusing would end a resumed
        # session for good; dropping loses what it summarised, so the loss is logged and noted on the flow.
        note = (f"dropped a {item.get('type')!r} input item: its encrypted content is OpenAI's compacted "
                "history, which this provider cannot read; the model does not see what it summarised")
        self.turn.warnings.append(note)
        log.warning(note)

    def message(self, item: dict) -> None:
        role = item.get("role")
        content = item.get("content")
        if role == "assistant":
            text = _text_of(content)
            cur = self.assistant
            if cur is not None and cur["tool_calls"]:
                self.flush()
            cur = self.current()
            cur["content"] = "\n\n".join(t for t in (cur["content"], text) if t)
            return
        self.flush()
        if role in ("system", "developer"):
            chat_role = "system" if role == "system" else self.rules.messages["developer_role"]
            self.messages.append({"role": chat_role, "content": _text_of(content)})
        elif role == "user":
            self.messages.append({"role": "user", "content": _user_parts(content, self.rules, self.model)})
        else:
            raise BadRequest(f"unsupported message role {role!r}", "input")


def chat_messages(body: dict, rules: Rules, model: Model, turn: Turn, names: dict) -> list[dict]:
    hist = _History(rules, model, names, turn)
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        hist.messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    elif items is None:
        items = []
    elif not isinstance(items, list):
        raise BadRequest("'input' must be a string or an array of items", "input")
    for item in items:
        hist.add(item)
    hist.flush()
    # An assistant turn with nothing said or called (Codex interrupted after the reasoning) says nothing.
    merged = [m for m in _merge_assistants(hist.messages) if m["role"] != "assistant" or m["content"] or m["tool_calls"]]
    messages = _pair_tool_messages(merged)
    if not any(m["role"] != "system" for m in messages):
        raise BadRequest("'input' must contain at least one message", "input")
    _finish_assistants(messages, rules, turn)
    return messages


def _merge_assistants(messages: list[dict]) -> list[dict]:
    out: list[dict] = []
    for msg in messages:
        prev = out[-1] if out else None
        if msg["role"] == "assistant" and prev is not None and prev["role"] == "assistant":
            prev["content"] = "\n\n".join(t for t in (prev["content"], msg["content"]) if t)
            prev["_reasoning"] = "\n\n".join(t for t in (prev["_reasoning"], msg["_reasoning"]) if t)
            prev["tool_calls"] += msg["tool_calls"]
        else:
            out.append(msg)
    return out


def _pair_tool_messages(messages: list[dict]) -> list[dict]:
    """Each assistant tool_calls message directly followed by exactly one tool message per call, in call order."""
    outputs: dict[str, dict] = {}
    for msg in messages:
        if msg["role"] == "tool":
            outputs.setdefault(msg["tool_call_id"], msg)
    called = {c["id"] for m in messages if m["role"] == "assistant" for c in m["tool_calls"]}
    out: list[dict] = []
    for msg in messages:
        if msg["role"] == "tool":
            if msg["tool_call_id"] not in called:  # orphan: keep what it said, as user-visible context
                out.append({"role": "user", "content": f"[output of an earlier tool call {msg['tool_call_id']}]\n{msg['content']}"})
            continue
        out.append(msg)
        if msg["role"] == "assistant" and msg["tool_calls"]:
            seen: set[str] = set()
            calls = []
            for call in msg["tool_calls"]:
                if call["id"] in seen:
                    continue
                seen.add(call["id"])
                calls.append(call)
                out.append(outputs.pop(call["id"], None) or {"role": "tool", "tool_call_id": call["id"], "content": INTERRUPTED})
            msg["tool_calls"] = calls
    return out


def _finish_assistants(messages: list[dict], rules: Rules, turn: Turn) -> None:
    cfg = rules.reasoning
    field, mode = cfg["pass_back_field"], cfg["pass_back"]
    with_calls = rules.messages["assistant_content_with_tool_calls"]
    for msg in messages:
        if msg["role"] != "assistant":
            continue
        reasoning = msg.pop("_reasoning")
        calls = msg.pop("tool_calls")
        if calls:
            msg["tool_calls"] = calls
            if with_calls == "omit" and not msg["content"]:
                del msg["content"]
            elif with_calls == "null" and not msg["content"]:
                msg["content"] = None
        if turn.thinking and (mode == "all" or (mode == "tool_calls" and calls)):
            msg[field] = reasoning or cfg["placeholder"]
