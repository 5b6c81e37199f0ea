"""Provider rules: YAML files that declare how Responses maps onto one Chat Completions provider.

A provider file is deep-merged over `rules/defaults.yaml` (the generic OpenAI-compatible mapping),
so it states only what differs. Each file is checked against SCHEMA with its own line numbers;
a bad file raises RulesError naming file, line, key and reason. The language is documented in
rules/README.md.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mimo2codex.paths import RULES_DIR

DEFAULTS = RULES_DIR / "defaults.yaml"
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


class _Map(dict):
    """A YAML mapping that remembers its line and each key's line (1-based), for error messages."""

    line: int | None = None
    lines: dict


class _Seq(list):
    line: int | None = None
    lines: dict


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader keeping line numbers, refusing duplicate keys, with YAML 1.2 booleans (only
    true/false: `no`, `on`, `yes` stay strings, as a model id or a value in a rules file means them)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _construct_map(loader: _Loader, node: yaml.MappingNode):
    data = _Map()
    data.line, data.lines = node.start_mark.line + 1, {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if key in data.lines:
            raise yaml.constructor.ConstructorError(None, None, f"found duplicate key {key!r}", key_node.start_mark)
        data.lines[key] = key_node.start_mark.line + 1
        data[key] = loader.construct_object(value_node)


def _construct_seq(loader: _Loader, node: yaml.SequenceNode):
    data = _Seq()
    data.line, data.lines = node.start_mark.line + 1, {}
    yield data
    for i, item in enumerate(node.value):
        data.lines[i] = item.start_mark.line + 1
        data.append(loader.construct_object(item))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _line(node: Any, key: Any = None) -> int | None:
    if not isinstance(node, (_Map, _Seq)):
        return None
    return node.lines.get(key, node.line) if key is not None else node.line


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


def _check(value: Any, spec: Any, path: Path, key: str, parent: Any, pkey: Any) -> None:
    line = _line(parent, pkey)
    if not _matches(value, spec):
        raise RulesError(path, line, key, f"must be {_type_name(spec)}, got {value!r}")
    if isinstance(spec, dict):
        for k, v in value.items():
            sub = spec.get(k, spec.get(f"{k}!", _MISSING))
            if sub is _MISSING:
                known = ", ".join(s.rstrip("!") for s in spec)
                raise RulesError(path, _line(value, k), f"{key}.{k}" if key else str(k), f"unknown key (known: {known})")
            _check(v, sub, path, f"{key}.{k}" if key else str(k), value, k)
    elif isinstance(spec, tuple):
        kind = spec[0]
        if kind == "list":
            for i, item in enumerate(value):
                _check(item, spec[1], path, f"{key}[{i}]", value, i)
        elif kind == "map":
            for k, v in value.items():
                _check(v, spec[1], path, f"{key}.{k}", value, k)
        elif kind == "regex":
            try:
                re.compile(value)
            except re.error as e:
                raise RulesError(path, line, key, f"invalid regular expression: {e}") from None
        elif kind == "either":
            branch = next(s for s in spec[1:] if _matches(value, s))
            _check(value, branch, path, key, parent, pkey)


_MISSING = object()


def _required(value: Any, spec: Any, path: Path, key: str = "") -> None:
    if isinstance(spec, dict) and isinstance(value, dict):
        for k, sub in spec.items():
            name = k.rstrip("!")
            sub_key = f"{key}.{name}" if key else name
            if k.endswith("!") and value.get(name) is None:
                raise RulesError(path, None, sub_key, "missing (required, and not given by rules/defaults.yaml)")
            if name in value:
                _required(value[name], sub, path, sub_key)
    elif isinstance(spec, tuple) and spec[0] == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            _required(item, spec[1], path, f"{key}[{i}]")
    elif isinstance(spec, tuple) and spec[0] == "map" and isinstance(value, dict):
        for k, item in value.items():
            _required(item, spec[1], path, f"{key}.{k}")
    elif isinstance(spec, tuple) and spec[0] == "either":
        branch = next((s for s in spec[1:] if _matches(value, s)), None)
        if branch is not None:
            _required(value, branch, path, key)


def _read(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        hint = f" (providers: {', '.join(provider_names())})" if not path.suffix else ""
        raise RulesError(path, None, "", f"no such rules file or provider{hint}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise RulesError(path, mark.line + 1 if mark else None, "", f"not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RulesError(path, 1, "", "a rules file must be a mapping at the top level")
    _check(data, SCHEMA, path, "", None, None)  # types only: a file may be partial
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


# ----------------------------------------------------------------------------------------------
# The typed view the translator uses.


@dataclass(frozen=True)
class Model:
    id: str
    context: int
    max_output: int
    vision: bool
    thinking: bool | str  # True/False, or "always" (thinking cannot be switched off)
    efforts: tuple[str, ...]  # empty: the model takes no effort knob, none is sent


@dataclass(frozen=True)
class ParamRule:
    source: str  # dotted path in the Responses request, e.g. "text.format"
    to: str | None
    min: float | None = None
    max: float | None = None
    clamp: str | None = None
    thinking: str = "keep"
    allow: tuple | None = None
    otherwise: Any = None
    map: dict = field(default_factory=dict)
    default: Any = None  # sent when the client gave nothing; "max_output" = the model's cap


@dataclass(frozen=True)
class ErrorRule:
    statuses: tuple[int, ...]  # empty = any status
    match: re.Pattern | None
    code: str
    message: str | None
    retry: bool
    http: bool = False  # answer with the HTTP status even to stream clients (see rules/README.md)

    def applies(self, status: int, text: str) -> bool:
        return (not self.statuses or status in self.statuses) and (self.match is None or bool(self.match.search(text)))


@dataclass(frozen=True)
class Rules:
    path: str
    provider: str
    name: str
    base_url: str
    alt_base_urls: dict[str, str]
    chat_path: str
    auth_header: str
    auth_scheme: str
    auth_env: str
    auth_required: bool  # False: local servers that take no key; the auth header is then omitted
    default_model: str
    unknown_models: str
    strip_suffix: re.Pattern | None
    models: dict[str, Model]
    aliases: dict[str, str]
    reasoning: dict
    params: tuple[ParamRule, ...]
    set: dict
    messages: dict
    tools: dict
    errors: tuple[ErrorRule, ...]
    retry: dict
    hooks: dict[str, tuple[str, ...]]  # named hooks plus the built-ins the declarative keys compile to
    fallback: Model | None = None  # what an unlisted model id is taken to be when models.unknown is pass
    drop: tuple[str, ...] = ()
    response: dict = field(default_factory=dict)

    def resolve_model(self, requested: str) -> Model | None:
        """The model a client id stands for (aliases and the `[1m]`-style suffix applied)."""
        name = requested.strip()
        if self.strip_suffix is not None:
            name = self.strip_suffix.sub("", name)
        name = self.aliases.get(name, name)
        return self.models.get(name)

    def listed_models(self) -> list[str]:
        """Ids offered on GET /v1/models: every model, plus its suffixed 1M-context spelling."""
        ids = list(self.models)
        if self.strip_suffix is not None and "1m" in self.strip_suffix.pattern.lower():
            ids += [f"{m}[1m]" for m in self.models]
        return ids

    def base_url_env(self) -> str:
        """MIMO_API_KEY -> MIMO_BASE_URL: each provider's URL override sits beside its key variable."""
        return self.auth_env.removesuffix("_API_KEY").removesuffix("_KEY") + "_BASE_URL"

    def upstream_url(self, override: str | None = None) -> str:
        """Where requests go: an explicit URL (--base-url, mimo_base_url), else $<PREFIX>_BASE_URL, else base_url.

        The one place for this rule: launch.py, the plain addon (main provider and routes) and compare use it.
        """
        return (override or os.environ.get(self.base_url_env(), "").strip() or self.base_url).rstrip("/")

    def auth_value(self, key: str) -> str:
        return f"{self.auth_scheme} {key}" if self.auth_scheme else key

    def chat_url(self, base_url: str | None = None) -> str:
        return (base_url or self.base_url).rstrip("/") + self.chat_path


def resolve_path(spec: str | Path | None = None) -> Path:
    """The file a `--rules`/`mimo_rules` value names: a path, or a bare provider name from rules/."""
    path = Path(spec) if spec else RULES_DIR / "mimo.yaml"
    if not path.is_file() and not path.suffix and (RULES_DIR / f"{path}.yaml").is_file():
        path = RULES_DIR / f"{path}.yaml"
    return path


def load(path: str | Path | None = None) -> Rules:
    """Load and validate a provider rules file (default: rules/mimo.yaml)."""
    path = resolve_path(path)
    data = _read(path)
    merged = _merge(_plain(_read(DEFAULTS)), _plain(data)) if path.resolve() != DEFAULTS else _plain(data)
    _required(merged, SCHEMA, path)
    return _build(merged, path, data)


def provider_names() -> list[str]:
    return sorted(p.stem for p in RULES_DIR.glob("*.yaml") if p.resolve() != DEFAULTS)


def _build(d: dict, path: Path, raw: dict) -> Rules:
    m = d["models"]
    models = {x["id"]: Model(x["id"], x["context"], x["max_output"], x["vision"], x["thinking"], tuple(x["efforts"])) for x in m["list"]}
    if len(models) != len(m["list"]):
        raise RulesError(path, _line(raw.get("models"), "list"), "models.list", "duplicate model id")
    if m["default"] not in models:
        raise RulesError(path, _line(raw.get("models"), "default"), "models.default", f"{m['default']!r} is not in models.list")
    aliases = dict(m.get("aliases") or {})
    for alias, target in aliases.items():
        if target not in models:
            raise RulesError(path, _line(raw.get("models", {}).get("aliases"), alias), f"models.aliases.{alias}", f"points to unknown model {target!r}")
    params = tuple(
        ParamRule(
            source=src,
            to=p.get("to"),
            min=p.get("min"),
            max=p.get("max"),
            clamp=p.get("clamp"),
            thinking=p.get("thinking", "keep"),
            allow=tuple(p["allow"]) if p.get("allow") is not None else None,
            otherwise=p.get("otherwise"),
            map=dict(p.get("map") or {}),
            default=p.get("default"),
        )
        for src, p in d["params"].items()
    )
    errors = tuple(
        ErrorRule(
            statuses=tuple([e["status"]] if isinstance(e.get("status"), int) else e.get("status") or ()),
            match=re.compile(e["match"]) if e.get("match") else None,
            code=e["code"],
            message=e.get("message"),
            retry=bool(e.get("retry", False)),
            http=bool(e.get("http", False)),
        )
        for e in d["errors"]
    )
    hooks = {stage: tuple((d.get("hooks") or {}).get(stage) or ()) for stage in ("request", "chunk")}
    from mimo2codex.translate import hooks as hook_registry  # local: hooks import translator helpers

    for stage, names in hooks.items():
        for name in names:
            if name.startswith(hook_registry.BUILTIN) or name not in hook_registry.REGISTRY.get(stage, {}):
                known = ", ".join(sorted(n for n in hook_registry.REGISTRY.get(stage, {}) if not n.startswith(hook_registry.BUILTIN))) or "none"
                raise RulesError(path, _line((raw.get("hooks") or {}), stage), f"hooks.{stage}", f"unknown hook {name!r} (known: {known})")
    tags = d["reasoning"].get("think_tags")
    if tags is not None and (len(tags) != 2 or not all(tags)):
        raise RulesError(path, _line(raw.get("reasoning"), "think_tags"), "reasoning.think_tags", "must be [opening tag, closing tag]")
    if d["reasoning"].get("pass_back_as") == "think_tags" and tags is None:
        raise RulesError(path, _line(raw.get("reasoning"), "pass_back_as"), "reasoning.pass_back_as",
                         "think_tags needs reasoning.think_tags")
    fb = m.get("fallback")
    fallback = Model("", fb["context"], fb["max_output"], fb["vision"], fb["thinking"], tuple(fb["efforts"])) if fb else None
    for i, dotted in enumerate(d.get("drop") or ()):
        if not hook_registry.DROP_PATH.match(dotted):
            raise RulesError(path, _line(raw.get("drop"), i), f"drop[{i}]", f"{dotted!r} is not a path like stream_options or tools[].function.strict")
    hooks = hook_registry.assemble(d, hooks)
    return Rules(
        path=str(path),
        provider=d["provider"],
        name=d["name"],
        base_url=d["base_url"],
        alt_base_urls=dict(d.get("alt_base_urls") or {}),
        chat_path=d["chat_path"],
        auth_header=d["auth"]["header"],
        auth_scheme=d["auth"]["scheme"],
        auth_env=d["auth"]["env"],
        auth_required=d["auth"].get("required", True),
        default_model=m["default"],
        unknown_models=m["unknown"],
        strip_suffix=re.compile(m["strip_suffix"], re.IGNORECASE) if m.get("strip_suffix") else None,
        models=models,
        aliases=aliases,
        reasoning=d["reasoning"],
        params=params,
        set=dict(d.get("set") or {}),
        messages=d["messages"],
        tools=d["tools"],
        errors=errors,
        retry=d["retry"],
        hooks=hooks,
        fallback=fallback,
        drop=tuple(d.get("drop") or ()),
        response=d.get("response") or {},
    )
