"""Responses request -> Chat Completions request, as the provider's rules say.

The result is always a request the provider accepts: history is repaired (tool-call pairing,
reasoning pass-back, image rules) instead of forwarding something that earns a 400, because a
forwarded 400 makes Codex resend the same body. Bad client input raises BadRequest, which the
addon turns into a Responses-shaped 4xx.

This module: the request as a whole (model, types, parameters, reasoning). The tools are
request_tools.py, the messages and their repair request_messages.py.
"""

from __future__ import annotations

import json
from typing import Any

from mimo2codex.translate import hooks
from mimo2codex.translate.request_base import BadRequest
from mimo2codex.translate.request_json import Literals, encode, loads  # noqa: F401 (the request's JSON, for the addon)
from mimo2codex.translate.request_messages import COMPACTED_PREFIX, INTERRUPTED, chat_messages  # noqa: F401 (tests)
from mimo2codex.translate.request_tools import chat_tools
from mimo2codex.translate.rules import EFFORT_ORDER, Model, ParamRule, Rules
from mimo2codex.translate.turn import Turn

# Request fields repeated in the Response object (the openai SDK and Codex read some of them back).
ECHO = ("instructions", "max_output_tokens", "metadata", "parallel_tool_calls", "previous_response_id",
        "reasoning", "store", "temperature", "text", "tool_choice", "tools", "top_p", "truncation", "user")


def to_chat(body: Any, rules: Rules, *, thinking: bool = True, show_reasoning: bool = True,
            web_search: bool = False) -> tuple[dict, Turn]:
    """Translate one Responses request body (parsed JSON) into (chat request, turn)."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    requested = body.get("model")
    if requested is None or isinstance(requested, str) and not requested.strip():
        raise BadRequest(f"missing required parameter: 'model'; {rules.name} models: {', '.join(rules.listed_models())}", "model")
    _check_types(body)
    model = _model(requested, rules)
    effort = (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    think = model.thinking == "always" or (thinking and bool(model.thinking) and effort != "none")
    turn = Turn(model=requested, upstream_model=model.id, stream=bool(body.get("stream", False)),
                thinking=think, show_reasoning=show_reasoning and think,
                custom_param=rules.tools["freeform_param"],
                echo={k: body[k] for k in ECHO if k in body})

    chat: dict[str, Any] = {"model": model.id}
    tools, tool_names = chat_tools(body.get("tools"), rules, turn, web_search)
    chat["messages"] = chat_messages(body, rules, model, turn, tool_names)
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
