"""Contentviews (addon/views.py) through mitmproxy's own contentview machinery, on 11 and 12 alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitmproxy import contentviews, http
from mitmproxy.test import taddons, tflow, tutils

from addon import views
from mimo2codex.sessions import eventlist

SAMPLES = Path(__file__).resolve().parent / "fixtures" / "codex"  # in-repo copies of the contract's samples


def chunk(finish=None, usage=None, **delta) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "model": "mimo-v2.5-pro",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


CHAT_SSE = b"".join([
    chunk(role="assistant", content=""), chunk(reasoning_content="Let me "), chunk(reasoning_content="look."),
    chunk(tool_calls=[{"index": 0, "id": "call_1", "type": "function", "function": {"name": "exec_command", "arguments": ""}}]),
    chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"cmd":'}}]),
    chunk(tool_calls=[{"index": 0, "function": {"arguments": '"ls"}'}}]),
    chunk(finish="tool_calls", usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                                      "completion_tokens_details": {"reasoning_tokens": 3}}),
    b"data: [DONE]\n\n",
])


def responses_sse() -> bytes:
    path = SAMPLES / "sse_example_reasoning_text.txt"
    if path.exists():
        return path.read_bytes()
    ev = [{"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1", "model": "m", "status": "in_progress"}},
          {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": "Hel"},
          {"type": "response.output_text.delta", "sequence_number": 2, "item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": "lo!"},
          {"type": "response.completed", "sequence_number": 3, "response": {"id": "resp_1", "model": "m", "status": "completed"}}]
    return b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), json.dumps(e).encode()) for e in ev)


def render(message: http.Message, flow: http.HTTPFlow, name: str = "auto") -> tuple[str, str]:
    """(chosen view name, text) the way mitmweb/mitmproxy render a body, on either API."""
    if views.NEW_API:
        result = contentviews.prettify_message(message, flow, view_name=name)
        return result.view_name, result.text
    description, lines, error = contentviews.get_message_content_view(name, message, flow)
    assert error is None, error
    text = "\n".join("".join(t for _, t in line) for line in lines)
    return description, text


def translated_flow() -> http.HTTPFlow:
    original = {"model": "mimo-v2.5-pro", "stream": True, "prompt_cache_key": "abc",
                "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What files are here?"}]}],
                "tools": [{"type": "function", "name": "exec_command", "parameters": {}},
                          {"type": "custom", "name": "apply_patch"}]}
    chat = {"model": "mimo-v2.5-pro", "stream": True, "messages": [{"role": "user", "content": "What files are here?"}],
            "tools": [{"type": "function", "function": {"name": "exec_command", "parameters": {}}}]}
    f = tflow.tflow(req=tutils.treq(method=b"POST", path=b"/v1/chat/completions", content=json.dumps(chat).encode(),
                                    headers=http.Headers(content_type="application/json")),
                    resp=tutils.tresp(content=CHAT_SSE, headers=http.Headers(content_type="text/event-stream",
                                                                            transfer_encoding="chunked")))
    f.metadata.update({
        "m2c.responses_request": json.dumps(original), "m2c.chat_request": json.dumps(chat), "m2c.model": "mimo-v2.5-pro",
        "m2c.provider": "mimo", "m2c.stream": True, "m2c.upstream_status": 200,
        "m2c.upstream_body": CHAT_SSE.decode(), "m2c.client_body": responses_sse().decode(),
        "m2c.response": json.dumps({"id": "resp_1", "model": "mimo-v2.5-pro", "status": "completed",
                                    "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
                                    "output": [{"type": "function_call", "name": "exec_command", "call_id": "call_1",
                                                "arguments": '{"cmd":"ls"}'}]}),
    })
    f.comment = "mimo-v2.5-pro completed in=10 (cached 0) out=5 (reasoning 3) tools=exec_command 0.42s"
    return f


@pytest.fixture
def tctx():
    with taddons.context() as ctx:  # contentviews read options (protobuf definitions) from ctx
        yield ctx


def test_views_are_registered_under_url_safe_names():
    if views.NEW_API:
        names = set(contentviews.registry)
    else:
        names = {v.name.lower() for v in contentviews.views}
    assert {"mimo2codex", "responses-sse", "chat-sse"} <= names
    views.register()  # a script reload registers again: must neither raise (11) nor duplicate (12)
    if not views.NEW_API:
        assert [v.name for v in contentviews.views].count("mimo2codex") == 1


def test_chat_stream_folds_deltas_into_readable_lines():
    lines = eventlist.chat_lines(CHAT_SSE)
    assert lines[0].split() == ["0", "role", "assistant"]
    assert "reasoning_content ×2 Let me look." in lines[1]
    assert "tool_call [0] exec_command id=call_1" in lines[2]
    assert 'tool_call.arguments [0] ×2 {"cmd":"ls"}' in lines[3]
    assert "finish_reason tool_calls" in lines[4]
    assert "usage in=10 (cached 0) out=5 (reasoning 3) total=15" in lines[5]
    assert lines[-1].split() == ["7", "[DONE]"]


def test_responses_stream_lists_events_with_their_content():
    text = "\n".join(eventlist.responses_lines(responses_sse()))
    assert "response.created" in text and "response.completed" in text
    assert "response.output_text.delta [1].0 ×" in text  # a run of deltas is one line
    assert "Hello!" in text


def test_translated_flow_gets_the_mimo2codex_view_on_both_tabs(tctx):
    f = translated_flow()
    name, text = render(f.request, f)
    assert name.lower().startswith("mimo2codex")
    assert "Codex → proxy: Responses request" in text and "What files are here?" in text
    assert "apply_patch (custom)" in text  # the tool list as Codex offered it
    assert "proxy → mimo: Chat Completions request" in text and "messages (1):" in text
    assert f.comment in text
    name, text = render(f.response, f)
    assert name.lower().startswith("mimo2codex")
    assert "mimo → proxy: Chat stream, 8 events, HTTP 200" in text
    assert "tool_call.arguments [0] ×2" in text
    assert "proxy → Codex: Responses stream" in text and "response.completed" in text
    assert "final Response" in text and 'function_call exec_command (call_1) {"cmd":"ls"}' in text


def test_a_streamed_flow_shows_the_provider_side_from_its_content(tctx):
    f = translated_flow()
    del f.metadata["m2c.upstream_body"]  # what addon/mimo.py stores for a streamed answer: the content is the provider's
    _, text = render(f.response, f)
    assert "mimo → proxy: Chat stream, 8 events, HTTP 200" in text and "tool_call.arguments [0] ×2" in text
    assert "proxy → Codex: Responses stream" in text and "response.completed" in text


def test_failed_turn_is_marked_in_the_view(tctx):
    f = translated_flow()
    f.marked = ":x:"
    f.metadata["m2c.error"] = "server_error: upstream connection lost mid-stream"
    _, text = render(f.response, f)
    assert "FAILED TURN" in text and "upstream connection lost" in text


def test_plain_event_streams_pick_the_sse_views(tctx):
    chat = tflow.tflow(resp=tutils.tresp(content=CHAT_SSE, headers=http.Headers(content_type="text/event-stream")))
    name, text = render(chat.response, chat)
    assert name.lower().startswith("chat-sse") and "reasoning_content ×2" in text
    resp = tflow.tflow(resp=tutils.tresp(content=responses_sse(), headers=http.Headers(content_type="text/event-stream")))
    name, text = render(resp.response, resp)
    assert name.lower().startswith("responses-sse") and "response.completed" in text
    plain = tflow.tflow(resp=tutils.tresp(content=b'{"a": 1}', headers=http.Headers(content_type="application/json")))
    name, _ = render(plain.response, plain)
    assert "sse" not in name.lower() and "mimo2codex" not in name.lower()


def test_explicit_view_choice(tctx):
    f = translated_flow()
    name, text = render(f.response, f, "chat-sse")
    assert name.lower().startswith("chat-sse") and text.splitlines()[0].split() == ["0", "role", "assistant"]
