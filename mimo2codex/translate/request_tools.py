"""Codex's tools -> Chat tools: function, custom (apply_patch) and namespace tools flattened, builtins as the rules allow.

Part of the request mapping (request.py); returns the tools and the name map the messages need.
"""

from __future__ import annotations

from typing import Any

from mimo2codex.translate.request_base import BadRequest, warn_once
from mimo2codex.translate.rules import Rules
from mimo2codex.translate.turn import Turn


def chat_tools(spec: Any, rules: Rules, turn: Turn, web_search: bool) -> tuple[list[dict], dict[tuple[str, str], str]]:
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
