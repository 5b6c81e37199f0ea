"""Responses request -> Chat Completions request, as the provider's rules say.

The result is always a request the provider accepts: history is repaired (tool-call pairing,
reasoning pass-back, image rules) instead of forwarding something that earns a 400, because a
forwarded 400 makes Codex resend the same body. Bad client input raises BadRequest, which the
addon turns into a Responses-shaped 4xx.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mimo2codex import envelope, hooks, jsonfix
from mimo2codex.sse import dumps
from mimo2codex.rules import EFFORT_ORDER, Model, ParamRule, Rules
from mimo2codex.turn import Turn

log = logging.getLogger(__name__)

# Request fields repeated in the Response object (the openai SDK and Codex read some of them back).
ECHO = ("instructions", "max_output_tokens", "metadata", "parallel_tool_calls", "previous_response_id",
        "reasoning", "store", "temperature", "text", "tool_choice", "tools", "top_p", "truncation", "user")
TOOL_OUTPUTS = {"function_call_output", "custom_tool_call_output", "local_shell_call_output"}
TOOL_CALLS = {"function_call", "custom_tool_call", "local_shell_call"}
INTERRUPTED = "aborted: the call was interrupted before it produced output"
_warned: set[str] = set()


class BadRequest(ValueError):
    """Client input we cannot translate; becomes an HTTP 4xx with a Responses-shaped error."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request_error", status: int = 400):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


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


def warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


# ----------------------------------------------------------------------------------------------


def to_chat(body: Any, rules: Rules, *, thinking: bool = True, show_reasoning: bool = True,
            web_search: bool = False) -> tuple[dict, Turn]:
    """Translate one Responses request body (parsed JSON) into (chat request, turn)."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    requested = body.get("model")
    if requested is None or requested == "":
        raise BadRequest("missing required parameter: 'model'", "model")
    _check_types(body)
    model = _model(requested, rules)
    effort = (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    think = model.thinking == "always" or (thinking and bool(model.thinking) and effort != "none")
    turn = Turn(model=requested, upstream_model=model.id, stream=bool(body.get("stream", False)),
                thinking=think, show_reasoning=show_reasoning and think,
                custom_param=rules.tools["freeform_param"],
                echo={k: body[k] for k in ECHO if k in body})

    chat: dict[str, Any] = {"model": model.id}
    tools, tool_names = _tools(body.get("tools"), rules, turn, web_search)
    chat["messages"] = _messages(body, rules, model, turn, tool_names)
    _reasoning(chat, rules, model, think, effort)
    _params(chat, body, rules, model, think, tool_names)
    if tools and body.get("tool_choice") != "none":
        chat["tools"] = tools
    else:
        chat.pop("tool_choice", None)
        chat.pop("parallel_tool_calls", None)
    chat.update(json.loads(json.dumps(rules.set)))  # deep copy: rules are shared across requests
    for name in rules.hooks["request"]:
        hooks.REGISTRY["request"][name](chat, turn, rules)
    return chat, turn


def encode(chat: dict) -> bytes:
    """The Chat request as compact UTF-8 JSON, the bytes `json.dumps(chat, ensure_ascii=False,
    separators=(",", ":")).encode()` gives, serialised message by message.

    One non-Latin-1 character (Codex's instructions hold several) makes a whole-payload string
    two bytes per character and its UTF-8 encoding a real transcode (~5 ms of a 4 MB request);
    in groups of 16 messages, only the groups that hold one pay for it. A lone surrogate (JSON allows
    `\\ud800`) makes its own part ASCII-escaped instead of raising.
    """
    parts = []
    for key, value in chat.items():
        if key == "messages" and type(value) is list:  # in groups: one call per message costs more on many small ones
            groups = (dumps(value[i : i + 16])[1:-1] for i in range(0, len(value), 16))
            parts.append(b'"messages":[' + b",".join(groups) + b"]")
        else:
            parts.append(dumps(key) + b":" + dumps(value))
    return b"{" + b",".join(parts) + b"}"


# Responses fields with a fixed type: wrong ones are refused here, with the client's own field name,
# rather than forwarded for the provider to reject under a name the client never sent.
_TYPES = {
    "model": (str, "a string"), "stream": (bool, "a boolean"), "instructions": (str, "a string"),
    "max_output_tokens": (int, "an integer"), "temperature": ((int, float), "a number"),
    "top_p": ((int, float), "a number"), "parallel_tool_calls": (bool, "a boolean"),
    "reasoning": (dict, "an object"), "text": (dict, "an object"), "metadata": (dict, "an object"),
}
_MINIMUM = {"max_output_tokens": 1, "temperature": 0, "top_p": 0}


def _check_types(body: dict) -> None:
    for name, (kind, what) in _TYPES.items():
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise BadRequest(f"invalid type for '{name}': expected {what}, got {type(value).__name__} {json.dumps(value)[:40]}", name)
        if name in _MINIMUM and value < _MINIMUM[name]:
            raise BadRequest(f"invalid value for '{name}': must be at least {_MINIMUM[name]}, got {value}", name)
    if isinstance(body.get("model"), str) and not body["model"].strip():
        raise BadRequest("missing required parameter: 'model'", "model")


def _model(requested: str, rules: Rules) -> Model:
    model = rules.resolve_model(requested)
    if model is not None:
        return model
    if rules.unknown_models == "reject":
        known = ", ".join(rules.listed_models())
        raise BadRequest(f"model '{requested}' is not served by {rules.name}; known models: {known}", "model",
                         code="model_not_found")
    # Pass-through providers (local servers, routers) serve whatever they have; models.fallback says what to assume.
    bare = rules.strip_suffix.sub("", requested) if rules.strip_suffix else requested
    fb = rules.fallback
    if fb is not None:
        return Model(id=rules.aliases.get(bare, bare), context=fb.context, max_output=fb.max_output, vision=fb.vision,
                     thinking=fb.thinking, efforts=fb.efforts)
    return Model(id=rules.aliases.get(bare, bare), context=0, max_output=0, vision=True, thinking=False, efforts=())


# ----------------------------------------------------------------------------------------------
# Tools


def _tools(spec: Any, rules: Rules, turn: Turn, web_search: bool) -> tuple[list[dict], dict[tuple[str, str], str]]:
    """Chat tools + a map (namespace, name) -> flat name ("" namespace for top-level tools)."""
    if spec is None:
        return [], {}
    if not isinstance(spec, list):
        raise BadRequest("'tools' must be an array", "tools")
    cfg = rules.tools
    out: list[dict] = []
    names: dict[tuple[str, str], str] = {}
    taken: set[str] = set()
    customs: set[str] = set()

    def flat_name(ns: str, name: str) -> str:
        flat = name if name not in taken else f"{ns}__{name}"[:64]
        taken.add(flat)
        names[(ns, name)] = flat
        if ns:
            turn.namespaces[flat] = (ns, name)
        return flat

    def add(tool: dict, ns: str = "") -> None:
        kind = tool.get("type", "function")
        strategy = cfg["map"].get(kind)
        if strategy is None:
            if cfg["unknown"] == "warn":
                warn_once(f"tool:{kind}", f"dropping unsupported tool type {kind!r} (not in {rules.path} tools.map)")
            return
        if strategy == "drop":
            return
        if strategy == "flatten":
            inner = tool.get("tools") or []
            for sub in inner if isinstance(inner, list) else []:
                if isinstance(sub, dict):
                    add(sub, tool.get("name") or ns)
            return
        if strategy == "web_search":
            if cfg["web_search"] == "always" or (cfg["web_search"] == "opt_in" and web_search):
                if not any(t.get("type") == "web_search" for t in out):
                    ws = {"type": "web_search"}
                    for key in ("user_location", "force_search", "max_keyword", "limit"):
                        if tool.get(key) is not None:
                            ws[key] = tool[key]
                    out.append(ws)
            else:
                warn_once("tool:web_search", f"web_search dropped: {rules.name} needs it enabled explicitly "
                          "(start with --web-search once the provider's web search is activated)")
            return
        name = tool.get("name") or (tool.get("function") or {}).get("name")
        if strategy == "local_shell":
            name = cfg["local_shell_name"]
        if not isinstance(name, str) or not name:
            raise BadRequest(f"tool of type {kind!r} has no name", "tools")
        if (ns, name) in names:
            turn.warnings.append(f"duplicate tool {name!r} dropped")
            return
        flat = flat_name(ns, name)
        if strategy == "local_shell":
            turn.local_shell = flat
            fn = {"name": flat, "description": "Run a shell command and return its output.",
                  "parameters": {"type": "object", "properties": {
                      "command": {"type": "array", "items": {"type": "string"}, "description": "argv of the command"},
                      "workdir": {"type": "string"}, "timeout_ms": {"type": "integer"}},
                      "required": ["command"]}}
        elif strategy == "freeform":
            customs.add(flat)
            fmt = tool.get("format") or {}
            grammar = fmt.get("definition") if isinstance(fmt, dict) else None
            hint = f"\n\nThe `{turn.custom_param}` text must follow this {fmt.get('syntax', '')} grammar:\n{grammar}" if grammar else ""
            fn = {"name": flat, "description": (tool.get("description") or "") + hint,
                  "parameters": {"type": "object",
                                 "properties": {turn.custom_param: {"type": "string", "description": "The raw, freeform input for this tool."}},
                                 "required": [turn.custom_param], "additionalProperties": False}}
        else:
            src = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            fn = {"name": flat}
            if src.get("description"):
                fn["description"] = src["description"]
            fn["parameters"] = src.get("parameters") or {"type": "object", "properties": {}}
            if isinstance(src.get("strict"), bool):  # strict: null is a 400 on MiMo
                fn["strict"] = src["strict"]
        out.append({"type": "function", "function": fn})

    for tool in spec:
        if not isinstance(tool, dict):
            raise BadRequest("each entry of 'tools' must be an object", "tools")
        add(tool)
    turn.custom_tools = frozenset(customs)
    return out, names


# ----------------------------------------------------------------------------------------------
# Messages


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
        elif kind in ("item_reference", "compaction", "web_search_call", "image_generation_call", "file_search_call",
                      "code_interpreter_call", "computer_call", "computer_call_output", "mcp_list_tools"):
            warn_once(f"item:{kind}", f"ignoring input item type {kind!r}: no Chat Completions equivalent")
        else:
            raise BadRequest(f"unsupported input item type {kind!r}", "input")

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


def _messages(body: dict, rules: Rules, model: Model, turn: Turn, names: dict) -> list[dict]:
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


# ----------------------------------------------------------------------------------------------
# Parameters


def _get(body: dict, dotted: str) -> Any:
    value: Any = body
    for key in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _reasoning(chat: dict, rules: Rules, model: Model, think: bool, effort: Any) -> None:
    cfg = rules.reasoning
    chat.update(json.loads(json.dumps(cfg["enable"] if think else cfg["disable"])))
    # A model listing no efforts takes no effort knob at all.
    if not think or not cfg.get("effort_field") or not isinstance(effort, str) or not model.efforts:
        return
    value = cfg["effort_map"].get(effort, effort)
    if value is None:
        return
    allowed = [e for e in model.efforts if e != "none"]
    if allowed and value not in allowed:
        rank = EFFORT_ORDER.index(value) if value in EFFORT_ORDER else EFFORT_ORDER.index("medium")
        value = min(allowed, key=lambda e: (abs(EFFORT_ORDER.index(e) - rank), -EFFORT_ORDER.index(e)))
    # A dotted field ("reasoning.effort", OpenRouter) lands inside the object `enable` may have started.
    *parents, leaf = cfg["effort_field"].split(".")
    target = chat
    for key in parents:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[leaf] = value


def _params(chat: dict, body: dict, rules: Rules, model: Model, think: bool, names: dict) -> None:
    for rule in rules.params:
        value = _get(body, rule.source)
        if value is None and rule.default is not None:
            value = model.max_output or None if rule.default == "max_output" else rule.default
        if value is None or rule.to is None or (think and rule.thinking == "drop"):
            continue
        value = _param_value(rule, value, model, names)
        if value is not None:
            chat[rule.to] = value


def _kind(value: Any) -> Any:
    return value.get("type") if isinstance(value, dict) else value


def _param_value(rule: ParamRule, value: Any, model: Model, names: dict) -> Any:
    if rule.map and _kind(value) in rule.map:
        value = rule.map[_kind(value)]
    if rule.allow is not None and _kind(value) not in rule.allow:
        value = rule.otherwise
        if value is None:
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if rule.clamp == "max_output" and model.max_output:
            value = min(int(value), model.max_output)
        if rule.min is not None:
            value = max(value, rule.min)
        if rule.max is not None:
            value = min(value, rule.max)
        return value
    if rule.source == "tool_choice" and isinstance(value, dict):
        name = value.get("name") or (value.get("function") or {}).get("name")
        flat = names.get(("", name), name)
        return {"type": "function", "function": {"name": flat}}
    if rule.source == "text.format":
        if isinstance(value, str):
            return {"type": value}
        if value.get("type") == "json_schema":
            schema = {k: value[k] for k in ("name", "schema", "strict", "description") if k in value}
            return {"type": "json_schema", "json_schema": schema}
        return {"type": value.get("type", "text")}
    return value
