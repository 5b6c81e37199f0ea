"""`launch.py show`: transcripts from recorded exchanges, and reading them back from a flow file."""

from __future__ import annotations

import json

from mitmproxy import http, io
from mitmproxy.test import tflow, tutils

from addon import flowfile
from mimo2codex.sessions import transcript
from mimo2codex.sessions.recording import Exchange

USER = {"type": "message", "id": "msg_a1", "role": "user", "content": [{"type": "input_text", "text": "List the files"}]}
DEV = {"type": "message", "id": "msg_d1", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex. " * 100}]}
ENV = {"type": "message", "id": "msg_e1", "role": "user",
       "content": [{"type": "input_text", "text": "<environment_context>\n  <cwd>/tmp/work</cwd>\n  <shell>bash</shell>\n</environment_context>"}]}
REASONING = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "I should run ls."}],
             "encrypted_content": "sealed"}
CALL = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "exec_command", "arguments": '{"cmd":"ls -la"}'}
PATCH = {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_2", "name": "apply_patch",
         "input": "*** Begin Patch\n*** Add File: a.txt\n+hello\n*** End Patch\n"}
OUTPUT = {"type": "function_call_output", "id": "fco_1", "call_id": "call_1",
          "output": "Process exited with code 0\nOutput:\n" + "".join(f"file{i}.txt\n" for i in range(30))}
ANSWER = {"type": "message", "id": "msg_2", "role": "assistant", "content": [{"type": "output_text", "text": "There are 30 files."}]}


def usage(i, o, r=0, c=0):
    return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o,
            "input_tokens_details": {"cached_tokens": c}, "output_tokens_details": {"reasoning_tokens": r}}


def exchange(index, items, output, *, status="completed", error="", u=None, **kw) -> Exchange:
    return Exchange(index=index, started=1_800_000_000.0 + index, ended=1_800_000_000.5 + index,
                    responses_request={"model": "mimo-v2.5-pro", "input": items, "prompt_cache_key": f"k{index}"},
                    chat_request={"model": "mimo-v2.5-pro", "messages": []}, model="mimo-v2.5-pro", provider="mimo",
                    response={"id": f"resp_{index}", "status": status, "output": output, "usage": u,
                              **({"error": {"code": "server_error", "message": error}} if error else {})},
                    error=error, **kw)


def session() -> list[Exchange]:
    first = [DEV, ENV, USER]
    second = first + [REASONING, CALL, OUTPUT]
    third = second + [ANSWER, {"type": "message", "id": "msg_u2", "role": "user", "content": [{"type": "input_text", "text": "Add a.txt"}]}]
    return [
        Exchange(index=1, method="GET", path="/v1/models", client_status=200, started=1_800_000_000.0),
        exchange(2, first, [REASONING, CALL], u=usage(1200, 40, 12)),
        exchange(3, second, [ANSWER], u=usage(1400, 8, c=1024)),
        exchange(4, third, [PATCH], status="failed", error="upstream connection lost mid-stream", marked=":x:"),
        exchange(5, third, [PATCH], u=usage(1500, 30)),
    ]


def test_transcript_shows_new_input_and_the_answers_once():
    text = transcript.render(session(), title="s.mitm")
    assert text.startswith("Session s.mitm\n5 flows, 4 model requests to mimo (mimo-v2.5-pro)")
    assert "tokens in 4,100 · out 78 · 3 tool calls · 1 failed request" in text
    assert "· #1 " in text and "GET /v1/models → 200" in text
    assert "[developer] 1,500 chars" in text and "[context] cwd /tmp/work · shell bash" in text
    assert text.count("user> List the files") == 1  # not repeated although every request re-sends it
    assert "thinking> I should run ls." in text
    assert '→ exec_command (call_1) {"cmd": "ls -la"}' in text
    assert "← output (call_1)" in text and "file0.txt" in text
    assert "more lines (--full shows everything)" in text and "file29.txt" not in text  # long output shortened
    assert text.count("assistant> There are 30 files.") == 1
    assert "═══ turn 1" in text and "═══ turn 2" in text and "user> Add a.txt" in text
    assert "→ apply_patch (call_2)" in text and "*** Add File: a.txt" in text
    assert "✗ failed: server_error: upstream connection lost mid-stream" in text
    assert "same input again (retry)" in text
    assert "in 1,400 (cached 1,024) · out 8" in text and "out 40 (reasoning 12)" in text


def test_full_transcript_keeps_everything():
    text = transcript.render(session(), full=True)
    assert "file29.txt" in text and "You are Codex. You are Codex." in text


def test_resumed_session_shows_history_marked():
    resumed = exchange(1, [USER, REASONING, CALL, OUTPUT, ANSWER,
                           {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "again"}]}], [ANSWER])
    text = transcript.render([resumed])
    assert "thinking (history)> I should run ls." in text and "assistant (history)> There are 30 files." in text
    assert "user> again" in text


def test_flow_file_round_trip(tmp_path):
    """A flow as the addon leaves it -> flow file -> Exchange: every field show/replay/compare use."""
    original = {"model": "mimo-v2.5-pro", "input": [USER]}
    upstream = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
    f = tflow.tflow(req=tutils.treq(method=b"POST", path=b"/v1/chat/completions", content=b"{}"),
                    resp=tutils.tresp(content=upstream, headers=http.Headers(content_type="text/event-stream",
                                                                            transfer_encoding="chunked")))
    f.metadata.update({"m2c.responses_request": json.dumps(original), "m2c.chat_request": '{"model":"mimo-v2.5-pro"}',
                       "m2c.model": "mimo-v2.5-pro", "m2c.provider": "mimo", "m2c.stream": True,
                       "m2c.upstream_status": 200, "m2c.upstream_content_type": "text/event-stream",
                       "m2c.upstream_body": upstream.decode(), "m2c.client_body": "event: response.completed\ndata: {}\n\n",
                       "m2c.response": json.dumps({"status": "completed", "output": [ANSWER], "usage": usage(3, 1)}),
                       "m2c.replay": "#2 exact"})
    f.comment = "mimo-v2.5-pro completed"
    local = tflow.tflow(req=tutils.treq(method=b"GET", path=b"/v1/models"), resp=tutils.tresp(status_code=200))
    path = tmp_path / "one.mitm"
    with open(path, "wb") as fo:
        writer = io.FlowWriter(fo)
        writer.add(local)
        writer.add(f)
    local_ex, ex = flowfile.load(path)
    assert (local_ex.index, local_ex.translated, local_ex.path) == (1, False, "/v1/models")
    assert ex.index == 2 and ex.translated and ex.responses_request == original and ex.path == "/v1/responses"
    assert (ex.upstream_status, ex.upstream_content_type, ex.upstream_body) == (200, "text/event-stream", upstream)
    assert ex.output() == [ANSWER] and ex.usage()["input_tokens"] == 3 and ex.replay == "#2 exact"
    assert ex.comment == "mimo-v2.5-pro completed" and not ex.upstream_broken and ex.status == "completed"
    assert "assistant> There are 30 files." in transcript.render([local_ex, ex])
