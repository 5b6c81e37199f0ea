"""The strict fake MiMo itself: validation bodies, stream framing, failure knobs, control API, CLI.

Plain http.client / raw sockets only (no mitmproxy): the fake must be trustworthy on its own.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mimo2codex.fakes.chat_server import Reply, orjson_style_error, split_arguments
from mimo2codex.fakes.mimo import FakeMimo

ROOT = Path(__file__).resolve().parent.parent
MODEL = "mimo-v2.5-pro"
EXEC_TOOL = {"type": "function", "function": {"name": "exec_command", "description": "run",
                                              "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
                                              "strict": False}}
READ_TOOL = {"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}


@pytest.fixture
def fake():
    with FakeMimo().start() as f:
        yield f


def bad(param: str, status: int = 400, message: str = "Param Incorrect", type_: str | None = "") -> dict:
    err = {"code": str(status), "message": message, "param": param}
    if type_ is not None:
        err["type"] = type_
    return {"error": err}


def body(**kw):
    b = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    b.update(kw)
    return b


def call(fake, payload=None, *, key="sk-test", auth="bearer", method="POST", path="/chat/completions",
         conn=None, raw=None, timeout=10):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers.update({"Authorization": f"Bearer {key}"} if auth == "bearer" else {"api-key": key})
    data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", fake.port, timeout=timeout)
    try:
        conn.request(method, "/v1" + path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp, resp.read()
    finally:
        if own:
            conn.close()


def err_json(data: bytes, stream: bool) -> dict:
    if stream:
        assert data.startswith(b"data:{") and data.endswith(b"\n\n"), data
        data = data[len(b"data:"):]
    return json.loads(data)


def sse_events(data: bytes) -> list:
    assert data.endswith(b"\n\n"), data[-80:]
    out = []
    for block in data.split(b"\n\n")[:-1]:
        assert block.startswith(b"data: "), block
        payload = block[len(b"data: "):]
        out.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return out


def stream(fake, payload=None, **kw):
    payload = payload or body()
    payload.setdefault("stream", True)
    payload.setdefault("stream_options", {"include_usage": True})
    status, resp, data = call(fake, payload, **kw)
    assert status == 200, data
    assert resp.getheader("Content-Type") == "text/event-stream"
    assert resp.getheader("Transfer-Encoding") == "chunked"
    return sse_events(data)


def deltas(events):
    return [e["choices"][0]["delta"] for e in events if isinstance(e, dict) and e["choices"]]


def raw_request(port: int, payload: dict, key: str = "sk-test") -> socket.socket:
    data = json.dumps(payload).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
              + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    return s


def read_raw_chunks(s: socket.socket) -> tuple[bytes, list[bytes], bool]:
    """-> (head, chunk payloads, saw the terminating zero chunk). EOF mid-body is not an error here."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        got = s.recv(65536)
        if not got:
            raise AssertionError("no headers")
        buf += got
    head, buf = buf.split(b"\r\n\r\n", 1)
    chunks = []
    while True:
        while b"\r\n" not in buf:
            got = s.recv(65536)
            if not got:
                return head, chunks, False
            buf += got
        line, rest = buf.split(b"\r\n", 1)
        size = int(line, 16)
        while len(rest) < size + 2:
            got = s.recv(65536)
            if not got:
                return head, chunks, False
            rest += got
        if size == 0:
            return head, chunks, True
        chunks.append(rest[:size])
        buf = rest[size + 2:]


# ------------------------------------------------------------------------------------ auth, models

def test_models_list_and_auth_headers(fake):
    status, _, data = call(fake, method="GET", path="/models")
    assert status == 200
    listed = json.loads(data)
    assert listed["object"] == "list"
    ids = {m["id"] for m in listed["data"]}
    assert ids == {"mimo-v2.6-pro", "mimo-v2.6-flash", "mimo-v2.6-pro-ultraspeed", "mimo-v2.5-pro", "mimo-v2.5"}
    assert all(m == {"id": m["id"], "object": "model", "owned_by": "xiaomi"} for m in listed["data"])
    assert call(fake, method="GET", path="/models", auth="api-key")[0] == 200
    assert call(fake, method="GET", path="/models/mimo-v2.5")[0] == 200
    assert call(fake, method="GET", path="/models/nope")[0] == 404
    assert call(fake, body(), path="/responses")[0] == 404


AUTH_401 = {"error": {"message": "Invalid API Key", "param": "Please provide valid API Key", "code": "401",
                      "type": "invalid_key"}}


@pytest.mark.parametrize("key,auth", [(None, "bearer"), ("sk-other", "bearer"), ("tp-test", "bearer"),
                                      ("", "bearer"), ("sk-other", "api-key")])
def test_bad_keys_get_401(fake, key, auth):
    status, _, data = call(fake, body(), key=key, auth=auth)
    assert (status, json.loads(data)) == (401, AUTH_401)
    status, _, data = call(fake, body(stream=True), key=key, auth=auth)
    assert (status, err_json(data, True)) == (401, AUTH_401)


def test_api_key_header_accepted_on_payg(fake):
    assert call(fake, body(), auth="api-key")[0] == 200


def test_token_plan_family():
    with FakeMimo(keys=("tp-abc",), host_family="token_plan").start() as tp:
        assert call(tp, body(), key="tp-abc")[0] == 200
        assert call(tp, body(), key="sk-test")[0] == 401
        # Bearer only on token-plan hosts (live report: api-key refused there).
        assert call(tp, body(), key="tp-abc", auth="api-key")[0] == 401
    with pytest.raises(ValueError, match="token_plan"):
        FakeMimo(keys=("tp-abc",))
    with pytest.raises(ValueError, match="payg"):
        FakeMimo(keys=("sk-abc",), host_family="token_plan")
    with FakeMimo(keys=("demo-key",)).start() as demo:   # explicit neutral keys are fine for demos
        assert call(demo, body(), key="demo-key")[0] == 200
        assert call(demo, body(), key="sk-test")[0] == 401
    with FakeMimo(keys=None).start() as anykey:
        assert call(anykey, body(), key="sk-whatever")[0] == 200
        assert call(anykey, body(), key="tp-whatever")[0] == 401
        # Keys the fake did not issue are never recorded verbatim.
        assert "sk-whatever" not in json.dumps(anykey.requests[0].to_dict()["headers"])
        assert anykey.requests[0].headers["Authorization"].startswith("Bearer <redacted sha256:")


@pytest.mark.parametrize("model", ["nope", "MiMo-V2.5-Pro", "mimo-v2.5-pro[1m]", "mimo-v2.5-pro[1M]"])
def test_unknown_model_400(fake, model):
    for streaming in (False, True):
        status, _, data = call(fake, body(model=model, stream=streaming))
        assert status == 400
        assert err_json(data, streaming) == bad(f"Not supported model {model}", type_=None)


@pytest.mark.parametrize("model", ["mimo-v2-pro", "mimo-v2-omni", "mimo-v2-flash", "mimo-v2.5-pro-ultraspeed"])
def test_retired_models_404(fake, model):
    status, _, data = call(fake, body(model=model))
    assert status == 404
    assert "migrate" in json.loads(data)["error"]["param"]


# ------------------------------------------------------------------------------------ validation

def _assistant_call(args='{"cmd":"ls"}', cid="call_1", reasoning="r"):
    m = {"role": "assistant", "content": "",
         "tool_calls": [{"id": cid, "type": "function", "function": {"name": "exec_command", "arguments": args}}]}
    if reasoning is not None:
        m["reasoning_content"] = reasoning
    return m


def _tool(cid="call_1", content="out"):
    return {"role": "tool", "tool_call_id": cid, "content": content}


IMG = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
TXT = {"type": "text", "text": "look"}
PASSBACK = "The reasoning_content in the thinking mode must be passed back to the API."

VALIDATION = {
    "empty messages": (dict(messages=[]), 400, bad("messages must not be empty")),
    "missing messages": (dict(messages=None), 400, bad("`messages` is not set")),
    "unknown role": (dict(messages=[{"role": "robot", "content": "x"}]), 400, bad(
        "Input tag 'robot' found using 'role' does not match any of the expected tags: "
        "'system', 'developer', 'user', 'assistant', 'tool'")),
    "tool without tool_call_id": (dict(messages=[{"role": "user", "content": "x"}, _assistant_call(),
                                                 {"role": "tool", "content": "out"}]), 400, bad("`tool_call_id` is not set")),
    "n": (dict(n=1), 400, bad("`n` is not supported")),
    "max_completion_tokens cap": (dict(max_completion_tokens=131100), 400, bad(
        "max_completion_tokens is too large: 131100. This model supports at most 131072 completion tokens, "
        "whereas you provided 131100.")),
    "max_tokens cap": (dict(max_tokens=200000), 400, bad(
        "max_tokens is too large: 200000. This model supports at most 131072 completion tokens, "
        "whereas you provided 200000.")),
    "both token fields differ": (dict(max_tokens=10, max_completion_tokens=20), 400, bad(
        "max_tokens (10) and max_completion_tokens (20) must not both be set to different values")),
    "strict null": (dict(tools=[{"type": "function", "function": {"name": "f", "strict": None}}]), 400,
                    bad("Input should be a valid boolean")),
    "tool without name": (dict(tools=[{"type": "function", "function": {"description": "test", "parameters": {
        "type": "object", "properties": {}}}}]), 400, bad("`name` is not set")),
    "flat responses-style tool": (dict(tools=[{"type": "function", "name": "f", "parameters": {}}]), 400,
                                  bad("`name` is not set")),
    "duplicate tool names": (dict(tools=[EXEC_TOOL, EXEC_TOOL]), 400, bad("tools contains duplicate names: exec_command")),
    "custom tool type": (dict(tools=[{"type": "custom", "name": "apply_patch"}]), 400, bad(
        "Input tag 'custom' found using 'type' does not match any of the expected tags: 'function', 'web_search'")),
    "namespace tool type": (dict(tools=[{"type": "namespace", "name": "ns", "tools": []}]), 400, bad(
        "Input tag 'namespace' found using 'type' does not match any of the expected tags: 'function', 'web_search'")),
    "web_search without plugin": (dict(tools=[{"type": "web_search"}]), 400,
                                  bad("web search tool found in the request body, but webSearchEnabled is false")),
    "effort xhigh on v2.5": (dict(reasoning_effort="xhigh"), 400, bad("Input should be 'low', 'medium' or 'high'")),
    "effort none on v2.5": (dict(reasoning_effort="none"), 400, bad("Input should be 'low', 'medium' or 'high'")),
    "effort minimal on v2.6": (dict(model="mimo-v2.6-pro", reasoning_effort="minimal"), 400,
                               bad("Input should be 'none', 'low', 'medium' or 'high'")),
    "effort none + thinking enabled": (dict(model="mimo-v2.6-pro", reasoning_effort="none",
                                            thinking={"type": "enabled"}), 400,
                                       bad("thinking is enabled but reasoning_effort 'none' disables it")),
    "thinking bad type": (dict(thinking={"type": "auto"}), 400, bad("Input should be 'enabled' or 'disabled'")),
    "json_schema": (dict(response_format={"type": "json_schema", "json_schema": {}}), 400,
                    bad("response_format type 'json_schema' is not supported")),
    "image to text-only model": (dict(messages=[{"role": "user", "content": [TXT, IMG]}]), 404,
                                 bad("", 404, "No endpoints found that support image input")),
    "audio to text-only model": (dict(messages=[{"role": "user", "content": [
        TXT, {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]), 404,
                                 bad("", 404, "No endpoints found that support image input")),
    "image without text (user)": (dict(model="mimo-v2.5", messages=[{"role": "user", "content": [IMG]}]), 400,
                                  bad("`text` is not set")),
    "image in tool message": (dict(model="mimo-v2.5", messages=[
        {"role": "user", "content": "x"}, _assistant_call(), _tool(content=[IMG])]), 400, bad("`text` is not set")),
    "responses input_image part": (dict(model="mimo-v2.5", messages=[{"role": "user", "content": [
        TXT, {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]), 400,
                                   bad("messages[0].content[1]: unsupported content part type 'input_image'")),
    "image_url as string": (dict(model="mimo-v2.5", messages=[{"role": "user", "content": [
        TXT, {"type": "image_url", "image_url": "data:image/png;base64,AAAA"}]}]), 400,
                            bad("`messages[0].content[1].image_url`: Input should be an object with a string `url`")),
    "passback missing on tool turn": (dict(messages=[{"role": "user", "content": "x"},
                                                     _assistant_call(reasoning=None), _tool()]), 400, bad(PASSBACK)),
    "passback missing on plain turn": (dict(messages=[{"role": "user", "content": "x"},
                                                      {"role": "assistant", "content": "hello"},
                                                      {"role": "user", "content": "y"}]), 400, bad(PASSBACK)),
    "passback empty string": (dict(messages=[{"role": "user", "content": "x"},
                                             {"role": "assistant", "content": "hello", "reasoning_content": ""},
                                             {"role": "user", "content": "y"}]), 400, bad(PASSBACK)),
    "passback explicit thinking on v2.6": (dict(model="mimo-v2.6-flash", thinking={"type": "enabled"}, messages=[
        {"role": "user", "content": "x"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "y"}]), 400, bad(PASSBACK)),
    "truncated arguments": (dict(messages=[{"role": "user", "content": "x"}, _assistant_call(args='{"cmd": "ls'),
                                           _tool()]), 400,
                            bad("", message="unexpected end of data: line 1 column 12 (char 11)", type_="BadRequest")),
    "empty arguments": (dict(messages=[{"role": "user", "content": "x"}, _assistant_call(args=""), _tool()]), 400,
                        bad("", message="Input is a zero-length, empty document: line 1 column 1 (char 0)",
                            type_="BadRequest")),
    "missing tool result": (dict(messages=[{"role": "user", "content": "x"}, _assistant_call(),
                                           {"role": "user", "content": "y"}]), 400, bad(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        "'tool_call_id'. The following tool_call_ids did not have response messages: call_1")),
    "orphan tool message": (dict(messages=[{"role": "user", "content": "x"}, _tool("call_9")]), 400, bad(
        "Messages with role 'tool' must be a response to a preceding message with 'tool_calls' "
        "(messages[1], tool_call_id 'call_9')")),
    "tool result with wrong id": (dict(messages=[{"role": "user", "content": "x"}, _assistant_call(),
                                                 _tool("call_2")]), 400, bad(
        "Messages with role 'tool' must be a response to a preceding message with 'tool_calls' "
        "(messages[2], tool_call_id 'call_2')")),
    "tool result not adjacent": (dict(messages=[{"role": "user", "content": "x"}, _assistant_call(),
                                                {"role": "user", "content": "y"}, _tool()]), 400, bad(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        "'tool_call_id'. The following tool_call_ids did not have response messages: call_1")),
    "assistant content null": (dict(messages=[{"role": "user", "content": "x"},
                                              dict(_assistant_call(), content=None), _tool()]), 400,
                               bad("messages[1].content must not be null")),
    "leaked message field": (dict(messages=[{"type": "message", "role": "user", "content": "x"}]), 400,
                             bad("Unrecognized message field: messages[0].type")),
    "image in system message": (dict(model="mimo-v2.5", messages=[{"role": "system", "content": [TXT, IMG]},
                                                                  {"role": "user", "content": "x"}]), 400,
                                bad("messages[0].content[1]: unsupported content part type 'image_url'")),
    "temperature out of range": (dict(temperature=2), 400, bad("`temperature` must be between 0 and 1.5")),
    "stream_options without stream": (dict(stream_options={"include_usage": True}), 400,
                                      bad("stream_options is only allowed when stream is true")),
    "invalid tool name": (dict(tools=[{"type": "function", "function": {"name": "multi_agent.close"}}]), 400,
                          bad("`name` must match ^[a-zA-Z0-9_-]{1,64}$: 'multi_agent.close'")),
}


@pytest.mark.parametrize("case", list(VALIDATION))
def test_validation_rule(fake, case):
    patch, status, expected = VALIDATION[case]
    payload = body(**{k: v for k, v in patch.items() if v is not None})
    for k, v in patch.items():
        if v is None:
            payload.pop(k)
    fake.queue({"text": "should not be consumed"})
    got_status, resp, data = call(fake, payload)
    assert (got_status, json.loads(data)) == (status, expected)
    assert resp.getheader("Content-Type") == "application/json"
    assert resp.getheader("Retry-After") is None
    if "stream_options" not in patch:
        payload["stream"] = True
        got_status, resp, data = call(fake, payload)
        assert (got_status, err_json(data, True)) == (status, expected)
    # A rejected request never reaches "the model": the scripted reply is still queued.
    assert fake.pending == 1
    assert fake.requests[-1].status == status and fake.requests[-1].error == expected


@pytest.mark.parametrize("field", ["input", "instructions", "store", "include", "previous_response_id",
                                   "max_output_tokens", "text", "reasoning", "prompt_cache_key", "client_metadata"])
def test_responses_only_fields_rejected(fake, field):
    status, _, data = call(fake, body(**{field: None}))
    assert (status, json.loads(data)) == (400, bad(f"Unrecognized request argument supplied: {field}"))


def test_valid_histories_accepted(fake):
    ok = [
        # thinking disabled: no pass-back needed, temperature honoured
        body(thinking={"type": "disabled"}, temperature=0.2, messages=[
            {"role": "user", "content": "x"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "y"}]),
        # v2.6 reasoning_effort none = thinking off
        body(model="mimo-v2.6-pro", reasoning_effort="none", messages=[
            {"role": "user", "content": "x"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "y"}]),
        # parallel calls answered in any order, content omitted with tool_calls, extras tolerated
        body(tools=[EXEC_TOOL], tool_choice="required", parallel_tool_calls=True, reasoning_split=True,
             max_completion_tokens=131072, reasoning_effort="high", messages=[
                 {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
                 {"role": "user", "content": "x"},
                 {"role": "assistant", "reasoning_content": "r", "tool_calls": [
                     {"id": "a", "type": "function", "function": {"name": "exec_command", "arguments": "{}"}},
                     {"id": "b", "type": "function", "function": {"name": "exec_command", "arguments": "{\"x\":1}"}}]},
                 _tool("b"), _tool("a", [{"type": "text", "text": "listing"}])]),
        # multimodal model, image with text, tool content string
        body(model="mimo-v2.5", max_tokens=100, max_completion_tokens=100, messages=[{"role": "user", "content": [TXT, IMG]}]),
        body(model="mimo-v2.6-pro", messages=[{"role": "user", "content": [TXT, {"type": "video_url", "video_url": {
            "url": "https://x/v.mp4", "fps": 2, "media_resolution": "max"}}]}]),
    ]
    for payload in ok:
        status, _, data = call(fake, payload)
        assert status == 200, (payload, data)
    recs = fake.requests
    assert recs[0].thinking is False and recs[0].effective["temperature"] == 0.2
    assert recs[1].thinking is False
    assert recs[2].thinking is True
    # thinking mode: sampling knobs forced, tool_choice ignored (behaves as auto)
    assert recs[2].effective["temperature"] == 1.0 and recs[2].effective["top_p"] == 0.95
    assert recs[2].effective["tool_choice"] == "auto"


def test_web_search_plugin_and_annotations():
    ann = [{"url": "https://a.example/x", "title": "A"}, {"url": "https://b.example/y", "title": "B"}]
    ws = {"type": "web_search", "force_search": True, "limit": 3}
    with FakeMimo(web_search_enabled=True).start() as f:
        f.queue({"text": "found", "annotations": ann})
        ev = stream(f, body(tools=[ws]))
        first = ev[0]["choices"][0]["delta"]
        assert [a["url"] for a in first["annotations"]] == [a["url"] for a in ann]
        assert set(first["annotations"][0]) >= {"type", "url", "title", "summary", "site_name", "publish_time", "logo_url"}
        assert ev[-3]["usage"]["web_search_usage"] == {"tool_usage": 1, "page_usage": 2}
        # No web_search tool in the request -> a real model cannot cite: annotations are dropped.
        f.queue({"text": "found", "annotations": ann})
        ev = stream(f, body())
        assert all("annotations" not in d for d in deltas(ev))
        # Codex's hosted-tool shape leaking through is refused.
        status, _, data = call(f, body(tools=[{"type": "web_search", "external_web_access": False}]))
        assert status == 400 and "external_web_access" in json.loads(data)["error"]["param"]
        status, _, data = call(f, body(model="mimo-v2.6-pro-ultraspeed", tools=[ws]))
        assert status == 400
        # switchable at runtime, also over the control API
        f.web_search_enabled = False
        assert call(f, body(tools=[ws]))[0] == 400


# ------------------------------------------------------------------------------------ stream framing

def test_text_stream_framing(fake):
    fake.queue({"text": "Hello wonderful world, ça va? 😀", "reasoning": "Let me think about this.",
                "usage": {"cached_tokens": 10}})
    ev = stream(fake)
    assert ev[-2:] == ["[DONE]", "[DONE]"]
    chunks = ev[:-2]
    rid = chunks[0]["id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    for c in chunks:
        assert list(c)[:5] == ["id", "choices", "created", "model", "object"]
        assert c["id"] == rid and c["object"] == "chat.completion.chunk" and c["model"] == MODEL
    ds = deltas(chunks)
    for d in ds:
        assert list(d) == ["content", "role", "tool_calls", "reasoning_content"]
    assert ds[0] == {"content": "", "role": "assistant", "tool_calls": None, "reasoning_content": None}
    kinds = ["reasoning" if d["reasoning_content"] else "content" if d["content"] else "other" for d in ds[1:-1]]
    assert kinds == sorted(kinds, key=lambda k: k != "reasoning") and "content" in kinds and "reasoning" in kinds
    assert "".join(d["reasoning_content"] or "" for d in ds) == "Let me think about this."
    pieces = [d["content"] for d in ds[1:] if d["content"]]
    assert "".join(pieces) == "Hello wonderful world, ça va? 😀"
    assert len(pieces) > 3 and any(p[-1].isalpha() and n[0].isalpha() for p, n in zip(pieces, pieces[1:]))
    finish = chunks[-2]
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["usage"] is None
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])
    assert all("usage" not in c for c in chunks[:-2])
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["prompt_tokens_details"] == {"cached_tokens": 10}
    u = usage["usage"]
    assert list(u) == ["completion_tokens", "prompt_tokens", "total_tokens", "completion_tokens_details",
                       "prompt_tokens_details"]
    assert u["total_tokens"] == u["completion_tokens"] + u["prompt_tokens"]
    assert 0 < u["completion_tokens_details"]["reasoning_tokens"] < u["completion_tokens"]
    created = [c["created"] for c in chunks]
    assert created == sorted(created) and created[-1] > created[0]


def test_usage_chunk_only_with_include_usage(fake):
    fake.queue({"text": "a"}, {"text": "b"})
    ev = stream(fake, body(stream=True, stream_options={"include_usage": False}))
    assert all(c["choices"] for c in ev if isinstance(c, dict))
    status, _, data = call(fake, body(stream=True))
    assert all(c["choices"] for c in sse_events(data) if isinstance(c, dict))


@pytest.mark.parametrize("cached,expected", [(None, None), ("missing", {}), (7, {"cached_tokens": 7})])
def test_usage_variants(fake, cached, expected):
    fake.queue({"text": "x", "usage": {"cached_tokens": cached, "prompt_tokens": 100}, "reasoning_tokens": 3})
    u = stream(fake)[-3]["usage"]
    assert u["prompt_tokens_details"] == expected and u["prompt_tokens"] == 100
    assert u["completion_tokens_details"] == {"reasoning_tokens": 3}
    fake.queue({"text": "x", "usage": None})
    assert all(isinstance(e, str) or e["choices"] for e in stream(fake))


def test_reasoning_dropped_when_thinking_off(fake):
    fake.queue({"text": "x", "reasoning": "hidden"}, {"text": "x", "reasoning": "forced", "force_reasoning": True})
    assert all(d["reasoning_content"] is None for d in deltas(stream(fake, body(thinking={"type": "disabled"}))))
    assert any(d["reasoning_content"] for d in deltas(stream(fake, body(thinking={"type": "disabled"}))))


@pytest.mark.parametrize("finish", ["stop", "length", "content_filter", "repetition_truncation"])
def test_finish_variants(fake, finish):
    fake.queue({"text": "partial answer", "finish": finish})
    assert stream(fake)[-4]["choices"][0]["finish_reason"] == finish


def test_non_stream_shapes(fake):
    fake.queue({"text": "hi there", "reasoning": "r", "id": "f" * 32, "created": 1700000000},
               {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "ls"}, "id": "call_" + "a" * 24}],
                "reasoning": "r"})
    status, resp, data = call(fake, body())
    assert resp.getheader("Content-Type") == "application/json"
    out = json.loads(data)
    assert list(out) == ["id", "choices", "created", "model", "object", "usage"]
    assert out["id"] == "f" * 32 and out["created"] == 1700000000 and out["object"] == "chat.completion"
    msg = out["choices"][0]["message"]
    assert msg == {"content": "hi there", "role": "assistant", "tool_calls": None, "reasoning_content": "r"}
    out = json.loads(call(fake, body(tools=[EXEC_TOOL]))[2])
    msg = out["choices"][0]["message"]
    assert out["choices"][0]["finish_reason"] == "tool_calls" and msg["content"] == ""
    assert msg["tool_calls"] == [{"id": "call_" + "a" * 24, "function": {"arguments": '{"cmd": "ls"}',
                                                                        "name": "exec_command"}, "type": "function"}]


# ------------------------------------------------------------------------------------ tool calls

ARGS_A = '{"cmd": "echo \\"héllo\\" \\\\ \\u00e9 done", "workdir": "/tmp"}'
ARGS_B = '{"path":"a.txt"}'


def _collect_calls(ds):
    calls: dict[int, dict] = {}
    order = []
    for d in ds:
        for tc in d["tool_calls"] or []:
            order.append(tc["index"])
            assert list(tc) == ["index", "id", "function", "type"] and tc["type"] == "function"
            if tc["index"] not in calls:
                assert re.fullmatch(r"call_[0-9a-f]{24}", tc["id"]) and tc["function"]["arguments"] == ""
                assert tc["function"]["name"]
                calls[tc["index"]] = {"id": tc["id"], "name": tc["function"]["name"], "pieces": []}
            else:
                assert tc["id"] is None and tc["function"]["name"] is None
                calls[tc["index"]]["pieces"].append(tc["function"]["arguments"])
    return calls, order


def test_tool_call_fragments_sequential(fake):
    fake.queue({"reasoning": "I will run it.", "tool_calls": [{"name": "exec_command", "arguments": ARGS_A},
                                                              {"name": "read_file", "arguments": ARGS_B}]})
    ev = stream(fake, body(tools=[EXEC_TOOL, READ_TOOL]))
    ds = deltas(ev)
    calls, order = _collect_calls(ds)
    assert "".join(calls[0]["pieces"]) == ARGS_A and "".join(calls[1]["pieces"]) == ARGS_B
    assert json.loads(ARGS_A)["cmd"] == 'echo "héllo" \\ é done'
    assert order == sorted(order)  # all of call 0, then call 1
    pieces = calls[0]["pieces"]
    cuts, pos = set(), 0
    for p in pieces:
        pos += len(p)
        cuts.add(pos)
    esc = ARGS_A.index("\\u00e9")
    assert esc + 1 in cuts and esc + 4 in cuts, pieces               # cut after "\\" and inside \\uXXXX
    assert ARGS_A.index('\\"h') + 1 in cuts, pieces                 # between backslash and escaped quote
    assert any(p.count('"') == 1 for p in pieces)                  # cut inside a string
    assert ev[-4]["choices"][0]["finish_reason"] == "tool_calls"
    first_tool = next(i for i, d in enumerate(ds) if d["tool_calls"])
    assert all(d["reasoning_content"] for d in ds[1:first_tool])


def test_tool_call_fragments_interleaved_with_text_and_ids(fake):
    fake.queue({"text": "Running both.", "interleaved": True,
                "tool_calls": [{"name": "exec_command", "arguments": ARGS_A, "id": "call_" + "1" * 24},
                               {"name": "read_file", "arguments": ARGS_B, "id": "call_" + "2" * 24}]})
    ds = deltas(stream(fake, body(tools=[EXEC_TOOL, READ_TOOL])))
    calls, order = _collect_calls(ds)
    assert calls[0]["id"] == "call_" + "1" * 24 and calls[1]["id"] == "call_" + "2" * 24
    assert order[:4] == [0, 1, 0, 1]
    assert "".join(calls[0]["pieces"]) == ARGS_A and "".join(calls[1]["pieces"]) == ARGS_B
    first_tool = next(i for i, d in enumerate(ds) if d["tool_calls"])
    assert "".join(d["content"] or "" for d in ds[:first_tool]) == "Running both."


def test_length_mid_tool_call_leaves_truncated_json(fake):
    fake.queue({"tool_calls": [{"name": "exec_command", "arguments": ARGS_A}], "finish": "length"})
    ev = stream(fake, body(tools=[EXEC_TOOL]))
    calls, _ = _collect_calls(deltas(ev))
    args = "".join(calls[0]["pieces"])
    assert ARGS_A.startswith(args) and args != ARGS_A
    assert orjson_style_error(args) is not None
    assert ev[-4]["choices"][0]["finish_reason"] == "length"


def test_undeclared_tool_call_is_a_script_error(fake):
    fake.queue({"tool_calls": [{"name": "exec_command", "arguments": "{}"}]})
    status, _, data = call(fake, body())
    assert status == 500 and json.loads(data)["error"]["type"] == "fake_script_error"
    fake.queue({"tool_calls": [{"name": "nope", "arguments": "{}"}], "allow_undeclared_tools": True})
    assert call(fake, body(tools=[EXEC_TOOL]))[0] == 200


def test_split_arguments_unit():
    for s in (ARGS_A, ARGS_B, '{"a":"\\\\\\n"}', "{}", "x"):
        assert "".join(split_arguments(s)) == s
    assert split_arguments("") == []


# ------------------------------------------------------------------------------------ transport

def test_one_chunk_per_event_and_utf8_split_inside_a_code_point(fake):
    fake.queue({"text": "plain ascii then é and 😀 end"})
    s = raw_request(fake.port, body(stream=True))
    head, chunks, terminated = read_raw_chunks(s)
    s.close()
    assert b"Transfer-Encoding: chunked" in head and terminated
    joined = b"".join(chunks)
    events = joined.split(b"\n\n")[:-1]
    # every event is its own chunk, except exactly one event deliberately split in two
    assert len(chunks) == len(events) + 1
    bad_chunks = []
    for c in chunks:
        try:
            c.decode("utf-8")
        except UnicodeDecodeError:
            bad_chunks.append(c)
    assert len(bad_chunks) == 2  # both halves of the split code point
    assert "".join(d["content"] or "" for d in deltas(sse_events(joined))) == "plain ascii then é and 😀 end"


def test_keep_alive_several_requests_one_connection(fake):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    fake.queue({"text": "one"}, {"error": {"status": 429}}, {"text": "three"})
    assert call(fake, body(stream=True), conn=conn)[0] == 200
    assert call(fake, body(stream=True), conn=conn)[0] == 429
    assert call(fake, body(model="bad"), conn=conn)[0] == 400
    assert call(fake, body(), conn=conn)[0] == 200
    assert call(fake, method="GET", path="/models", conn=conn)[0] == 200
    sock = conn.sock
    assert sock is not None
    conn.close()


def test_concurrent_streams(fake):
    n = 256
    fake.queue({"text": "concurrent reply", "header_delay": 0.3, "repeat": n})
    results: list = []

    def one():
        try:
            results.append(stream(fake, timeout=30)[-4]["choices"][0]["finish_reason"])
        except Exception as e:  # noqa: BLE001
            results.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == ["stop"] * n
    assert time.monotonic() - t0 < 10  # they really ran concurrently (0.3 s each)
    assert fake.pending == 0


# ------------------------------------------------------------------------------------ failure knobs

@pytest.mark.parametrize("streaming", [False, True])
def test_queued_errors_exact_bodies(fake, streaming):
    fake.queue({"error": {"status": 429}}, {"error": {"status": 429, "retry_after": 2}},
               {"error": {"status": 400, "param": "context too long", "message": "Param Incorrect"}},
               {"error": {"status": 421}}, {"error": {"status": 503, "body": "upstream overloaded"}})
    st, resp, data = call(fake, body(stream=streaming))
    assert (st, err_json(data, streaming)) == (429, {"error": {"code": "429", "message": "Too many requests",
                                                               "type": "limitation"}})
    assert resp.getheader("Retry-After") is None
    if streaming:
        assert resp.getheader("Content-Type") == "text/event-stream"
    st, resp, data = call(fake, body(stream=streaming))
    assert st == 429 and resp.getheader("Retry-After") == "2"
    st, resp, data = call(fake, body(stream=streaming))
    assert (st, err_json(data, streaming)) == (400, bad("context too long"))
    st, resp, data = call(fake, body(stream=streaming))
    assert st == 421 and err_json(data, streaming)["error"]["type"] == "content_filter"
    st, resp, data = call(fake, body(stream=streaming))
    assert st == 503 and data == (b"data:upstream overloaded\n\n" if streaming else b"upstream overloaded")


@pytest.mark.parametrize("mode", ["fin", "rst"])
def test_cut_after(fake, mode):
    fake.queue({"text": "a fairly long answer to cut", "cut_after": 3, "cut_mode": mode})
    s = raw_request(fake.port, body(stream=True))
    if mode == "fin":
        head, chunks, terminated = read_raw_chunks(s)
        assert not terminated and len(chunks) == 3 and b"[DONE]" not in b"".join(chunks)
    else:
        with pytest.raises(ConnectionResetError):
            read_raw_chunks(s)
    s.close()
    rec = fake.requests[-1]
    assert rec.wait_done() and rec.events_sent == 3 and not rec.completed
    # the next request still works (new connection)
    assert call(fake, body())[0] == 200


def test_mid_error(fake):
    fake.queue({"text": "some text here", "reasoning": "hmm",
                "mid_error": {"after": 3, "status": 500, "message": "Internal error"}})
    ev = stream(fake)
    assert len(ev) == 4 and ev[-1] == {"error": {"code": "500", "message": "Internal error", "param": "",
                                                 "type": ""}}
    assert "[DONE]" not in ev and all(e["choices"][0]["finish_reason"] is None for e in ev[:3])


def test_header_delay(fake):
    fake.queue({"text": "late", "header_delay": 0.4})
    t0 = time.monotonic()
    ev = stream(fake)
    assert time.monotonic() - t0 >= 0.4 and ev[-1] == "[DONE]"
    fake.queue({"text": "late", "header_delay": 2})
    with pytest.raises(socket.timeout):
        call(fake, body(stream=True), timeout=0.3)
    assert fake.wait_until(lambda: fake.requests[-1].cancelled, 3)
    assert fake.requests[-1].status is None


def test_stall_then_client_gives_up(fake):
    fake.queue({"text": "stalls after the role chunk", "stall_after": 1})
    s = raw_request(fake.port, body(stream=True))
    s.settimeout(0.4)
    buf = b""
    with pytest.raises(socket.timeout):
        while True:
            got = s.recv(65536)
            assert got, "server closed a stalled stream"
            buf += got
    assert buf.count(b"data: ") == 1
    rec = fake.requests[-1]
    assert not rec.cancelled
    s.close()
    assert fake.wait_until(lambda: rec.cancelled, 3) and rec.events_sent == 1


def test_client_disconnect_mid_stream_is_recorded(fake):
    fake.queue({"text_chunks": 400, "chunk_text": "y", "chunk_delay": 0.005})
    s = raw_request(fake.port, body(stream=True))
    s.recv(4096)
    s.close()
    rec = fake.requests[-1]
    assert fake.wait_until(lambda: rec.done, 5)
    assert rec.cancelled and not rec.completed and rec.events_sent < 400


def test_bench_mode_is_fast(fake):
    fake.queue({"text_chunks": 5000, "chunk_text": "x"})
    t0 = time.monotonic()
    ev = stream(fake)
    assert time.monotonic() - t0 < 3
    assert "".join(d["content"] or "" for d in deltas(ev)) == "x" * 5000


# ------------------------------------------------------------------------------------ scripting

def test_default_reply_and_repeat(fake):
    ev = stream(fake, body(messages=[{"role": "user", "content": "ping"}]))
    ds = deltas(ev)
    assert "".join(d["reasoning_content"] or "" for d in ds) == "The user said: ping"
    assert "".join(d["content"] or "" for d in ds) == "MiMo (fake) received: ping"
    assert fake.requests[-1].scripted is False
    fake.queue({"text": "again", "repeat": 2}, {"text": "last"})
    texts = [json.loads(call(fake, body())[2])["choices"][0]["message"]["content"] for _ in range(4)]
    assert texts == ["again", "again", "last", "MiMo (fake) received: hi"]


def test_queue_rejects_bad_specs(fake):
    for spec in ({"txt": "typo"}, {"finish": "done"}, {"tool_calls": [{"arguments": "{}"}]},
                 {"error": {"retry_after": 1}}, {"cut_mode": "half"}, {"usage": {"cached_tokens": "x"}},
                 {"text": "a", "text_chunks": 3}, {"repeat": 0}, "text"):
        with pytest.raises(ValueError):
            fake.queue(spec)
    assert fake.pending == 0
    assert set(Reply.KEYS) >= {"text", "reasoning", "tool_calls", "error", "cut_after", "mid_error", "header_delay",
                               "chunk_delay", "stall_after", "annotations", "usage", "reasoning_tokens"}


def test_recording(fake):
    call(fake, body(max_completion_tokens=64))
    rec = fake.requests[-1]
    assert rec.path == "/v1/chat/completions" and rec.method == "POST" and rec.status == 200
    assert rec.body["max_completion_tokens"] == 64 and rec["body"] is rec.body
    assert rec.headers["authorization"] == "Bearer sk-test" and rec.headers["Content-Type"] == "application/json"
    assert rec.cancelled is False and rec.completed and rec.model == MODEL and rec.thinking is True
    assert fake.last is rec
    fake.reset()
    assert fake.requests == [] and fake.pending == 0


def _control(port, method, path, payload=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, body=json.dumps(payload).encode() if payload is not None else None)
    resp = conn.getresponse()
    out = resp.status, json.loads(resp.read())
    conn.close()
    return out


def test_control_endpoints(fake):
    assert _control(fake.port, "POST", "/_fake/queue", [{"text": "remote"}, {"text": "two"}]) == (
        200, {"queued": 2, "pending": 2})
    assert _control(fake.port, "POST", "/_fake/queue", {"text": "three"})[1]["pending"] == 3
    st, out = _control(fake.port, "POST", "/_fake/queue", [{"bogus": 1}])
    assert st == 400 and "bogus" in out["error"]
    assert json.loads(call(fake, body())[2])["choices"][0]["message"]["content"] == "remote"
    st, recs = _control(fake.port, "GET", "/_fake/requests")
    assert st == 200 and len(recs) == 1 and recs[0]["body"]["model"] == MODEL and recs[0]["status"] == 200
    assert recs[0]["spec"] == {"text": "remote"} and recs[0]["cancelled"] is False
    assert _control(fake.port, "POST", "/_fake/config", {"web_search_enabled": True}) == (200, {"ok": True})
    assert fake.web_search_enabled is True
    assert _control(fake.port, "POST", "/_fake/config", {"nope": 1})[0] == 400
    assert _control(fake.port, "POST", "/_fake/reset") == (200, {"ok": True})
    assert _control(fake.port, "GET", "/_fake/requests") == (200, [])
    assert fake.pending == 0


def test_cli_startup_and_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "mimo2codex.fakes.mimo", "--port", "0", "--key", "sk-cli"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)/v1\n", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        port = int(m.group(1))

        class P:
            pass
        P.port = port
        assert _control(port, "POST", "/_fake/queue", [{"text": "from cli"}])[0] == 200
        st, _, data = call(P, body(), key="sk-cli")
        assert st == 200 and json.loads(data)["choices"][0]["message"]["content"] == "from cli"
        assert call(P, body(), key="sk-test")[0] == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
