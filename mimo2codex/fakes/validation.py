"""What a strict provider refuses: the request checks of `Profile`.

A mixin of `Profile`. The per-field rules are rows of rulebook.py run by kinds.apply; what spans the
request (message shapes, media per model, tool-call pairing, argument JSON, reasoning pass-back) stays
a named `check_*` method here. Messages come from `Profile.TEXTS`, the values providers differ in from
its class attributes and `ModelInfo`. No HTTP, no rendering here.
"""

from __future__ import annotations

import copy
from typing import Any

from . import kinds
from .reply import Reply
from .rulebook import FUNCTION_TOOL, PARAMS, PARTS, TOOL_CALL
from .turn import ModelInfo, Turn, content_text
from .wire import _MEDIA_PARTS, FakeError, orjson_style_error


TEXT_PARTS = ("text",)   # system, developer and assistant content


class Validation:
    # ---- validation ------------------------------------------------------------------------
    def invalid_json(self, detail: str) -> FakeError:
        return self.bad("invalid_json", detail=detail)

    def validate(self, body: Any, raw_size: int) -> Turn:
        if not isinstance(body, dict):
            raise self.bad("not_object")
        self.check_foreign_fields(body)
        model = self.check_model(body)
        info = self.models[model]
        messages = self.check_messages_present(body)
        stream, include_usage = self.check_params(body, info)
        functions, web_search = self.check_tools(body, info)
        self.check_message_shapes(messages)
        self.check_modalities(messages, info)
        self.check_parts(messages)
        self.check_pairing(messages)
        self.check_arguments(messages)
        thinking = self.resolve_thinking(body, info)
        self.check_passback(messages, thinking)
        return Turn(body=body, model=model, info=info, stream=stream, include_usage=include_usage,
                    thinking=thinking, functions=functions, web_search=web_search, raw_size=raw_size,
                    effective=self.effective_params(body, info, thinking))

    def check_foreign_fields(self, body: dict) -> None:
        for f in self.reject_fields:
            if f in body:
                raise self.bad("foreign_field", field=f)

    def check_model(self, body: dict) -> str:
        model = body.get("model")
        if model is None:
            raise self.bad("not_set", field="model")
        if not isinstance(model, str):
            raise self.bad("bad_type", field="model", expected="Input should be a valid string")
        if model in self.retired:
            raise FakeError(404, self.error_body(404, "Model Not Found", self.TEXTS["retired_model"].format(
                model=model, target=self.retired[model])))
        if model not in self.models:
            raise self.refusal(self.unknown_model, model=model) if self.unknown_model else self.bad("unknown_model", model=model)
        return model

    def refusal(self, spec: dict, **fmt: Any) -> FakeError:
        """A provider's own answer, written as data: {"status", "body"} verbatim, or error_body's
        arguments (message, param, type_, code) whose strings are formatted with `fmt`."""
        if "body" in spec:
            return FakeError(spec["status"], copy.deepcopy(spec["body"]))
        kw = {k: v.format(**fmt) if isinstance(v, str) else v for k, v in spec.items() if k != "status"}
        return FakeError(spec["status"], self.error_body(spec["status"], **kw))

    def check_messages_present(self, body: dict) -> list:
        if "messages" not in body:
            raise self.bad("not_set", field="messages")
        messages = body["messages"]
        if not isinstance(messages, list):
            raise self.bad("bad_type", field="messages", expected="Input should be a valid list")
        if not messages:
            raise self.bad("empty_messages")
        return messages

    def check_params(self, body: dict, info: ModelInfo) -> tuple[bool, bool]:
        kinds.apply(self, PARAMS, body, info)
        so = body.get("stream_options")
        return body.get("stream", False), so.get("include_usage", False) if so is not None else False

    def check_tools(self, body: dict, info: ModelInfo) -> tuple[tuple[str, ...], bool]:
        tools = body.get("tools")
        if tools is None:
            return (), False
        if not isinstance(tools, list):
            raise self.bad("bad_type", field="tools", expected="Input should be a valid list")
        names: list[str] = []
        web_search = False
        for t in tools:
            ttype = t.get("type") if isinstance(t, dict) else None
            if ttype not in self.tool_types:
                raise self.bad("tool_type", ttype=ttype, tags=", ".join(f"'{x}'" for x in self.tool_types))
            if ttype == "function":
                names.append(self.check_function_tool(t))
            else:
                self.check_builtin_tool(t, info)
                web_search = web_search or ttype == "web_search"
        seen: set[str] = set()
        for n in names:
            if n in seen:
                raise self.bad("dup_tools", name=n)
            seen.add(n)
        return tuple(names), web_search

    def check_function_tool(self, t: dict) -> str:
        fn = t.get("function")
        if not isinstance(fn, dict):
            raise self.bad("not_set", field="name")
        kinds.apply(self, FUNCTION_TOOL, fn)
        return fn["name"]

    def check_builtin_tool(self, t: dict, info: ModelInfo) -> None:
        pass

    def check_message_shapes(self, messages: list) -> None:
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise self.bad("bad_type", field=f"messages[{i}]", expected="Input should be a valid dictionary")
            role = m.get("role")
            if role not in self.allowed_roles:
                raise self.bad("bad_role", role=role, tags=", ".join(f"'{r}'" for r in self.allowed_roles))
            for k in m:
                if k not in self.message_keys:
                    raise self.bad("unknown_message_key", index=i, key=k)
            if "content" in m and m["content"] is None and not (role == "assistant" and self.assistant_content_null_ok):
                raise self.bad("content_null", index=i)
            getattr(self, f"check_{role}_message")(i, m)

    def check_content(self, i: int, content: Any, part_types: tuple[str, ...] = tuple(PARTS)) -> None:
        """A string, or a list of parts of `part_types`, each as PARTS states it."""
        if isinstance(content, str):
            return
        if not isinstance(content, list):
            raise self.bad("bad_type", field=f"messages[{i}].content", expected="Input should be a string or a list of parts")
        for j, p in enumerate(content):
            ptype = p.get("type") if isinstance(p, dict) else p
            if not isinstance(p, dict) or ptype not in part_types:
                raise self.bad("bad_part", index=i, part=j, ptype=ptype)
            kinds.apply(self, PARTS[ptype], p, where=f"messages[{i}].content[{j}].")

    def check_system_message(self, i: int, m: dict) -> None:
        if "content" not in m:
            raise self.bad("not_set", field="content")
        self.check_content(i, m["content"], TEXT_PARTS)

    check_developer_message = check_system_message

    def check_user_message(self, i: int, m: dict) -> None:
        if "content" not in m:
            raise self.bad("not_set", field="content")
        self.check_content(i, m["content"])

    def check_assistant_message(self, i: int, m: dict) -> None:
        calls = m.get("tool_calls")
        if "content" in m and m["content"] is not None:
            self.check_content(i, m["content"], TEXT_PARTS)
        elif not calls:
            raise self.bad("assistant_empty", index=i)
        rc = m.get("reasoning_content")
        if rc is not None and not isinstance(rc, str):
            raise self.bad("bad_type", field=f"messages[{i}].reasoning_content", expected="Input should be a valid string")
        if "tool_calls" in m:
            if not isinstance(calls, list) or not calls:
                raise self.bad("bad_type", field=f"messages[{i}].tool_calls", expected="Input should be a non-empty list")
            for j, c in enumerate(calls):
                if not isinstance(c, dict):
                    raise self.bad("bad_tool_call", index=i, call=j, detail="Input should be a valid dictionary")
                kinds.apply(self, TOOL_CALL, c, index=i, call=j)

    def check_tool_message(self, i: int, m: dict) -> None:
        tcid = m.get("tool_call_id")
        if tcid is None:
            raise self.bad("not_set", field="tool_call_id")
        if not isinstance(tcid, str) or not tcid:
            raise self.bad("bad_type", field="tool_call_id", expected="Input should be a non-empty string")
        if "content" not in m:
            raise self.bad("not_set", field="content")
        self.check_content(i, m["content"])

    def check_modalities(self, messages: list, info: ModelInfo) -> None:
        for m in messages:
            for p in m.get("content") if isinstance(m.get("content"), list) else ():
                kind = _MEDIA_PARTS.get(p.get("type"))
                if kind and kind not in info.modalities:
                    raise FakeError(404, self.error_body(404, self.TEXTS["no_media"]))

    def check_parts(self, messages: list) -> None:
        if not self.image_needs_text:
            return
        for m in messages:
            content = m.get("content")
            if not isinstance(content, list):
                continue
            types = {p.get("type") for p in content}
            if m["role"] == "tool" and types - {"text"}:
                # Tool results carrying media break MiMo's template even next to text: keep them strings.
                raise self.bad("text_not_set")
            if "image_url" in types and "text" not in types:
                raise self.bad("text_not_set")

    def check_pairing(self, messages: list) -> None:
        i = 0
        while i < len(messages):
            m = messages[i]
            if m["role"] == "tool":
                raise self.bad("orphan_tool", index=i, id=m.get("tool_call_id"))
            if m["role"] == "assistant" and m.get("tool_calls"):
                wanted = [c["id"] for c in m["tool_calls"]]
                pending = list(wanted)
                j = i + 1
                while j < len(messages) and messages[j]["role"] == "tool":
                    tid = messages[j].get("tool_call_id")
                    if tid not in pending:
                        raise self.bad("orphan_tool", index=j, id=tid)
                    pending.remove(tid)
                    j += 1
                if pending:
                    raise self.bad("missing_tool_results", ids=", ".join(pending))
                i = j
                continue
            i += 1

    def check_arguments(self, messages: list) -> None:
        for m in messages:
            for c in m.get("tool_calls") or () if m["role"] == "assistant" else ():
                err = orjson_style_error(c["function"]["arguments"])
                if err is not None:
                    raise FakeError(400, self.error_body(400, err, "", "BadRequest"))

    def resolve_thinking(self, body: dict, info: ModelInfo) -> bool:
        thinking = info.thinking_default
        explicit = body.get("thinking", {}).get("type") if isinstance(body.get("thinking"), dict) else None
        if explicit is not None:
            thinking = explicit == "enabled"
        effort = body.get("reasoning_effort")
        if info.effort_off is not None and effort == info.effort_off:
            if explicit == "enabled":
                raise self.bad("thinking_conflict", effort=effort)
            thinking = False
        return thinking

    def check_passback(self, messages: list, thinking: bool) -> None:
        """With thinking on, the assistant turns `passback` names must carry their reasoning back."""
        if not thinking or self.passback is None:
            return
        field = self.passback_field or self.reasoning_field
        for i, m in enumerate(messages):
            if m["role"] != "assistant" or (self.passback == "tool_calls" and not m.get("tool_calls")):
                continue
            value = m.get(field)
            if not (isinstance(value, str) and value.strip() or self.passback_lists and isinstance(value, list) and value):
                raise self.passback_error(i)

    def passback_error(self, index: int) -> FakeError:
        return self.bad("passback")

    def effective_params(self, body: dict, info: ModelInfo, thinking: bool) -> dict:
        """What the service actually honours (recorded so tests can assert it)."""
        eff = {"thinking": thinking, "tool_choice": "auto",
               "reasoning_effort": body.get("reasoning_effort"),
               "max_completion_tokens": body.get("max_completion_tokens", body.get("max_tokens"))}
        if thinking:
            eff.update(temperature=1.0, top_p=0.95)
        else:
            eff.update(temperature=body.get("temperature"), top_p=body.get("top_p"))
        return eff

    # ---- reply generation ------------------------------------------------------------------
    def make_reply(self, spec: dict) -> Reply:
        return Reply.from_spec(spec, self.finish_reasons)

    def default_spec(self, turn: Turn) -> dict:
        """Deterministic answer for unscripted requests (demo, benchmarks)."""
        last = turn.last_message()
        if last.get("role") == "tool":
            out = content_text(last.get("content"))[:200]
            return {"reasoning": "The tool returned its output.",
                    "text": f"{self.default_speaker} received tool output: {out}"}
        said = turn.last_user_text()[:500]
        return {"reasoning": f"The user said: {said}", "text": f"{self.default_speaker} received: {said}"}

    def check_reply(self, turn: Turn, reply: Reply) -> None:
        """A real model cannot call a function the request did not declare: a script that does so
        hides a translator bug (tools dropped), so it fails loudly instead."""
        if reply.allow_undeclared_tools:
            return
        for c in reply.tool_calls:
            if c.name not in turn.functions:
                raise FakeError(500, {"error": {
                    "message": f"fake script error: reply calls {c.name!r} but the request declared "
                               f"functions {list(turn.functions)} (set allow_undeclared_tools to script this)",
                    "type": "fake_script_error", "code": "500", "param": ""}})
