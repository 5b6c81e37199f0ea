"""Provider rules: YAML files that declare how Responses maps onto one Chat Completions provider.

A provider file is deep-merged over `rules/defaults.yaml` (the generic OpenAI-compatible mapping),
so it states only what differs. Each file is checked against SCHEMA (rules_schema.py) with its own
line numbers (rules_yaml.py); a bad file raises RulesError naming file, line, key and reason. The
language is documented in rules/README.md. This module: reading, merging, and the Rules model.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimo2codex.paths import RULES_DIR
from mimo2codex.translate.rules_schema import EFFORT_ORDER, SCHEMA, RulesError, check, required  # noqa: F401 (EFFORT_ORDER: request.py)
from mimo2codex.translate.rules_yaml import YAMLError, line_of, parse

DEFAULTS = RULES_DIR / "defaults.yaml"


def _read(path: Path) -> dict:
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        hint = f" (providers: {', '.join(provider_names())})" if not path.suffix else ""
        raise RulesError(path, None, "", f"no such rules file or provider{hint}") from None
    except OSError as e:  # a directory, no permission: a message, not a traceback (launch.py, check-rules, the addon)
        raise RulesError(path, None, "", f"cannot read it: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise RulesError(path, None, "", f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise RulesError(path, mark.line + 1 if mark else None, "", f"not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RulesError(path, 1, "", "a rules file must be a mapping at the top level")
    check(data, SCHEMA, path, "", None, None)  # types only: a file may be partial
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
    required(merged, SCHEMA, path)
    return _build(merged, path, data)


def provider_names() -> list[str]:
    return sorted(p.stem for p in RULES_DIR.glob("*.yaml") if p.resolve() != DEFAULTS)


def _build(d: dict, path: Path, raw: dict) -> Rules:
    m = d["models"]
    models = {x["id"]: Model(x["id"], x["context"], x["max_output"], x["vision"], x["thinking"], tuple(x["efforts"])) for x in m["list"]}
    if len(models) != len(m["list"]):
        raise RulesError(path, line_of(raw.get("models"), "list"), "models.list", "duplicate model id")
    if m["default"] not in models:
        raise RulesError(path, line_of(raw.get("models"), "default"), "models.default", f"{m['default']!r} is not in models.list")
    aliases = dict(m.get("aliases") or {})
    for alias, target in aliases.items():
        if target not in models:
            raise RulesError(path, line_of(raw.get("models", {}).get("aliases"), alias), f"models.aliases.{alias}", f"points to unknown model {target!r}")
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
                raise RulesError(path, line_of((raw.get("hooks") or {}), stage), f"hooks.{stage}", f"unknown hook {name!r} (known: {known})")
    for key in ("attempts", "base_delay", "max_wait"):  # a negative budget would end a turn with no answer at all
        if d["retry"][key] < 0:
            raise RulesError(path, line_of(raw.get("retry"), key), f"retry.{key}", "must be >= 0")
    tags = d["reasoning"].get("think_tags")
    if tags is not None and (len(tags) != 2 or not all(tags)):
        raise RulesError(path, line_of(raw.get("reasoning"), "think_tags"), "reasoning.think_tags", "must be [opening tag, closing tag]")
    if d["reasoning"].get("pass_back_as") == "think_tags" and tags is None:
        raise RulesError(path, line_of(raw.get("reasoning"), "pass_back_as"), "reasoning.pass_back_as",
                         "think_tags needs reasoning.think_tags")
    fb = m.get("fallback")
    fallback = Model("", fb["context"], fb["max_output"], fb["vision"], fb["thinking"], tuple(fb["efforts"])) if fb else None
    for i, dotted in enumerate(d.get("drop") or ()):
        if not hook_registry.DROP_PATH.match(dotted):
            raise RulesError(path, line_of(raw.get("drop"), i), f"drop[{i}]", f"{dotted!r} is not a path like stream_options or tools[].function.strict")
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
