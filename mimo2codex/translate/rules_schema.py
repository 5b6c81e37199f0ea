"""The rules language as data: SCHEMA, and the checker that holds a parsed file to it.

Types are checked per file (with that file's lines), required keys on the merged result. Knows
nothing of files or of the Rules model (rules.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mimo2codex.translate.rules_yaml import line_of

EFFORT_ORDER = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


class RulesError(ValueError):
    def __init__(self, path: Path | str, line: int | None, key: str, reason: str) -> None:
        self.path, self.line, self.key, self.reason = str(path), line, key, reason
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {key or '<top>'}: {reason}")


# ----------------------------------------------------------------------------------------------
# Schema: key -> type spec. Specs: a Python type, ("list", spec), ("map", spec), ("enum", ...),
# ("regex",), ("either", spec, spec), ("any",), or a nested dict schema. Keys ending in "!" are
# required (checked on the merged result).

STATUS = ("either", int, ("list", int))
THINKING = ("either", bool, ("enum", "always"))  # "always": the model cannot be told to stop thinking
MODEL_FIELDS = {
    "context!": int,
    "max_output!": int,
    "vision!": bool,
    "thinking!": THINKING,
    "efforts!": ("list", ("enum", *EFFORT_ORDER)),
}
FINISH = ("enum", "stop", "length", "tool_calls", "content_filter", "error")
SCALAR = ("either", str, int, float, bool)
PARAM = {
    "to": ("either", str, type(None)),
    "min": float,
    "max": float,
    "clamp": ("enum", "max_output"),
    "thinking": ("enum", "drop", "keep"),
    "allow": ("list", SCALAR),
    "otherwise": ("either", SCALAR, type(None)),
    "map": ("map", ("either", SCALAR, type(None))),
    "default": SCALAR,
}
SCHEMA: dict[str, Any] = {
    "provider!": str,
    "name!": str,
    "base_url!": str,
    "alt_base_urls": ("map", str),
    "chat_path!": str,
    "auth!": {"header!": str, "scheme!": str, "env!": str, "required": bool},
    "models!": {
        "default!": str,
        "unknown!": ("enum", "reject", "pass"),
        "strip_suffix": ("either", ("regex",), type(None)),
        "list!": ("list", {"id!": str, **MODEL_FIELDS}),
        "aliases": ("map", str),
        "fallback": ("either", MODEL_FIELDS, type(None)),
    },
    "reasoning!": {
        "enable!": ("map", ("any",)),
        "disable!": ("map", ("any",)),
        "effort_field": ("either", str, type(None)),
        "effort_map": ("map", ("either", str, type(None))),
        "fields!": ("list", str),
        "pass_back!": ("enum", "all", "tool_calls", "none"),
        "pass_back_field!": str,
        "pass_back_as": ("enum", "field", "think_tags", "reasoning_details"),
        "think_tags": ("either", ("list", str), type(None)),
        "placeholder!": str,
    },
    "params!": ("map", PARAM),
    "set": ("map", ("any",)),
    "messages!": {
        "developer_role!": ("enum", "system", "developer", "user"),
        "image_needs_text": ("either", str, type(None)),
        "vision_placeholder!": str,
        "tool_content!": ("enum", "string", "parts"),
        "assistant_content_with_tool_calls!": ("enum", "omit", "empty", "null"),
        "system": ("enum", "keep", "merge"),
    },
    "tools!": {
        "map!": ("map", ("enum", "function", "freeform", "flatten", "local_shell", "web_search", "drop")),
        "unknown!": ("enum", "warn", "drop"),
        "freeform_param!": str,
        "local_shell_name!": str,
        "name_pattern!": ("regex",),
        "web_search!": ("enum", "opt_in", "always", "never"),
    },
    "errors!": (
        "list",
        {
            "status": STATUS,
            "match": ("regex",),
            "code!": str,
            "message": str,
            "retry": bool,
            "http": bool,
        },
    ),
    "retry!": {"attempts!": int, "base_delay!": float, "max_wait!": float},
    "drop": ("list", str),
    "response": {
        "finish_reasons": ("map", FINISH),
        "usage": {"cached_tokens": ("list", str), "reasoning_tokens": ("list", str)},
    },
    "hooks": {"request": ("list", str), "chunk": ("list", str)},
}


def _type_name(spec: Any) -> str:
    if isinstance(spec, dict):
        return "a mapping"
    if isinstance(spec, tuple):
        kind = spec[0]
        if kind == "list":
            return f"a list of {_type_name(spec[1])}"
        if kind == "map":
            return "a mapping"
        if kind == "enum":
            return "one of " + ", ".join(map(str, spec[1:]))
        if kind == "regex":
            return "a regular expression"
        if kind == "either":
            return " or ".join(_type_name(s) for s in spec[1:])
        return "anything"
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false", type(None): "null"}[spec]


def _matches(value: Any, spec: Any) -> bool:
    """Shallow type test used to pick a branch of ("either", ...)."""
    if isinstance(spec, dict):
        return isinstance(value, dict)
    if isinstance(spec, tuple):
        kind = spec[0]
        if kind == "list":
            return isinstance(value, list)
        if kind == "map":
            return isinstance(value, dict)
        if kind == "enum":
            return value in spec[1:]
        if kind == "regex":
            return isinstance(value, str)
        if kind == "either":
            return any(_matches(value, s) for s in spec[1:])
        return True
    if spec is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, spec)


def check(value: Any, spec: Any, path: Path, key: str, parent: Any, pkey: Any) -> None:
    line = line_of(parent, pkey)
    if not _matches(value, spec):
        raise RulesError(path, line, key, f"must be {_type_name(spec)}, got {value!r}")
    if isinstance(spec, dict):
        for k, v in value.items():
            sub = spec.get(k, spec.get(f"{k}!", _MISSING))
            if sub is _MISSING:
                known = ", ".join(s.rstrip("!") for s in spec)
                raise RulesError(path, line_of(value, k), f"{key}.{k}" if key else str(k), f"unknown key (known: {known})")
            check(v, sub, path, f"{key}.{k}" if key else str(k), value, k)
    elif isinstance(spec, tuple):
        kind = spec[0]
        if kind == "list":
            for i, item in enumerate(value):
                check(item, spec[1], path, f"{key}[{i}]", value, i)
        elif kind == "map":
            for k, v in value.items():
                check(v, spec[1], path, f"{key}.{k}", value, k)
        elif kind == "regex":
            try:
                re.compile(value)
            except re.error as e:
                raise RulesError(path, line, key, f"invalid regular expression: {e}") from None
        elif kind == "either":
            branch = next(s for s in spec[1:] if _matches(value, s))
            check(value, branch, path, key, parent, pkey)


_MISSING = object()


def required(value: Any, spec: Any, path: Path, key: str = "") -> None:
    if isinstance(spec, dict) and isinstance(value, dict):
        for k, sub in spec.items():
            name = k.rstrip("!")
            sub_key = f"{key}.{name}" if key else name
            if k.endswith("!") and value.get(name) is None:
                raise RulesError(path, None, sub_key, "missing (required, and not given by rules/defaults.yaml)")
            if name in value:
                required(value[name], sub, path, sub_key)
    elif isinstance(spec, tuple) and spec[0] == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            required(item, spec[1], path, f"{key}[{i}]")
    elif isinstance(spec, tuple) and spec[0] == "map" and isinstance(value, dict):
        for k, item in value.items():
            required(item, spec[1], path, f"{key}.{k}")
    elif isinstance(spec, tuple) and spec[0] == "either":
        branch = next((s for s in spec[1:] if _matches(value, s)), None)
        if branch is not None:
            required(value, branch, path, key)
