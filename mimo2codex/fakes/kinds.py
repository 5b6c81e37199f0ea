"""The kinds of check a rulebook row names, and `apply`, the small engine that runs a table of rows.

A kind looks at one present value (with its row's `arg`, the object holding it and the field's
name) and answers None (accepted) or what the refusal says: the format
fields of the row's TEXTS entry, with "error" when a wrong JSON type answers another TEXTS key than
the row's (`bad_type` with its `expected`).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Optional

from .rulebook import Rule

Failure = Optional[dict[str, Any]]

TYPES = {"boolean": (bool, "Input should be a valid boolean"),
         "object": (dict, "Input should be a valid dictionary"),
         "string": (str, "Input should be a valid string")}


def quote_list(items: Iterable[str]) -> str:
    q = [f"'{i}'" for i in items]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " or " + q[-1]


def _wrong(expected: str) -> dict[str, Any]:
    return {"error": "bad_type", "expected": expected}


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float))


def allowed(value: Any, values: tuple, obj: dict, field: str) -> Failure:
    if value in values:
        return None
    # Only reasoning_effort can meet an empty list (a model without effort); `n`'s text names no values.
    said = quote_list(values) if values else "absent (this model takes no effort)"
    return {"allowed": said, "expected": f"Input should be {said}"}


def tokens(value: Any, cap: int, obj: dict, field: str) -> Failure:
    if isinstance(value, bool) or not isinstance(value, int):
        return _wrong("Input should be a valid integer")
    if value < 1:
        return {"error": "range", "lo": 1, "hi": cap}
    return {"cap": cap} if value > cap else None


def agrees(value: Any, other_field: str, obj: dict, field: str) -> Failure:
    other = obj.get(other_field)
    return {"a": value, "b": other} if other is not None and other != value else None


def tagged(value: Any, tags: tuple, obj: dict, field: str) -> Failure:
    if isinstance(value, dict) and value.get("type") in tags:
        return None
    return {"allowed": quote_list(tags), "detail": f"Input should be an object with type {quote_list(tags)}"}


def known_keys(value: Any, keys: tuple | None, obj: dict, field: str) -> Failure:
    if keys is None or not isinstance(value, dict):
        return None
    for k in value:
        if k not in keys:
            return {"key": k, "detail": "Extra inputs are not permitted"}
    return None


def format_(value: Any, types: tuple, obj: dict, field: str) -> Failure:
    rtype = value.get("type") if isinstance(value, dict) else value
    return None if rtype in types else {"rtype": rtype}


def number(value: Any, ranges: dict, obj: dict, field: str) -> Failure:
    if field not in ranges:     # a provider without this range: the field is not checked here
        return None
    if not _is_number(value):
        return _wrong("Input should be a valid number")
    lo, hi = ranges[field]
    return None if lo <= value <= hi else {"lo": lo, "hi": hi}


def between(value: Any, bounds: tuple, obj: dict, field: str) -> Failure:
    """A number within bounds; a value of the wrong type gets the same answer."""
    lo, hi = bounds
    return None if _is_number(value) and lo <= value <= hi else {"lo": lo, "hi": hi}


def object_with(value: Any, key: str, obj: dict, field: str) -> Failure:
    if isinstance(value, dict) and isinstance(value.get(key), str):
        return None
    return {"expected": f"Input should be an object with a string `{key}`"}


def prefix(value: Any, prefixes: tuple, obj: dict, field: str) -> Failure:
    return None if isinstance(value, str) and value.startswith(prefixes) else {}


def integer(value: Any, bounds: tuple, obj: dict, field: str) -> Failure:
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return {"detail": f"Input should be an integer between {lo} and {hi}"}
    return None


def stop(value: Any, most: int, obj: dict, field: str) -> Failure:
    if isinstance(value, str) or (isinstance(value, list) and len(value) <= most
                                  and all(isinstance(s, str) for s in value)):
        return None
    return _wrong(f"Input should be a string or a list of at most {most} strings")


def type_(value: Any, name: str, obj: dict, field: str) -> Failure:
    pytype, expected = TYPES[name]
    return None if isinstance(value, pytype) else {"expected": expected, "detail": expected}


def stream_options(value: Any, _: None, obj: dict, field: str) -> Failure:
    if not obj.get("stream", False):
        return {}
    if not isinstance(value, dict) or not isinstance(value.get("include_usage", False), bool):
        return _wrong("Input should be an object {include_usage: bool}")
    return None


def tool_choice(value: Any, choices: tuple | None, obj: dict, field: str) -> Failure:
    if choices is None:     # any choice is taken (and honoured as "auto", contract 2)
        return None if isinstance(value, (str, dict)) else _wrong("Input should be a string or an object")
    return None if choice_kind(value) in choices else {}


def choice_kind(tc: Any) -> Any:
    return tc.get("type") if isinstance(tc, dict) else tc


def required(value: Any, _: None, obj: dict, field: str) -> Failure:
    return {} if value is None else None


def filled(value: Any, _: None, obj: dict, field: str) -> Failure:
    return None if isinstance(value, str) and value else {}


def pattern(value: Any, regex: str, obj: dict, field: str) -> Failure:
    return None if isinstance(value, str) and re.fullmatch(regex, value) else {"name": value}


KINDS: dict[str, Callable[..., Any]] = {
    "allowed": allowed, "tokens": tokens, "number": number, "between": between, "object_with": object_with,
    "prefix": prefix, "agrees": agrees, "tagged": tagged, "known_keys": known_keys,
    "format": format_, "integer": integer, "stop": stop, "type": type_, "stream_options": stream_options,
    "tool_choice": tool_choice, "required": required, "filled": filled, "pattern": pattern,
}


def resolve(arg: Any, profile: Any, info: Any) -> Any:
    """"profile.x" / "model.x": that attribute of the provider's Profile / the model's ModelInfo."""
    if isinstance(arg, str):
        owner, _, name = arg.partition(".")
        if owner == "profile" and name:
            return getattr(profile, name)
        if owner == "model" and name:
            return getattr(info, name)
    return arg


_ABSENT = object()


def _lookup(obj: dict, dotted: str) -> Any:
    """`a.b` is obj["a"]["b"]; absent when any step is missing (earlier rows have checked the shapes)."""
    for step in dotted.split("."):
        if not isinstance(obj, dict) or step not in obj:
            return _ABSENT
        obj = obj[step]
    return obj


def apply(profile: Any, rules: Iterable[Rule], obj: dict, info: Any = None, where: str = "", **context: Any) -> None:
    """Run the rows over `obj` in order; the first refusal raises `profile.bad(<TEXTS key>, ...)`.

    The texts get `context`, `field` (the row's last name), `path` (`where` + the row's field), `key`,
    `value` and what the kind adds."""
    for rule in rules:
        value = obj if rule.field == "*" else _lookup(obj, rule.field)
        if value is _ABSENT:
            if rule.null != "required":
                continue
            value = None
        if value is None and rule.null == "skip":
            continue
        arg = resolve(rule.arg, profile, info)
        name = rule.field.rpartition(".")[2]
        failure = KINDS[rule.check](value, arg, obj, name)
        if failure is not None:
            fmt = {**context, "field": name, "key": name, "path": where + rule.field, "value": value, **failure}
            raise profile.bad(fmt.pop("error", rule.error), **fmt)
