"""A working day on Codex through the proxy (issue 13): setup-codex, websocket refusal, Codex's own
auto-compaction, resumed sessions. The real Codex CLI -> a real mitmdump -> the strict fake MiMo,
sharing the module fixtures of tests/test_codex_e2e.py.

What Codex 0.171 does, measured: with a custom provider it compacts inline (an ordinary
/v1/responses request, `request_kind: compaction` in x-codex-turn-metadata, whose last user message
is the compaction prompt), then starts the next window with the summary in a user message; a refused
websocket upgrade makes it fall back to HTTP at once only on 426.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.support.codex_cli import ROOT
from tests.test_codex_e2e import (  # noqa: F401  (module fixtures: one proxy and one fake for this file)
    MODEL, _assistant_msgs, _codex, _tool_msgs, e2e, fake, mimo, proxy)

pytestmark = [pytest.mark.codex, pytest.mark.e2e]

BIG_USAGE = {"prompt_tokens": 60000, "completion_tokens": 50, "total_tokens": 60050}
COMPACT_PROMPT = "CONTEXT CHECKPOINT COMPACTION"  # Codex's own compaction prompt (0.171)


def _texts(body: dict, role: str) -> list[str]:
    return [json.dumps(m.get("content"), ensure_ascii=False) for m in body["messages"] if m.get("role") == role]


def _all_accepted(e2e) -> None:
    bad = [(q.status, q.error) for q in e2e.chats if q.status != 200 or not q.completed]
    assert not bad, bad


def test_setup_codex_config_gives_codex_apply_patch_and_plain_http(e2e, tmp_path):
    """Only what `launch.py setup-codex` wrote: Codex offers the freeform apply_patch tool (MiMo sees it as a
    function), edits the file with it, and never tries a websocket."""
    home = tmp_path / "codex-home"
    port = e2e.proxy.base_url.split(":")[2].split("/")[0]
    p = subprocess.run([sys.executable, str(ROOT / "launch.py"), "setup-codex", "--port", port],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, CODEX_HOME=str(home)),
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    patch = "*** Begin Patch\n*** Add File: day.txt\n+written by apply_patch\n*** End Patch\n"
    e2e.fake.queue({"reasoning": "Use apply_patch.",
                    "tool_calls": [{"name": "apply_patch", "arguments": json.dumps({"input": patch})}]},
                   {"text": "day.txt created."})
    r = e2e.run("create day.txt", home=home, home_config=True, model=MODEL)
    assert r.returncode == 0, e2e.why(r)
    assert (e2e.workdir / "day.txt").read_text() == "written by apply_patch\n", e2e.why(r)
    [tool] = [t for t in e2e.chats[0].body["tools"] if t["function"]["name"] == "apply_patch"]
    assert set(tool["function"]["parameters"]["properties"]) == {"input"}
    assert not r.reconnects and "GET http" not in e2e.proxy.log()[e2e.log_mark:], e2e.why(r)  # no websocket try


def test_raw_websocket_handshake_gets_a_fast_clean_426(proxy):
    host, port = proxy.base_url.split("//")[1].split("/")[0].split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /v1/responses HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    elapsed = time.monotonic() - start
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 426 "), head
    assert b"sec-websocket-accept" not in head.lower()  # no upgrade happened
    assert json.loads(body)["error"]["code"] == "websocket_unsupported"
    assert elapsed < 2, elapsed


def test_codex_declaring_websockets_falls_back_to_http_at_once(e2e):
    e2e.fake.queue({"text": "over HTTP after all"})
    r = e2e.run("hi", extra_config=[("model_providers.mimo.supports_websockets", True)])
    assert r.returncode == 0, e2e.why(r)
    assert r.final_message == "over HTTP after all"
    assert not r.reconnects, e2e.why(r)  # a 404 here cost six "Reconnecting..." and ~6 s
    log = e2e.proxy.log()[e2e.log_mark:]
    assert log.count("GET http") == 1 and "426" in log, log[-2000:]


def test_codex_auto_compaction_runs_through_the_proxy_and_the_session_goes_on(e2e, tmp_path):
    """Tool calls with reasoning, large usage -> Codex compacts before the next turn. Every MiMo request is
    accepted by the strict fake (no orphan tool message, no pass-back 400), the window after the compaction
    carries the summary, and a third turn still works."""
    home = tmp_path / "codex-home"
    kw = dict(home=home, ephemeral=False, catalog=True, extra_config=[("model_auto_compact_token_limit", 20000)])
    e2e.fake.queue(
        {"reasoning": "List the files first.",
         "tool_calls": [{"name": "exec_command", "arguments": "{\"cmd\":\"echo compact-me\"}"}]},
        {"text": "Saw compact-me.", "reasoning": "Done.", "usage": BIG_USAGE},
        {"text": "SUMMARY-7f3: user ran echo compact-me; next: answer follow-ups.", "reasoning": "Summarise."},
        {"text": "Continuing after compaction."},
        {"text": "Third turn fine."},
    )
    r1 = e2e.run("run echo", **kw)
    assert r1.returncode == 0 and r1.final_message == "Saw compact-me.", e2e.why(r1)
    r2 = e2e.run("what next?", resume_last=True, **kw)
    assert r2.returncode == 0, e2e.why(r2)
    assert r2.final_message == "Continuing after compaction.", e2e.why(r2)
    r3 = e2e.run("and then?", resume_last=True, **kw)
    assert r3.returncode == 0 and r3.final_message == "Third turn fine.", e2e.why(r3)
    _all_accepted(e2e)
    bodies = [q.body for q in e2e.chats]
    assert len(bodies) == 5, e2e.why(r3)
    compaction, after = bodies[2], bodies[3]
    assert COMPACT_PROMPT in _texts(compaction, "user")[-1]
    # the compaction request still carries the tool round, paired
    [call_msg] = [m for m in _assistant_msgs(compaction) if m.get("tool_calls")]
    assert [t["tool_call_id"] for t in _tool_msgs(compaction)] == [call_msg["tool_calls"][0]["id"]]
    assert call_msg.get("reasoning_content") == "List the files first."
    # the next window: the summary instead of the old rounds, no tool message left without its call
    assert any("SUMMARY-7f3" in t for t in _texts(after, "user")), _texts(after, "user")
    assert not _tool_msgs(after) and not any(m.get("tool_calls") for m in _assistant_msgs(after))
    assert "what next?" in _texts(after, "user")[-1]
    assert "and then?" in _texts(bodies[4], "user")[-1]
    assert any("SUMMARY-7f3" in t for t in _texts(bodies[4], "user"))


def test_resumed_session_with_tool_calls_and_reasoning_sends_a_valid_history(e2e, tmp_path):
    """`codex exec resume --last` twice after tool rounds: each resumed request replays every earlier call
    with its output right after it and its reasoning passed back."""
    home = tmp_path / "codex-home"
    kw = dict(home=home, ephemeral=False)
    e2e.fake.queue(
        {"reasoning": "Two commands.", "tool_calls": [
            {"name": "exec_command", "arguments": "{\"cmd\":\"echo one\"}"},
            {"name": "exec_command", "arguments": "{\"cmd\":\"echo two\"}"}]},
        {"text": "one and two.", "reasoning": "Both ran."},
        {"reasoning": "Again.", "tool_calls": [{"name": "exec_command", "arguments": "{\"cmd\":\"echo three\"}"}]},
        {"text": "three.", "reasoning": "Ran."},
        {"text": "All done.", "reasoning": "Summing up."},
    )
    r1 = e2e.run("first", **kw)
    assert r1.returncode == 0 and r1.final_message == "one and two.", e2e.why(r1)
    r2 = e2e.run("second", resume_last=True, **kw)
    assert r2.returncode == 0 and r2.final_message == "three.", e2e.why(r2)
    r3 = e2e.run("third", resume_last=True, **kw)
    assert r3.returncode == 0 and r3.final_message == "All done.", e2e.why(r3)
    _all_accepted(e2e)
    last = e2e.chats[-1].body
    calls = [m for m in _assistant_msgs(last) if m.get("tool_calls")]
    assert [len(m["tool_calls"]) for m in calls] == [2, 1]
    assert [m.get("reasoning_content") for m in calls] == ["Two commands.", "Again."]
    msgs = last["messages"]
    for m in calls:  # every call's outputs follow it, in call order
        i = msgs.index(m)
        ids = [c["id"] for c in m["tool_calls"]]
        assert [t.get("tool_call_id") for t in msgs[i + 1:i + 1 + len(ids)]] == ids
    assert "third" in _texts(last, "user")[-1]
    answers = [m.get("content") for m in _assistant_msgs(last) if m.get("content")]
    assert answers == ["one and two.", "three."]
