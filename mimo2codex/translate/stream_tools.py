"""Tool calls in a Responses stream: fragments gathered, one call live, the rest buffered, each closed whole.

A mixin of ResponsesStream (stream.py). It owns `_calls`, `_live` and `_tool_names`; it decides when
a call may be closed (its arguments whole, see the stream.py docstring) and how function, custom
(apply_patch) and shell calls look. It does not end the response: a call that cannot be handed to
the client raises _BadCall for endings (stream_end.py) to turn into `response.failed`.
"""

from __future__ import annotations

import json
from typing import Any

from mimo2codex.translate import turn  # turn.new_id looked up per call: tests make ids deterministic
from mimo2codex.translate.jsonfix import complete_json, salvage_json
from mimo2codex.translate.sse import DeltaTemplate


class _BadCall(Exception):
    """A tool call whose arguments cannot be handed to the client."""


class _Call:
    __slots__ = ("index", "call_id", "name", "parts", "state", "kind", "item_id", "out_idx", "tmpl")

    def __init__(self, index: int) -> None:
        self.index = index
        self.call_id: str | None = None
        self.name: str | None = None
        self.parts: list[str] = []
        self.state = "pending"  # pending (buffered) -> live -> closed
        self.kind = ""
        self.item_id = ""
        self.out_idx = -1
        self.tmpl: DeltaTemplate | None = None


def _fix_args(raw: str) -> tuple[str | None, bool, str]:
    """(arguments to use or None, whether they were repaired, the JSON error if any)."""
    if not raw.strip():
        return "{}", False, ""
    try:
        json.loads(raw)
        return raw, False, ""
    except ValueError as exc:
        err = str(exc)
    try:  # raw newlines/tabs inside strings: re-encode
        return json.dumps(json.loads(raw, strict=False), ensure_ascii=False), True, err
    except ValueError:
        pass
    fixed = salvage_json(raw)
    return fixed, fixed is not None, err


class ToolCalls:
    """Mixin of ResponsesStream: tool-call fragments in, function/custom/shell call items out."""

    def _tool(self, frag: Any) -> None:
        if not isinstance(frag, dict) or self.done:  # done: an earlier fragment of this chunk failed the response
            return
        fn = frag.get("function")
        if not isinstance(fn, dict):
            fn = {}
        idx = frag.get("index")
        cid = frag.get("id")
        if not isinstance(idx, int) or isinstance(idx, bool):
            idx = next((c.index for c in self._calls.values() if cid and c.call_id == cid), None)
            if idx is None:
                if cid or not self._calls:
                    idx = max(self._calls, default=-1) + 1
                else:
                    idx = max(self._calls)
        call = self._calls.get(idx)
        new = call is None
        if new:
            self._close_display("completed")
            call = self._calls[idx] = _Call(idx)
        elif call.state == "closed":
            piece = fn.get("arguments")
            if isinstance(piece, str) and piece.strip():
                self._warn(f"ignored arguments sent after tool call {call.name!r} was complete: {piece[:80]!r}")
            return
        if cid and not call.call_id:
            call.call_id = str(cid)
        name = fn.get("name")
        named = False
        if name and not call.name:
            call.name = str(name)
            named = True
        piece = fn.get("arguments")
        if piece is not None and not isinstance(piece, str):
            piece = json.dumps(piece, ensure_ascii=False)
        if piece:
            call.parts.append(piece)
            if call.state == "live" and call.tmpl is not None:
                self._out.append(call.tmpl.render(self._next(), piece))
        if new or named:
            self._schedule(new)

    def _kind(self, name: str) -> str:
        t = self.turn
        if name in t.custom_tools:
            return "custom"
        if name in t.namespaces:
            return "namespace"
        if t.local_shell and name == t.local_shell:
            return "local_shell"
        return "function"

    def _schedule(self, new_call: bool) -> None:
        """Pick the call streamed live; close the live one early when a new call shows it is whole."""
        while True:
            live = self._live
            if live is not None:
                if not new_call or not any(c.state == "pending" for c in self._calls.values()):
                    return
                if not complete_json("".join(live.parts)):
                    return
                try:
                    built = self._build(live, "completed")  # whole JSON: cannot need repair
                except _BadCall as exc:
                    self._end("failed", code="server_error", message=str(exc))
                    return
                self._finish_call(live, built)
            nxt = min((c for c in self._calls.values() if c.state == "pending" and c.name), key=lambda c: c.index, default=None)
            if nxt is None:
                return
            self._go_live(nxt)

    def _go_live(self, call: _Call) -> None:
        self._live = call
        call.state = "live"
        call.kind = self._kind(call.name or "")
        if not call.call_id:
            call.call_id = turn.new_id("call")
        if call.kind == "local_shell":
            return  # its item is only known once the arguments are decoded
        self._open_call(call)
        if call.kind in ("function", "namespace"):
            call.tmpl = DeltaTemplate("response.function_call_arguments.delta", {"item_id": call.item_id, "output_index": call.out_idx})
            buffered = "".join(call.parts)
            if buffered:
                self._out.append(call.tmpl.render(self._next(), buffered))

    def _open_call(self, call: _Call) -> None:
        call.out_idx = self._reserve()
        if call.kind == "custom":
            call.item_id = call.item_id or turn.new_id("ctc")
            item = {"id": call.item_id, "type": "custom_tool_call", "status": "in_progress", "call_id": call.call_id, "name": call.name, "input": ""}
        else:
            call.item_id = call.item_id or turn.new_id("fc")
            item = {"id": call.item_id, "type": "function_call", "status": "in_progress", "call_id": call.call_id, "name": call.name, "arguments": ""}
            if call.kind == "namespace":
                ns, inner = self.turn.namespaces[call.name]
                item.update(name=inner, namespace=ns)
        self._emit("response.output_item.added", {"output_index": call.out_idx, "item": item})

    def _build(self, call: _Call, terminal: str) -> tuple[dict, bool]:
        """(item, whole): the Responses item for a finished call; whole=False when its arguments were
        cut off or unusable (only allowed when the response does not complete). Raises _BadCall."""
        name = call.name or ""
        kind = call.kind or self._kind(name)
        raw = "".join(call.parts)
        args, repaired, err = _fix_args(raw)
        whole = args is not None and not repaired
        if not whole and terminal == "completed":
            if repaired:
                self._warn(f"repaired invalid JSON arguments of tool {name!r} ({err})")
                whole = True
            elif kind == "custom" and not raw.lstrip().startswith(("{", "[")):
                whole = True  # the model wrote the freeform text itself instead of a JSON object
            else:
                raise _BadCall(f"{self._provider()} produced invalid JSON arguments for tool {name!r}: {err}")
        status = "completed" if whole else "incomplete"
        iid = call.item_id or turn.new_id({"custom": "ctc", "local_shell": "lsh"}.get(kind, "fc"))
        call.item_id = iid
        cid = call.call_id or turn.new_id("call")
        if kind == "custom":
            text = self._custom_input(name, raw, args, strict=whole)
            return {"id": iid, "type": "custom_tool_call", "status": status, "call_id": cid, "name": name, "input": text}, whole
        if kind == "local_shell":
            action = self._shell_action(name, args, strict=whole)
            return {"id": iid, "type": "local_shell_call", "status": status, "call_id": cid, "action": action}, whole
        item = {"id": iid, "type": "function_call", "status": status, "call_id": cid, "name": name, "arguments": args if args is not None else raw}
        if kind == "namespace":
            ns, inner = self.turn.namespaces[name]
            item.update(name=inner, namespace=ns)
        return item, whole

    def _custom_input(self, name: str, raw: str, args: str | None, strict: bool) -> str:
        if args is None:
            return raw
        value = json.loads(args)
        param = self.turn.custom_param
        if isinstance(value, dict):
            text = value.get(param)
            if isinstance(text, str):
                return text
            strings = [v for v in value.values() if isinstance(v, str)]
            if len(strings) == 1:
                return strings[0]
        if strict:
            raise _BadCall(f"tool {name!r} was called without its string parameter {param!r}: {args[:200]}")
        return ""

    def _shell_action(self, name: str, args: str | None, strict: bool) -> dict:
        value: Any = {}
        if args is not None:
            value = json.loads(args)
        if not isinstance(value, dict):
            value = {}
        cmd = value.get("command", value.get("cmd"))
        if isinstance(cmd, str):
            cmd = ["bash", "-lc", cmd]
        if not (isinstance(cmd, list) and cmd and all(isinstance(c, (str, int, float)) for c in cmd)):
            if strict:
                raise _BadCall(f"tool {name!r} was called without a command: {(args or '')[:200]}")
            cmd = []
        action: dict[str, Any] = {"type": "exec", "command": [str(c) for c in cmd]}
        env = value.get("env")
        action["env"] = {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}
        cwd = value.get("workdir", value.get("working_directory", value.get("cwd")))
        if isinstance(cwd, str) and cwd:
            action["working_directory"] = cwd
        timeout = value.get("timeout_ms", value.get("timeout"))
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
            action["timeout_ms"] = int(timeout)
        user = value.get("user")
        if isinstance(user, str) and user:
            action["user"] = user
        return action

    def _finish_call(self, call: _Call, built: tuple[dict, bool]) -> None:
        """Emit the closing events of a call (opening it first if it was buffered)."""
        item, whole = built
        call.state = "closed"
        if self._live is call:
            self._live = None
        if not whole:
            # Cut short: never hand it to Codex (it would run it); keep it for the record only.
            item["status"] = "incomplete"
            if call.out_idx >= 0:
                self._abandoned = True
            if call.out_idx < 0:
                call.out_idx = self._reserve()
            self._output[call.out_idx] = item
            return
        kind = call.kind or self._kind(call.name or "")
        call.kind = kind
        if call.out_idx < 0:
            call.call_id = item["call_id"]
            if kind == "local_shell":
                call.out_idx = self._reserve()
                self._emit("response.output_item.added", {"output_index": call.out_idx, "item": dict(item, status="in_progress")})
            else:
                self._open_call(call)
        idx, iid = call.out_idx, call.item_id
        if kind == "custom":
            self._emit("response.custom_tool_call_input.delta", {"item_id": iid, "output_index": idx, "delta": item["input"]})
            self._emit("response.custom_tool_call_input.done", {"item_id": iid, "output_index": idx, "input": item["input"]})
        elif kind in ("function", "namespace"):
            args = item["arguments"]
            if call.tmpl is None and args:  # buffered until now: its arguments in one delta
                self._emit("response.function_call_arguments.delta", {"item_id": iid, "output_index": idx, "delta": args})
            self._emit("response.function_call_arguments.done", {"item_id": iid, "output_index": idx, "name": item["name"], "arguments": args})
        self._output[idx] = item
        self._tool_names.append(f"{item['namespace']}.{item['name']}" if item.get("namespace") else item.get("name") or "local_shell")
        self._emit("response.output_item.done", {"output_index": idx, "item": item})

    def _close_calls(self, terminal: str) -> None:
        """Close every open call: live first, then the buffered ones in index order. For a completed
        response all are checked before any is emitted, so a bad one fails the whole set."""
        order = []
        if self._live is not None:
            order.append(self._live)
        order += sorted((c for c in self._calls.values() if c.state == "pending"), key=lambda c: c.index)
        for call in [c for c in order if not c.name]:
            # Never named: nothing a client could run. Dropped rather than sent as a nameless call.
            self._warn(f"dropped a tool call without a name (arguments {''.join(call.parts)[:80]!r})")
            call.state = "closed"
            order.remove(call)
        if not order:
            return
        if terminal == "failed":
            for call in order:
                call.kind = call.kind or self._kind(call.name or "")
                try:
                    item, _ = self._build(call, "failed")
                except _BadCall:
                    call.state = "closed"
                    if self._live is call:
                        self._live = None
                    continue
                self._finish_call(call, (item, False))
            return
        built = []
        for call in order:
            call.kind = call.kind or self._kind(call.name or "")
            built.append((call, self._build(call, terminal)))  # may raise _BadCall
        for call, b in built:
            self._finish_call(call, b)
