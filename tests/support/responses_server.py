"""A tiny scripted Responses-API server, used only to prove the Codex harness works.

It stands where the proxy will stand (Codex -> `POST {base}/responses`) and answers from a queue the
test fills. Replies are built to the shape in `../shared/contracts/codex-responses.md` section 3
(full OpenAI event sequence with sequence_number / output_index), or replayed verbatim from a
recorded SSE text. Every request is recorded (path, headers, parsed JSON body) for assertions.

Stdlib only; one thread per connection so a hung reply never blocks the next request.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# ---------------------------------------------------------------------------------------------
# Reply builders. A "reply" is a dict the handler understands:
#   {"events": [event dicts]}              200 text/event-stream, events numbered on the fly
#   {"raw": "<sse text>"}                   200 text/event-stream, bytes sent as is
#   {"status": 429, "body": {...}, "headers": {...}}   non-200 JSON answer
# The connection closes after the listed events, so a reply without a terminal event (end="none")
# is a clean EOF mid-response. Optional "hang": seconds keeps the stream silent that long first.
# ---------------------------------------------------------------------------------------------

_ids = itertools.count()


def _next_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids)}"


def message_item(text: str, *, item_id: str | None = None) -> dict:
    return {
        "id": item_id or _next_id("msg"),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def reasoning_item(summary: str, *, raw: str | None = None, encrypted: str = "opaque-harness",
                   item_id: str | None = None) -> dict:
    item = {
        "id": item_id or _next_id("rs"),
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": summary}] if summary else [],
        "encrypted_content": encrypted,
    }
    if raw is not None:
        item["content"] = [{"type": "reasoning_text", "text": raw}]
    return item


def function_call_item(name: str, arguments: str | dict, *, call_id: str | None = None,
                       item_id: str | None = None, namespace: str | None = None) -> dict:
    # Codex silently drops a call whose arguments are not a JSON *string* (contract 3.3).
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    item = _call_item("function_call", "fc", name, call_id, item_id, arguments=arguments)
    if namespace:
        item["namespace"] = namespace
    return item


def custom_tool_call_item(name: str, input_text: str, *, call_id: str | None = None,
                          item_id: str | None = None) -> dict:
    return _call_item("custom_tool_call", "ctc", name, call_id, item_id, input=input_text)


def _call_item(type_: str, prefix: str, name: str, call_id: str | None, item_id: str | None, **payload: str) -> dict:
    """A completed call item; `payload` is what the call carries (`arguments` or `input`)."""
    return {"id": item_id or _next_id(prefix), "type": type_, "status": "completed",
            "call_id": call_id or _next_id("call"), "name": name, **payload}


def _delta_done(event: str, iid: str, field: str, value: str, **where: Any) -> list[dict]:
    """The `<event>.delta` carrying the whole value, then `<event>.done` repeating it under `field`."""
    return [{"type": f"{event}.delta", "item_id": iid, **where, "delta": value},
            {"type": f"{event}.done", "item_id": iid, **where, field: value}]


def _item_events(item: dict) -> list[dict]:
    """added -> deltas/done of the item's parts -> output_item.done (OpenAI order)."""
    kind = item["type"]
    opened = dict(item, status="in_progress")
    if kind == "message":
        opened["content"] = []
    elif kind == "reasoning":
        opened = {"id": item["id"], "type": "reasoning", "summary": []}
    elif kind == "function_call":
        opened["arguments"] = ""
    elif kind == "custom_tool_call":
        opened["input"] = ""
    evs: list[dict] = [{"type": "response.output_item.added", "item": opened}]
    iid = item["id"]
    if kind == "message":
        for ci, part in enumerate(item["content"]):
            evs += [
                {"type": "response.content_part.added", "item_id": iid, "content_index": ci,
                 "part": {"type": "output_text", "text": "", "annotations": []}},
                {"type": "response.output_text.delta", "item_id": iid, "content_index": ci,
                 "delta": part["text"], "logprobs": []},
                {"type": "response.output_text.done", "item_id": iid, "content_index": ci,
                 "text": part["text"], "logprobs": []},
                {"type": "response.content_part.done", "item_id": iid, "content_index": ci,
                 "part": part},
            ]
    elif kind == "reasoning":
        for si, part in enumerate(item["summary"]):
            evs += [
                {"type": "response.reasoning_summary_part.added", "item_id": iid,
                 "summary_index": si, "part": {"type": "summary_text", "text": ""}},
                *_delta_done("response.reasoning_summary_text", iid, "text", part["text"], summary_index=si),
                {"type": "response.reasoning_summary_part.done", "item_id": iid,
                 "summary_index": si, "part": part},
            ]
        for ci, part in enumerate(item.get("content") or []):
            evs += _delta_done("response.reasoning_text", iid, "text", part["text"], content_index=ci)
    elif kind == "function_call":
        evs += _delta_done("response.function_call_arguments", iid, "arguments", item["arguments"])
    elif kind == "custom_tool_call":
        evs += _delta_done("response.custom_tool_call_input", iid, "input", item["input"])
    evs.append({"type": "response.output_item.done", "item": item})
    return evs


DEFAULT_USAGE = {
    "input_tokens": 100,
    "input_tokens_details": {"cached_tokens": 10},
    "output_tokens": 20,
    "output_tokens_details": {"reasoning_tokens": 5},
    "total_tokens": 120,
}


def _envelope(resp_id: str, status: str, output: list, **extra: Any) -> dict:
    env = {"id": resp_id, "object": "response", "created_at": int(time.time()), "status": status,
           "model": "scripted", "output": output, "parallel_tool_calls": True,
           "tool_choice": "auto", "tools": [], "error": None, "incomplete_details": None,
           "usage": None}
    env.update(extra)
    return env


def response(*items: dict, usage: dict | None = DEFAULT_USAGE, end: str = "completed",
             error: dict | None = None, incomplete_reason: str | None = None) -> dict:
    """A full SSE reply carrying `items`, ending with response.<end>
    (completed | failed | incomplete | none = stream just stops)."""
    rid = _next_id("resp")
    evs: list[dict] = [
        {"type": "response.created", "response": _envelope(rid, "in_progress", [])},
        {"type": "response.in_progress", "response": _envelope(rid, "in_progress", [])},
    ]
    for index, item in enumerate(items):
        for ev in _item_events(item):
            ev["output_index"] = index
            evs.append(ev)
    out = list(items)
    if end == "completed":
        evs.append({"type": "response.completed",
                    "response": _envelope(rid, "completed", out, usage=usage)})
    elif end == "failed":
        evs.append({"type": "response.failed",
                    "response": _envelope(rid, "failed", out, error=error)})
    elif end == "incomplete":
        evs.append({"type": "response.incomplete",
                    "response": _envelope(rid, "incomplete", out,
                                          incomplete_details={"reason": incomplete_reason},
                                          usage=usage)})
    return {"events": evs}


def text(answer: str, *, reasoning: str | None = None, **kw: Any) -> dict:
    items = ([reasoning_item(reasoning)] if reasoning else []) + [message_item(answer)]
    return response(*items, **kw)


def failed(code: str, message: str) -> dict:
    return response(end="failed", error={"code": code, "message": message})


def http_error(status: int, message: str = "scripted error", *, headers: dict | None = None,
               code: str | None = None) -> dict:
    return {"status": status, "headers": headers or {},
            "body": {"error": {"message": message, "type": "scripted", "code": code}}}


def raw_sse(sse_text: str) -> dict:
    return {"raw": sse_text}


# ---------------------------------------------------------------------------------------------
# The server.
# ---------------------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: Any  # parsed JSON, or the raw text when it is not JSON
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def input_items(self, type_: str | None = None) -> list[dict]:
        items = self.body.get("input", []) if isinstance(self.body, dict) else []
        return [i for i in items if type_ is None or i.get("type") == type_]

    def tool_names(self) -> list[str]:
        tools = self.body.get("tools", []) if isinstance(self.body, dict) else []
        return [t.get("name", t.get("type")) for t in tools]


# Answered when the test scripted fewer replies than Codex asked for: `invalid_prompt` makes
# Codex fail at once with this text (contract table 4) instead of retrying.
EXHAUSTED = "responses_server: script exhausted (Codex sent more requests than were queued)"


class ResponsesServer:
    """`with ResponsesServer() as srv: srv.queue(text("hi")); run_codex(srv.base_url, ...)`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._script: list[dict] = []
        self.requests: list[Recorded] = []
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle
    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "ResponsesServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True,
                                        name="responses-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases handlers stuck in "hang"
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "ResponsesServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- script
    def queue(self, *replies: dict) -> "ResponsesServer":
        with self._lock:
            self._script.extend(replies)
        return self

    def _pop(self) -> dict:
        with self._lock:
            return self._script.pop(0) if self._script else failed("invalid_prompt", EXHAUSTED)

    @property
    def responses_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.rstrip("/").endswith("/responses")]

    # -- HTTP
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def _record(self, body: bytes) -> None:
                try:
                    parsed: Any = json.loads(body) if body else None
                except ValueError:
                    parsed = body.decode("utf-8", "replace")
                with server._lock:
                    server.requests.append(
                        Recorded(self.command, self.path, list(self.headers.items()), parsed))

            def do_GET(self) -> None:
                self._record(b"")
                self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self._record(self.rfile.read(length))
                if not self.path.rstrip("/").endswith("/responses"):
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                self._reply(server._pop())

            def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.end_headers()
                self.wfile.write(data)

            def _reply(self, reply: dict) -> None:
                if "status" in reply:
                    self._json(reply["status"], reply.get("body", {}), reply.get("headers"))
                    return
                # Close-delimited body: the simplest framing that lets "drop" be a clean EOF.
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    if "raw" in reply:
                        self.wfile.write(reply["raw"].encode())
                    else:
                        for seq, ev in enumerate(reply["events"]):
                            ev = dict(ev, sequence_number=seq)
                            frame = f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n"
                            self.wfile.write(frame.encode())
                            self.wfile.flush()
                    if reply.get("hang"):
                        server._stop.wait(reply["hang"])
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
