"""The Chat -> Responses stream state machine, fed realistic MiMo streams (mimo-chat.md §4).

Every emitted stream is checked by `check()`: SSE framing, each event against the openai SDK's
pydantic types, numbering, no interleaved items, and the final Response object; the SDK's own
stream accumulator is run over it as another client would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import random
import re
from pathlib import Path
from typing import Iterator

import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from mimo2codex.translate import envelope, rules, stream as stream_mod, stream_tools, turn as turn_mod
from mimo2codex.translate.hooks import REGISTRY
from mimo2codex.translate.jsonfix import complete_json, salvage_json
from mimo2codex.translate.stream import ResponsesStream, translate_body
from mimo2codex.translate.turn import Turn

RULES = rules.load()
EVENT = TypeAdapter(ResponseStreamEvent)
SAMPLES = Path(__file__).resolve().parent / "fixtures" / "codex"
# Codex acts on codes the SDK's ResponseError literal does not list (codex-responses.md §4).
CODEX_ONLY_CODES = {"context_length_exceeded", "insufficient_quota", "server_is_overloaded", "invalid_request_error", "slow_down"}
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def make_turn(**kw) -> Turn:
    return Turn(model="mimo-v2.5-pro", custom_tools=frozenset({"apply_patch"}),
                namespaces={"close_agent": ("multi_agent_v1", "close_agent")}, local_shell="shell", **kw)


# ----------------------------------------------------------------------------------------------
# MiMo stream builders (shape of mimo-chat.md §4: all four delta keys, explicit nulls)

CID = "0123456789abcdef0123456789abcdef"
_created = itertools.count(1776848906)


def chunk(delta: dict | None = None, finish: str | None = None, **extra) -> dict:
    d = {"content": None, "role": None, "tool_calls": None, "reasoning_content": None}
    d.update(delta or {})
    c = {"id": CID, "choices": [{"index": 0, "delta": d, "finish_reason": finish}], "created": next(_created),
         "model": "mimo-v2.5-pro", "object": "chat.completion.chunk"}
    c.update(extra)
    return c


def role() -> dict:
    return chunk({"content": "", "role": "assistant"})


def think(text: str) -> dict:
    return chunk({"reasoning_content": text})


def say(text: str) -> dict:
    return chunk({"content": text})


def call_start(index: int, call_id: str, name: str) -> dict:
    return chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]})


def call_args(index: int, piece: str) -> dict:
    return chunk({"tool_calls": [{"index": index, "id": None, "type": "function", "function": {"name": None, "arguments": piece}}]})


def finish(reason: str = "stop") -> dict:
    return chunk({"content": "" if reason == "stop" else None}, finish=reason, usage=None)


def usage(prompt=100, completion=20, cached: int | None = 10, reasoning: int | None = 5, details=True) -> dict:
    u = {"completion_tokens": completion, "prompt_tokens": prompt, "total_tokens": prompt + completion}
    if details:
        u["completion_tokens_details"] = {"reasoning_tokens": reasoning} if reasoning is not None else None
        u["prompt_tokens_details"] = {"cached_tokens": cached} if cached is not None else None
    return {"id": CID, "choices": [], "created": next(_created), "model": "mimo-v2.5-pro", "object": "chat.completion.chunk", "usage": u}


def sse(chunks: list, done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def pieces(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def tool_call(index: int, call_id: str, name: str, arguments: str, size: int = 5) -> list[dict]:
    return [call_start(index, call_id, name)] + [call_args(index, p) for p in pieces(arguments, size)]


# ----------------------------------------------------------------------------------------------
# Running and checking


def run(body: bytes, turn: Turn | None = None, rules_: rules.Rules = RULES, cuts: list[int] | None = None) -> tuple[bytes, ResponsesStream]:
    s = ResponsesStream(turn or make_turn(), rules_)
    out = b""
    last = 0
    for c in (cuts or []) + [len(body)]:
        part = s.feed(body[last:c])
        assert isinstance(part, bytes)
        out += part
        last = c
    return out + s.finish(), s


def frames(out: bytes) -> list[dict]:
    assert out.endswith(b"\n\n")
    events = []
    for frame in out[:-2].split(b"\n\n"):
        head, data = frame.split(b"\n")
        assert head.startswith(b"event: ") and data.startswith(b"data: "), frame[:80]
        ev = json.loads(data[6:])
        assert head[7:].decode() == ev["type"]
        events.append(ev)
    return events


def _sdk_ready(obj: dict) -> dict:
    """A copy the SDK's literal for error codes accepts (Codex needs codes the SDK lacks)."""
    obj = json.loads(json.dumps(obj))
    resp = obj.get("response", obj)
    if isinstance(resp, dict) and isinstance(resp.get("error"), dict) and resp["error"].get("code") in CODEX_ONLY_CODES:
        resp["error"]["code"] = "server_error"
    return obj


def check(out: bytes) -> tuple[list[dict], dict]:
    """Validate a whole Responses stream; returns (events, final response)."""
    events = frames(out)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    for e in events[:2]:
        assert e["response"]["status"] == "in_progress" and e["response"]["output"] == []
    terminals = [i for i, e in enumerate(events) if e["type"] in TERMINAL]
    assert terminals == [len(events) - 1], "exactly one terminal event, last"
    final = events[-1]["response"]
    assert final["status"] == events[-1]["type"].split(".")[1]
    for key in ("id", "object", "created_at", "status", "model", "output", "usage", "error", "incomplete_details"):
        assert key in final

    parsed = [EVENT.validate_python(_sdk_ready(e)) for e in events]
    Response.model_validate(_sdk_ready(final))

    # Items: opened in output order, never interleaved, deltas point at the open item.
    open_item = None
    added: list[dict] = []
    done: dict[int, dict] = {}
    for e in events[2:-1]:
        t = e["type"]
        if t == "response.output_item.added":
            assert open_item is None, f"item {e['item']['id']} opened while {open_item} is open"
            assert e["output_index"] == len(added)
            added.append(e["item"])
            open_item = (e["output_index"], e["item"]["id"])
            continue
        assert open_item is not None, f"{t} outside an item"
        assert e["output_index"] == open_item[0]
        if "item_id" in e:
            assert e["item_id"] == open_item[1]
        if t == "response.output_item.done":
            assert e["item"]["id"] == open_item[1] and e["item"]["type"] == added[e["output_index"]]["type"]
            done[e["output_index"]] = e["item"]
            open_item = None
    if final["status"] == "completed":
        assert open_item is None
        assert final["output"] == [done[i] for i in range(len(added))]
    else:
        for i, item in done.items():
            assert final["output"][i] == item
    for item in final["output"]:
        if item["type"] == "function_call":
            assert isinstance(item["call_id"], str) and item["call_id"] and isinstance(item["arguments"], str)
            if item["status"] == "completed":
                json.loads(item["arguments"])
        if item["type"] == "custom_tool_call":
            assert isinstance(item["call_id"], str) and isinstance(item["input"], str)
    if final.get("usage"):
        for key in ("input_tokens", "output_tokens", "total_tokens"):
            assert isinstance(final["usage"][key], int)

    # The SDK's accumulator, as an OpenAI client would run it.
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    for ev in parsed:
        state.handle_event(ev)
    if final["status"] == "completed":
        sdk = state._completed_response
        assert sdk is not None and sdk.id == final["id"]
        texts = [c["text"] for i in final["output"] if i["type"] == "message" for c in i["content"]]
        assert sdk.output_text == "".join(texts)
    return events, final


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def items_done(events: list[dict]) -> list[dict]:
    return [e["item"] for e in events if e["type"] == "response.output_item.done"]


@pytest.fixture
def counter_ids(monkeypatch):
    """Deterministic item ids, so outputs of differently split runs compare byte for byte."""
    counters: dict[str, itertools.count] = {}

    def new_id(prefix: str) -> str:
        return f"{prefix}_{next(counters.setdefault(prefix, itertools.count())):024x}"

    monkeypatch.setattr(turn_mod, "new_id", new_id)
    return counters


# ----------------------------------------------------------------------------------------------
# Text and reasoning


def test_reasoning_then_text_matches_the_sample_codex_accepted():
    body = sse([role(), think("Thinking about it"), say("Hel"), say("lo!"), finish(), usage()])
    out, s = run(body)
    events, final = check(out)
    sample = [json.loads(line[6:]) for line in (SAMPLES / "sse_example_reasoning_text.txt").read_text().splitlines() if line.startswith("data: ")]
    assert types(events) == types(sample)
    for ours, theirs in zip(events, sample):
        assert set(ours) == set(theirs), ours["type"]
    rs, msg = final["output"]
    assert rs["summary"] == [{"type": "summary_text", "text": "Thinking about it"}]
    assert envelope.unseal(rs["encrypted_content"]) == "Thinking about it"
    assert rs["id"].startswith("rs_") and msg["id"].startswith("msg_")
    assert msg["content"] == [{"type": "output_text", "text": "Hello!", "annotations": []}] and msg["status"] == "completed"
    assert final["usage"] == sample[-1]["response"]["usage"] | {"input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 0}}
    assert final["id"] == s.turn.response_id and final["model"] == "mimo-v2.5-pro"
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas == ["Hel", "lo!"]


def test_hidden_reasoning_is_still_sealed():
    body = sse([role(), think("secret "), think("plan"), say("ok"), finish(), usage()])
    out, _ = run(body, make_turn(show_reasoning=False))
    events, final = check(out)
    assert not [t for t in types(events) if "reasoning_summary" in t]
    rs = final["output"][0]
    assert rs["summary"] == [] and envelope.unseal(rs["encrypted_content"]) == "secret plan"
    assert b"secret" not in out.replace(rs["encrypted_content"].encode(), b"")


def test_reasoning_after_text_opens_a_new_item():
    body = sse([role(), think("a"), say("b"), think("c"), say("d"), finish(), usage()])
    _, final = check(run(body)[0])
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "reasoning", "message"]
    assert envelope.unseal(final["output"][2]["encrypted_content"]) == "c"


def test_every_split_point_gives_identical_output(counter_ids):
    turn = make_turn()
    body = sse([role(), think("想一想 🌍"), say("Héllo, 世界!"),
                *tool_call(0, "call_a", "exec_command", '{"cmd":"echo 中"}', 4), finish("tool_calls"), usage()])
    want, _ = run(body, turn)
    check(want)
    for i in range(len(body) + 1):
        counter_ids.clear()
        got, _ = run(body, turn, cuts=[i])
        assert got == want, f"split at {i}"
    counter_ids.clear()
    assert run(body, turn, cuts=list(range(1, len(body))))[0] == want  # one byte per feed
    rnd = random.Random(3)
    for _ in range(50):
        counter_ids.clear()
        cuts = sorted(rnd.sample(range(1, len(body)), rnd.randint(2, 12)))
        assert run(body, turn, cuts=cuts)[0] == want


def test_crlf_framing_and_data_without_space(counter_ids):
    turn = make_turn()
    chunks = [role(), think("x"), say("y"), finish(), usage()]
    want, _ = run(sse(chunks), turn)
    counter_ids.clear()
    body = sse(chunks).replace(b"data: ", b"data:").replace(b"\n", b"\r\n")
    assert run(body, turn)[0] == want


def test_feed_returns_one_joined_bytes_object_and_empty_bytes_when_nothing_is_complete():
    s = ResponsesStream(make_turn(), RULES)
    first = s.feed(b'data: {"id":"x","choi')
    assert first.count(b"event: ") == 2  # created + in_progress only
    assert s.feed(b'ces":[]}') == b""
    assert s.feed(b"\n\n") == b""


# ----------------------------------------------------------------------------------------------
# Tool calls


def test_function_and_custom_calls_match_the_sample_codex_accepted():
    patch = "*** Begin Patch\n*** Add File: a.txt\n+a\n*** End Patch\n"
    body = sse([role(), *tool_call(0, "call_a", "exec_command", '{"cmd":"echo hi"}'),
                *tool_call(1, "call_b", "apply_patch", json.dumps({"input": patch})), finish("tool_calls"), usage()])
    out, s = run(body)
    events, final = check(out)
    sample = [json.loads(line[6:]) for line in (SAMPLES / "sse_example_function_and_custom_calls.txt").read_text().splitlines() if line.startswith("data: ")]
    ours = [t for t in types(events) if t != "response.function_call_arguments.delta"]
    theirs = [t for t in types(sample) if t != "response.function_call_arguments.delta"]
    assert ours == theirs
    fc, ctc = final["output"]
    assert fc | {"id": "x"} == {"id": "x", "type": "function_call", "status": "completed", "call_id": "call_a",
                                 "name": "exec_command", "arguments": '{"cmd":"echo hi"}'}
    assert ctc | {"id": "x"} == {"id": "x", "type": "custom_tool_call", "status": "completed", "call_id": "call_b",
                                  "name": "apply_patch", "input": patch}
    assert fc["id"].startswith("fc_") and ctc["id"].startswith("ctc_")
    delta = next(e for e in events if e["type"] == "response.custom_tool_call_input.delta")
    assert delta["delta"] == patch and delta["item_id"] == ctc["id"]
    assert s.summary["tool_calls"] == ["exec_command", "apply_patch"]


def test_function_call_arguments_stream_live():
    body = sse([role(), *tool_call(0, "call_a", "exec_command", '{"cmd":"ls -la /tmp"}', 3), finish("tool_calls"), usage()])
    events, final = check(run(body)[0])
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert len(deltas) > 3 and "".join(deltas) == '{"cmd":"ls -la /tmp"}'
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["name"] == "exec_command" and done["arguments"] == '{"cmd":"ls -la /tmp"}'


def test_sequential_parallel_calls_close_each_call_as_the_next_starts():
    first = tool_call(0, "call_a", "exec_command", '{"cmd":"ls"}')
    second = tool_call(1, "call_b", "exec_command", '{"cmd":"pwd"}')
    s = ResponsesStream(make_turn(), RULES)
    out = s.feed(sse([role(), *first], done=False))
    assert b"response.output_item.done" not in out  # call 0 could still grow
    out += s.feed(sse(second[:1], done=False))
    assert b"response.output_item.done" in out  # call 1 started and call 0 is whole JSON: Codex may run it now
    out += s.feed(sse([*second[1:], finish("tool_calls"), usage()]))
    events, final = check(out + s.finish())
    assert [(i["call_id"], i["arguments"]) for i in final["output"]] == [("call_a", '{"cmd":"ls"}'), ("call_b", '{"cmd":"pwd"}')]


def test_interleaved_parallel_calls_do_not_interleave_items():
    a = tool_call(0, "call_a", "exec_command", '{"cmd":"echo one two three"}', 4)
    b = tool_call(1, "call_b", "close_agent", '{"id":"agent-7"}', 3)
    c = tool_call(2, "call_c", "exec_command", '{"cmd":"date"}', 2)
    mixed = [x for trio in itertools.zip_longest(a, b, c) for x in trio if x is not None]
    out, s = run(sse([role(), think("plan"), *mixed, finish("tool_calls"), usage()]))
    events, final = check(out)
    calls = final["output"][1:]
    assert [i["call_id"] for i in calls] == ["call_a", "call_b", "call_c"]
    assert calls[0]["arguments"] == '{"cmd":"echo one two three"}'
    assert calls[1]["name"] == "close_agent" and calls[1]["namespace"] == "multi_agent_v1" and calls[1]["arguments"] == '{"id":"agent-7"}'
    assert calls[2]["arguments"] == '{"cmd":"date"}'
    # Buffered calls arrive whole: one delta each.
    for item in calls[1:]:
        deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta" and e["item_id"] == item["id"]]
        assert len(deltas) == 1
    assert s.summary["tool_calls"] == ["exec_command", "multi_agent_v1.close_agent", "exec_command"]


def test_namespace_call_keeps_inner_name_and_namespace():
    out, _ = run(sse([role(), *tool_call(0, "call_n", "close_agent", '{"id":"a1"}'), finish("tool_calls"), usage()]))
    events, final = check(out)
    (item,) = final["output"]
    assert item["type"] == "function_call" and item["name"] == "close_agent" and item["namespace"] == "multi_agent_v1"
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["namespace"] == "multi_agent_v1"


def test_custom_tool_variants():
    patch = "*** Begin Patch\n*** Update File: x.py\n@@\n-a\n+b \"q\" \\ 中\n*** End Patch"
    # The string under another single key is accepted too; raw (non-JSON) text is taken as the input.
    for args in (json.dumps({"input": patch}), json.dumps({"patch": patch}), patch):
        _, final = check(run(sse([role(), *tool_call(0, "call_p", "apply_patch", args, 7), finish("tool_calls"), usage()]))[0])
        assert final["output"][0]["input"] == patch and final["output"][0]["type"] == "custom_tool_call"


def test_custom_tool_without_its_string_fails_instead_of_guessing():
    body = sse([role(), *tool_call(0, "call_p", "apply_patch", '{"a":1,"b":2}'), finish("tool_calls"), usage()])
    events, final = check(run(body)[0])
    assert final["status"] == "failed" and final["error"]["code"] == "server_error" and "apply_patch" in final["error"]["message"]
    assert not items_done(events)


def test_local_shell_call():
    args = json.dumps({"command": ["ls", "-la"], "workdir": "/tmp", "timeout_ms": 1000, "env": {"A": 1}})
    events, final = check(run(sse([role(), *tool_call(0, "call_s", "shell", args), finish("tool_calls"), usage()]))[0])
    (item,) = final["output"]
    assert item["type"] == "local_shell_call" and item["call_id"] == "call_s" and item["status"] == "completed"
    assert item["action"] == {"type": "exec", "command": ["ls", "-la"], "env": {"A": "1"}, "working_directory": "/tmp", "timeout_ms": 1000}
    assert types(events)[2:4] == ["response.output_item.added", "response.output_item.done"]
    _, final = check(run(sse([role(), *tool_call(0, "c", "shell", '{"command":"echo hi | wc"}'), finish("tool_calls"), usage()]))[0])
    assert final["output"][0]["action"]["command"] == ["bash", "-lc", "echo hi | wc"]


def test_empty_arguments_become_an_empty_object():
    events, final = check(run(sse([role(), call_start(0, "call_e", "get_goal"), finish("tool_calls"), usage()]))[0])
    assert final["output"][0]["arguments"] == "{}"


def test_truncated_arguments_at_a_normal_finish_are_repaired():
    body = sse([role(), *tool_call(0, "call_a", "exec_command", '{"cmd":"ls", "workdir":"/tmp"'), finish("tool_calls"), usage()])
    out, s = run(body)
    _, final = check(out)
    assert final["status"] == "completed" and json.loads(final["output"][0]["arguments"]) == {"cmd": "ls", "workdir": "/tmp"}
    assert any("repaired" in w for w in s.summary["warnings"])


def test_garbage_arguments_fail_the_response_and_no_call_is_handed_out():
    body = sse([role(), *tool_call(0, "call_a", "exec_command", '{"cmd":"ls"}'),
                *tool_call(1, "call_b", "write_stdin", '{"x": 1 2 3}'), finish("tool_calls"), usage()])
    events, final = check(run(body)[0])
    assert final["status"] == "failed" and final["error"]["code"] == "server_error"
    assert "write_stdin" in final["error"]["message"] and "JSON" in final["error"]["message"]
    # call_a was already whole when call_b started, so it went out; call_b never does.
    assert [i["call_id"] for i in items_done(events)] == ["call_a"]


def test_garbage_in_interleaved_calls_holds_every_call_back():
    a = tool_call(0, "call_a", "exec_command", '{"cmd":"ls"}', 3)
    b = tool_call(1, "call_b", "exec_command", '{"cmd": nope}', 3)
    mixed = [x for pair in itertools.zip_longest(a, b) for x in pair if x is not None]
    events, final = check(run(sse([role(), *mixed, finish("tool_calls"), usage()]))[0])
    assert final["status"] == "failed" and not items_done(events)


def test_length_mid_tool_call_is_incomplete_and_the_cut_call_is_never_handed_out():
    body = sse([role(), think("plan"), *tool_call(0, "call_a", "exec_command", '{"cmd":"ls"}'),
                *tool_call(1, "call_b", "exec_command", '{"cmd":"rm -rf /tmp/build/ca'), finish("length"), usage()])
    out, s = run(body)
    events, final = check(out)
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [i["type"] for i in items_done(events)] == ["reasoning", "function_call"]
    assert items_done(events)[1]["call_id"] == "call_a"
    cut = final["output"][2]
    assert cut["call_id"] == "call_b" and cut["status"] == "incomplete"
    assert json.loads(cut["arguments"]) == {"cmd": "rm -rf /tmp/build/ca"}  # salvaged, for the record
    assert s.summary["status"] == "incomplete" and s.summary["tool_calls"] == ["exec_command"]


def test_length_mid_custom_call():
    body = sse([role(), *tool_call(0, "call_p", "apply_patch", '{"input":"*** Begin Patch\\n*** Add File: a\\n+hel'), finish("length"), usage()])
    events, final = check(run(body)[0])
    assert final["status"] == "incomplete" and not items_done(events)
    assert final["output"][0]["type"] == "custom_tool_call" and final["output"][0]["input"].endswith("+hel")


def test_length_mid_text_and_repetition_truncation():
    for reason in ("length", "repetition_truncation"):
        events, final = check(run(sse([role(), say("a long ans"), finish(reason), usage()]))[0])
        assert final["status"] == "incomplete" and final["incomplete_details"]["reason"] == "max_output_tokens"
        assert final["output"][0]["status"] == "incomplete" and final["output"][0]["content"][0]["text"] == "a long ans"


def test_text_after_tool_calls_is_emitted_after_them():
    body = sse([role(), *tool_call(0, "call_a", "exec_command", '{"cmd":"ls"}'), say("Running ls."), finish("tool_calls"), usage()])
    _, final = check(run(body)[0])
    assert [i["type"] for i in final["output"]] == ["function_call", "message"]
    assert final["output"][1]["content"][0]["text"] == "Running ls."


def test_text_after_a_cut_call_is_recorded_without_reopening_items():
    body = sse([role(), *tool_call(0, "call_a", "exec_command", '{"cmd":"l'), say("late"), finish("length"), usage()])
    events, final = check(run(body)[0])
    assert final["status"] == "incomplete"
    assert [i["type"] for i in final["output"]] == ["function_call", "message"]
    assert not items_done(events)


# ----------------------------------------------------------------------------------------------
# Endings


@pytest.mark.parametrize("reason,status,detail", [
    ("stop", "completed", None),
    ("tool_calls", "completed", None),
    ("content_filter", "incomplete", "content_filter"),
    ("sensitive", "incomplete", "content_filter"),
    ("model_context_window_exceeded", "failed", "context_length_exceeded"),
    ("network_error", "failed", "server_error"),
    ("something_new", "completed", None),
])
def test_finish_reasons(reason, status, detail):
    events, final = check(run(sse([role(), say("partial"), finish(reason), usage()]))[0])
    assert final["status"] == status
    if status == "incomplete":
        assert final["incomplete_details"]["reason"] == detail
    if status == "failed":
        assert final["error"]["code"] == detail
    assert items_done(events)[0]["content"][0]["text"] == "partial"  # what was shown is kept


def test_completed_is_sent_on_the_usage_chunk_without_waiting_for_done():
    s = ResponsesStream(make_turn(), RULES)
    out = s.feed(sse([role(), say("hi"), finish()], done=False))
    assert b"response.completed" not in out
    out += s.feed(sse([usage()], done=False))
    assert s.done and b"response.completed" in out
    assert s.feed(b"data: [DONE]\n\n") == b"" and s.finish() == b"" and s.fail("server_error", "x") == b""
    check(out)


def test_finish_reason_without_done_or_usage_completes_at_eof():
    events, final = check(run(sse([role(), say("hi"), finish()], done=False))[0])
    assert final["status"] == "completed" and final["usage"] is None


def test_done_without_finish_reason_completes():
    _, final = check(run(sse([role(), say("hi")]))[0])
    assert final["status"] == "completed"


def test_eof_without_finish_or_done_fails_and_keeps_what_was_shown():
    out, s = run(sse([role(), think("hmm"), say("Half an ans")], done=False))
    events, final = check(out)
    assert final["status"] == "failed" and final["error"]["code"] == "server_error"
    assert "ended early" in final["error"]["message"]
    assert [i["type"] for i in items_done(events)] == ["reasoning", "message"]
    assert items_done(events)[1]["status"] == "incomplete"
    assert s.summary["status"] == "failed" and "ended early" in s.summary["error"]


def test_eof_inside_a_tool_call_never_hands_the_call_out():
    events, final = check(run(sse([role(), *tool_call(0, "call_a", "exec_command", '{"cmd":"rm -rf /tmp/x')], done=False))[0])
    assert final["status"] == "failed" and not items_done(events)


def test_mid_stream_error_chunk():
    err = {"error": {"code": "429", "message": "Too many requests", "type": "limitation"}}
    events, final = check(run(sse([role(), say("Hi"), err], done=False))[0])
    assert final["status"] == "failed" and final["error"]["code"] == "rate_limit_exceeded"
    assert re.search(r"try again in \d+(\.\d+)?s", final["error"]["message"])
    assert items_done(events)[0]["content"][0]["text"] == "Hi"

    err = {"error": {"code": "500", "message": "internal", "param": "", "type": ""}}
    _, final = check(run(sse([role(), err], done=False))[0])
    assert final["error"]["code"] == "server_error"

    err = {"error": {"code": "context_length_exceeded", "message": "maximum context length is 1048576 tokens"}}
    _, final = check(run(sse([role(), err], done=False))[0])
    assert final["error"]["code"] == "server_error"  # non-numeric code: treated as a 500

    err400 = {"error": {"code": "400", "message": "Param Incorrect", "param": "prompt is too long: context length exceeded"}}
    _, final = check(run(sse([role(), err400]))[0])
    assert final["error"]["code"] == "context_length_exceeded"


def test_sse_error_event_name():
    body = b'event: error\ndata: {"message":"overloaded","code":"503"}\n\n'
    _, final = check(run(sse([role()], done=False) + body)[0])
    assert final["status"] == "failed" and final["error"]["code"] == "server_is_overloaded"


def test_fail_after_partial_output_is_idempotent():
    s = ResponsesStream(make_turn(), RULES)
    out = s.feed(sse([role(), think("x"), say("partial ")], done=False))
    tail = s.fail("server_error", "upstream connection lost mid-stream: reset")
    assert tail and s.done
    assert s.fail("server_error", "again") == b"" and s.feed(sse([say("more")])) == b"" and s.finish() == b""
    events, final = check(out + tail)
    assert final["error"] == {"code": "server_error", "message": "upstream connection lost mid-stream: reset"}
    assert items_done(events)[-1]["content"][0]["text"] == "partial "
    assert s.response is final or s.response == final


def test_fail_before_any_byte():
    s = ResponsesStream(make_turn(), RULES)
    events, final = check(s.fail("server_error", "timeout"))
    assert types(events) == ["response.created", "response.in_progress", "response.failed"]


def test_finish_before_any_byte_fails():
    s = ResponsesStream(make_turn(), RULES)
    _, final = check(s.finish())
    assert final["status"] == "failed"


# ----------------------------------------------------------------------------------------------
# Usage, annotations, hooks, robustness


@pytest.mark.parametrize("kw,cached,reasoning", [
    ({}, 10, 5),
    ({"cached": None}, 0, 5),
    ({"reasoning": None, "cached": None}, 0, 0),
    ({"details": False}, 0, 0),
])
def test_usage_variants(kw, cached, reasoning):
    out, s = run(sse([role(), say("x"), finish(), usage(**kw)]))
    _, final = check(out)
    u = final["usage"]
    assert u["input_tokens"] == 100 and u["output_tokens"] == 20 and u["total_tokens"] == 120
    assert u["input_tokens_details"]["cached_tokens"] == cached and u["output_tokens_details"]["reasoning_tokens"] == reasoning
    assert s.summary | {"warnings": []} == {
        "model": "mimo-v2.5-pro", "upstream_model": "mimo-v2.5-pro", "status": "completed", "finish_reason": "stop",
        "input_tokens": 100, "cached_tokens": cached, "output_tokens": 20, "reasoning_tokens": reasoning,
        "tool_calls": [], "error": None, "incomplete_reason": None, "warnings": []}


def test_web_search_annotations():
    sources = [{"type": "url_citation", "url": "https://a.example/x", "title": "A", "summary": "s", "site_name": "a",
                "publish_time": "2026-01-01", "logo_url": None},
               {"type": "url_citation", "url": "https://b.example/", "title": None, "site_name": "B"},
               {"type": "url_citation", "title": "no url"}]
    first = chunk({"content": "", "role": "assistant", "annotations": sources})
    events, final = check(run(sse([first, say("Answer "), say("text."), finish(), usage()]))[0])
    text = "Answer text."
    anns = final["output"][0]["content"][0]["annotations"]
    assert anns == [
        {"type": "url_citation", "url": "https://a.example/x", "title": "A", "start_index": len(text), "end_index": len(text)},
        {"type": "url_citation", "url": "https://b.example/", "title": "B", "start_index": len(text), "end_index": len(text)},
    ]
    added = [e for e in events if e["type"] == "response.output_text.annotation.added"]
    assert [e["annotation_index"] for e in added] == [0, 1] and added[0]["annotation"] == anns[0]


@contextlib.contextmanager
def chunk_hook(name: str, fn) -> Iterator[rules.Rules]:
    """RULES with `fn` as its only chunk hook, registered under `name` for the block's duration."""
    REGISTRY["chunk"][name] = fn
    try:
        yield dataclasses.replace(RULES, hooks={"request": (), "chunk": (name,)})
    finally:
        del REGISTRY["chunk"][name]


def test_chunk_hooks_run_first_and_can_drop_chunks():
    def shout(chunk, state):
        state["n"] = state.get("n", 0) + 1
        for c in chunk.get("choices") or ():
            if (c.get("delta") or {}).get("content") == "drop me":
                return None
            if (c.get("delta") or {}).get("content"):
                c["delta"]["content"] = c["delta"]["content"].upper()
        return chunk

    with chunk_hook("_test_shout", shout) as r:
        out, s = run(sse([role(), say("hi "), say("drop me"), say("there"), finish(), usage()]), rules_=r)
    _, final = check(out)
    assert final["output"][0]["content"][0]["text"] == "HI THERE"
    assert s._hook_state["n"] == 6


def test_internal_errors_become_response_failed():
    def boom(chunk, state):
        if (chunk.get("choices") or [{}])[0].get("delta", {}).get("content") == "boom":
            raise RuntimeError("kaput")
        return chunk

    with chunk_hook("_test_boom", boom) as r:
        out, s = run(sse([role(), say("fine "), say("boom"), say("never"), finish(), usage()]), rules_=r)
    events, final = check(out)
    assert final["status"] == "failed" and final["error"]["code"] == "server_error"
    assert "RuntimeError: kaput" in final["error"]["message"]
    assert items_done(events)[0]["content"][0]["text"] == "fine "


def test_broken_state_still_ends_with_a_terminal_event(monkeypatch):
    s = ResponsesStream(make_turn(), RULES)
    out = s.feed(sse([role(), say("x")], done=False))
    monkeypatch.setattr(s, "_close_display", lambda status: 1 / 0)
    out += s.finish()
    events, final = check(out)
    assert final["status"] == "failed" and "ZeroDivisionError" in final["error"]["message"]


def test_junk_events_are_skipped_with_a_warning():
    body = sse([role()], done=False) + b"data: not json\n\ndata: [1,2]\n\n" + sse([say("ok"), finish(), usage()])
    out, s = run(body)
    _, final = check(out)
    assert final["status"] == "completed" and len(s.summary["warnings"]) == 2


def test_chunks_without_blank_lines_between_them_are_still_read():
    body = sse([role(), say("a"), say("b"), finish(), usage()]).replace(b"\n\n", b"\n")
    _, final = check(run(body)[0])
    assert final["output"][0]["content"][0]["text"] == "ab"


def test_null_and_odd_fields_are_tolerated():
    odd = [{"id": CID, "choices": [{"index": 0, "delta": None, "finish_reason": None}]},
           {"id": CID, "choices": None},
           {"id": CID, "choices": [{"index": 0, "delta": {"content": [{"type": "text", "text": "parts"}]}}]},
           {"id": CID, "choices": [{"index": 0, "delta": {"tool_calls": [None, {"function": None}]}}]}]
    out, s = run(sse([role(), *odd, finish(), usage()]))
    _, final = check(out)
    assert final["output"][0]["content"][0]["text"] == "parts"
    assert any("without a name" in w for w in s.summary["warnings"])


def test_tool_fragments_without_index():
    frags = [chunk({"tool_calls": [{"id": "call_x", "type": "function", "function": {"name": "exec_command", "arguments": '{"cmd":'}}]}),
             chunk({"tool_calls": [{"function": {"arguments": '"ls"}'}}]}),
             chunk({"tool_calls": [{"id": "call_y", "type": "function", "function": {"name": "exec_command", "arguments": '{"cmd":"pwd"}'}}]})]
    _, final = check(run(sse([role(), *frags, finish("tool_calls"), usage()]))[0])
    assert [(i["call_id"], i["arguments"]) for i in final["output"]] == [("call_x", '{"cmd":"ls"}'), ("call_y", '{"cmd":"pwd"}')]


def test_missing_call_id_is_generated():
    frag = chunk({"tool_calls": [{"index": 0, "type": "function", "function": {"name": "exec_command", "arguments": "{}"}}]})
    _, final = check(run(sse([role(), frag, finish("tool_calls"), usage()]))[0])
    assert final["output"][0]["call_id"].startswith("call_")


def test_response_property_while_streaming():
    s = ResponsesStream(make_turn(echo={"prompt_cache_key": "k"}), RULES)
    s.feed(sse([role(), think("a"), say("b")], done=False))
    r = s.response
    assert r["status"] == "in_progress" and [i["type"] for i in r["output"]] == ["reasoning"] and r["prompt_cache_key"] == "k"


# ----------------------------------------------------------------------------------------------
# Whole bodies


def test_translate_body_sse(counter_ids):
    turn = make_turn()
    body = sse([role(), think("t"), say("Hello"), finish(), usage()])
    out, sm = translate_body(turn, RULES, body, "text/event-stream; charset=utf-8")
    _, final = check(out)
    assert sm.response == final and sm.done
    counter_ids.clear()
    assert translate_body(turn, RULES, body, "")[0] == out  # sniffed


def test_translate_body_non_stream_completion():
    completion = {
        "id": CID, "object": "chat.completion", "created": 1776848906, "model": "mimo-v2.5-pro",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "", "reasoning_content": "weather needs a tool",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"SF\"}"}},
                           {"id": "call_2", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\": \"*** Begin Patch\"}"}}]}}],
        "usage": {"completion_tokens": 47, "prompt_tokens": 504, "total_tokens": 551,
                  "completion_tokens_details": {"reasoning_tokens": 23}, "prompt_tokens_details": None}}
    out, sm = translate_body(make_turn(), RULES, json.dumps(completion).encode(), "application/json")
    events, final = check(out)
    assert [i["type"] for i in final["output"]] == ["reasoning", "function_call", "custom_tool_call"]
    assert final["output"][1]["arguments"] == '{"location": "SF"}' and final["output"][2]["input"] == "*** Begin Patch"
    assert final["usage"]["input_tokens"] == 504 and final["usage"]["input_tokens_details"]["cached_tokens"] == 0

    plain = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi", "annotations": [{"url": "https://x.example"}]},
                          "finish_reason": "length"}]}
    _, final = check(translate_body(make_turn(), RULES, json.dumps(plain).encode(), "application/json")[0])
    assert final["status"] == "incomplete" and final["output"][0]["content"][0]["annotations"][0]["url"] == "https://x.example"


def test_translate_body_errors():
    err = b'{"error":{"code":"401","message":"Invalid API Key","param":"Please provide valid API Key","type":"invalid_key"}}'
    _, final = check(translate_body(make_turn(), RULES, err, "application/json")[0])
    assert final["status"] == "failed" and "MIMO_API_KEY" in final["error"]["message"]
    _, final = check(translate_body(make_turn(), RULES, b"<html>oops</html>", "text/html")[0])
    assert final["status"] == "failed"
    _, final = check(translate_body(make_turn(), RULES, b"", "")[0])
    assert final["status"] == "failed"
    for other in (b'{"unexpected": true}', b'{"choices": "x"}', b"[]"):  # JSON, but no chat completion
        _, final = check(translate_body(make_turn(), RULES, other, "application/json")[0])
        assert final["status"] == "failed" and final["error"]["code"] == "server_error", other


def test_done_after_nothing_usable_fails():
    for chunks in ([], [{"unexpected": True}], [{"choices": []}], [usage()]):
        _, final = check(run(sse(chunks))[0])
        assert final["status"] == "failed" and "without any chat completion content" in final["error"]["message"], chunks
    _, final = check(run(sse([role(), finish()]))[0])  # an empty answer the provider meant: still completed
    assert final["status"] == "completed"


# ----------------------------------------------------------------------------------------------
# Argument repair


@pytest.mark.parametrize("raw,want", [
    ('{"cmd":"ls', {"cmd": "ls"}),
    ('{"cmd":"ls"', {"cmd": "ls"}),
    ('{"cmd":"ls",', {"cmd": "ls"}),
    ('{"a":[1,2', {"a": [1, 2]}),
    ('{"a":"x\\', {"a": "x"}),
    ('{"a":"x\\u00', {"a": "x"}),
    ('{"a":1,"b":tru', {"a": 1}),
    ('{"a":{"b":"c, d"},"e":[{"f":1},{"g":"h, i"}],"j":[tr', {"a": {"b": "c, d"}, "e": [{"f": 1}, {"g": "h, i"}], "j": []}),
    ('{"input":"*** Begin Patch\\n+中', {"input": "*** Begin Patch\n+中"}),
])
def test_salvage(raw, want):
    assert json.loads(salvage_json(raw)) == want
    assert json.loads(stream_tools._fix_args(raw)[0]) == want


def test_salvage_gives_up_on_nonsense():
    assert salvage_json("not json") is None
    assert salvage_json('{"a": 1 2}') is None
    assert salvage_json('{"a"]') is None


def test_complete_json():
    assert complete_json('{"a": 1}  ') and complete_json("[1]")
    assert not complete_json('{"a": 1') and not complete_json("12") and not complete_json('"x"') and not complete_json("")


# ----------------------------------------------------------------------------------------------
# Against the strict fake MiMo (mimo2codex/fakes): real HTTP, real chunking, the fake's own idea
# of MiMo's stream shape.

def _fake_stream(fake, spec: dict, tools: list[str] = (), web_search: bool = False) -> tuple[int, bytes, list[bytes]]:
    """One streamed chat request to the fake; returns (status, whole body, the body as read)."""
    import http.client

    fake.queue(spec)
    body = {"model": "mimo-v2.5-pro", "stream": True, "stream_options": {"include_usage": True},
            "max_completion_tokens": 1024, "messages": [{"role": "user", "content": "hi"}]}
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in tools]
    if web_search:
        body["tools"] = body.get("tools", []) + [{"type": "web_search"}]
    host, port = fake.base_url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"content-type": "application/json", "authorization": "Bearer sk-test"})
    resp = conn.getresponse()
    reads = []
    try:
        while True:
            piece = resp.read1(37)  # small, uneven reads: frames and characters split anywhere
            if not piece:
                break
            reads.append(piece)
    except (http.client.IncompleteRead, ConnectionError):
        pass
    conn.close()
    return resp.status, b"".join(reads), reads


@pytest.fixture(scope="module")
def fake():
    from mimo2codex.fakes.mimo import FakeMimo

    with FakeMimo().start() as server:
        yield server


def _through(reads: list[bytes], turn: Turn | None = None) -> tuple[list[dict], dict]:
    s = ResponsesStream(turn or make_turn(), RULES)
    out = b"".join(s.feed(r) for r in reads) + s.finish()
    return check(out)


def test_fake_reasoning_and_text(fake):
    status, _, reads = _fake_stream(fake, {"reasoning": "让我想想 🤔 step by step", "text": "Bonjour, 世界 🌍! " * 5, "split_utf8": True})
    assert status == 200
    events, final = _through(reads)
    assert final["status"] == "completed"
    assert envelope.unseal(final["output"][0]["encrypted_content"]) == "让我想想 🤔 step by step"
    assert final["output"][1]["content"][0]["text"] == "Bonjour, 世界 🌍! " * 5
    assert final["usage"]["total_tokens"] > 0


def test_fake_interleaved_parallel_calls(fake):
    calls = [{"name": "exec_command", "arguments": {"cmd": "ls -la \"/tmp/a b\""}},
             {"name": "apply_patch", "arguments": {"input": "*** Begin Patch\n*** Add File: x\n+é\n*** End Patch\n"}},
             {"name": "close_agent", "arguments": {"id": "a1"}}]
    status, _, reads = _fake_stream(fake, {"reasoning": "three tools", "tool_calls": calls, "interleaved": True},
                                    tools=["exec_command", "apply_patch", "close_agent"])
    assert status == 200
    events, final = _through(reads)
    kinds = [(i["type"], i.get("name")) for i in final["output"]]
    assert kinds == [("reasoning", None), ("function_call", "exec_command"), ("custom_tool_call", "apply_patch"), ("function_call", "close_agent")]
    assert json.loads(final["output"][1]["arguments"]) == calls[0]["arguments"]
    assert final["output"][2]["input"] == calls[1]["arguments"]["input"]
    assert final["output"][3]["namespace"] == "multi_agent_v1"


def test_fake_length_mid_tool_call(fake):
    spec = {"tool_calls": [{"name": "exec_command", "arguments": '{"cmd": "echo trunc'}], "finish": "length"}
    status, _, reads = _fake_stream(fake, spec, tools=["exec_command"])
    events, final = _through(reads)
    assert final["status"] == "incomplete" and final["incomplete_details"]["reason"] == "max_output_tokens"
    assert not items_done(events)
    cut = json.loads(final["output"][0]["arguments"])  # salvaged from wherever the fake cut it
    assert list(cut) == ["cmd"] and "echo trunc".startswith(cut["cmd"])


@pytest.mark.parametrize("finish_reason,status", [("content_filter", "incomplete"), ("repetition_truncation", "incomplete")])
def test_fake_other_finish_reasons(fake, finish_reason, status):
    _, _, reads = _fake_stream(fake, {"text": "some text", "finish": finish_reason})
    _, final = _through(reads)
    assert final["status"] == status


def test_fake_mid_stream_error_and_cut(fake):
    _, _, reads = _fake_stream(fake, {"text": "a longer answer that errors", "mid_error": {"after": 3, "status": 500}})
    _, final = _through(reads)
    assert final["status"] == "failed" and final["error"]["code"] == "server_error"
    _, _, reads = _fake_stream(fake, {"reasoning": "r", "text": "this will be cut off", "cut_after": 4})
    _, final = _through(reads)
    assert final["status"] == "failed" and "ended early" in final["error"]["message"]


def test_fake_web_search_annotations():
    from mimo2codex.fakes.mimo import FakeMimo

    anns = [{"type": "url_citation", "url": "https://example.com/a", "title": "A", "summary": "s", "site_name": "ex",
             "publish_time": "2026-01-01", "logo_url": ""}]
    with FakeMimo(web_search_enabled=True).start() as fake:
        status, _, reads = _fake_stream(fake, {"text": "cited answer", "annotations": anns}, web_search=True)
    assert status == 200
    _, final = _through(reads)
    assert final["output"][-1]["content"][0]["annotations"][0]["url"] == "https://example.com/a"


def test_fake_stream_error_body_before_streaming(fake):
    from mimo2codex.translate.errors import map_upstream

    status, body, _ = _fake_stream(fake, {"error": {"status": 429}})
    m = map_upstream(RULES, status, body, {})
    assert status == 429 and m.code == "rate_limit_exceeded"


def test_nothing_follows_a_failure_raised_inside_a_chunk():
    # One chunk that completes a bad custom call, starts another call and carries text: the
    # failure (raised when the second call starts) must stay the last event.
    both = chunk({"tool_calls": [{"index": 0, "id": None, "type": "function", "function": {"name": None, "arguments": "}"}},
                                 {"index": 1, "id": "call_b", "type": "function", "function": {"name": "exec_command", "arguments": "{}"}},
                                 {"index": 2, "id": "call_c", "type": "function", "function": {"name": "exec_command", "arguments": "{}"}}]})
    body = sse([role(), call_start(0, "call_a", "apply_patch"), call_args(0, '{"a":1'), both, say("x"), finish("tool_calls"), usage()])
    events, final = check(run(body)[0])
    assert final["status"] == "failed" and "apply_patch" in final["error"]["message"]


# ----------------------------------------------------------------------------------------------
# The plain-delta fast path (stream._PLAIN) gives the very bytes the general path gives

AWKWARD = ["tok ", "", "é中文", 'a"b', "back\\slash", "new\nline", "\t", "😀", "\u2028", "\x7f", "%d %s %%", "\\u0041",
           "\ud83d", "\ude00", "data: {}\n\n", "</s>"]


def mimo_frames(chunks: list, ascii_: bool, index_first: bool) -> list[bytes]:
    """MiMo's own framing: compact JSON, one `data: ` frame per chunk."""
    out = []
    for i, c in enumerate(chunks):
        c = dict(c, created=1776848906 + i // 7)  # MiMo's `created` changes now and then, not every chunk
        if not index_first and c.get("choices"):
            c = dict(c, choices=[{k: ch[k] for k in ("delta", "finish_reason", "index") if k in ch} for ch in c["choices"]])
        text = json.dumps(c, ensure_ascii=ascii_, separators=(",", ":"))
        out.append(b"data: " + text.encode("utf-8", "surrogatepass") + b"\n\n")
    return out + [b"data: [DONE]\n\n"]


def other_frames(chunks: list, ascii_: bool, spaced: bool) -> list[bytes]:
    """Other providers' framing (OpenAI, DeepSeek, vLLM...): the delta holds only what is set (no
    explicit nulls), `index` first and `logprobs` in the choice, more envelope fields, `data:`
    without a space, and (spaced) JSON with blanks after `:` and `,`."""
    out = []
    for i, c in enumerate(chunks):
        env = {"id": "chatcmpl-" + CID, "object": "chat.completion.chunk", "created": 1776848906 + i // 5, "model": "gpt-x",
               "system_fingerprint": "fp_1", "service_tier": "default"}
        if c.get("choices"):
            ch = c["choices"][0]
            env["choices"] = [{"index": 0, "delta": {k: v for k, v in ch["delta"].items() if v is not None}, "logprobs": None,
                               "finish_reason": ch["finish_reason"]}]
        else:
            env["choices"] = []
        if "usage" in c and c["usage"] is not None:
            env["usage"] = c["usage"]
        text = json.dumps(env, ensure_ascii=ascii_, separators=(", ", ": ") if spaced else (",", ":"))
        out.append(b"data:" + text.encode("utf-8", "surrogatepass") + b"\n\n")
    return out + [b"data:[DONE]\n\n"]


def random_chunks(rnd: random.Random) -> list:
    words = AWKWARD + ["plain", " words", " here", "。"]
    chunks = [role()]
    for _ in range(rnd.randint(0, 3)):
        kind = rnd.random()
        if kind < 0.4:
            chunks += [think(rnd.choice(words)) for _ in range(rnd.randint(1, 8))]
        elif kind < 0.8:
            chunks += [say(rnd.choice(words)) for _ in range(rnd.randint(1, 8))]
        elif kind < 0.9:
            chunks.append(chunk({"content": rnd.choice(words), "reasoning_content": rnd.choice(words)}))
        else:
            chunks += tool_call(0, "call_" + "a" * 24, "exec_command", '{"cmd":"ls"}')
    return chunks + [finish("tool_calls" if any(c["choices"][0]["delta"]["tool_calls"] for c in chunks) else "stop"), usage()]


def run_both(body: list[bytes], cut: str | list[int], rnd: random.Random, monkeypatch, **turn_kw) -> tuple[bytes, bytes, int]:
    """The fast and the general path fed the same reads; their outputs must agree read by read (a
    fast path may not hold back what the general path emits). Both outputs, and the fast one's parses."""
    data = b"".join(body)
    if not isinstance(cut, str):  # the cut points themselves
        reads = [data[a:b] for a, b in zip([0, *cut], [*cut, len(data)])]
    elif cut == "frames":
        reads = body
    elif cut == "merged":
        reads = [b"".join(body[i : i + 3]) for i in range(0, len(body), 3)]
    else:
        points = sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, 12)))
        reads = [data[a:b] for a, b in zip([0] + points, points + [len(data)])]
    outs, parses = [], 0
    real = stream_mod._loads
    for fast in (True, False):
        ids = itertools.count()
        monkeypatch.setattr(turn_mod, "new_id", lambda prefix: f"{prefix}_{next(ids)}")
        calls = itertools.count()
        monkeypatch.setattr(stream_mod, "_loads", lambda p: (next(calls), real(p))[1])
        s = ResponsesStream(make_turn(created_at=1776848906, response_id="resp_1", **turn_kw), RULES)
        s._fast = s._fast and fast
        outs.append([*map(s.feed, reads), s.finish()])
        if fast:
            parses = next(calls)
    if outs[0] != outs[1] and b"".join(outs[0]) == b"".join(outs[1]):
        at = next(i for i, (a, b) in enumerate(zip(*outs)) if a != b)
        pytest.fail(f"the same bytes but not after the same reads (first at read {at} of {len(reads)})")
    return b"".join(outs[0]), b"".join(outs[1]), parses


@pytest.mark.parametrize("cut", ["frames", "merged", "random"])
@pytest.mark.parametrize("ascii_", [False, True])
@pytest.mark.parametrize("framing", ["mimo", "other"])
def test_fast_path_same_bytes_as_general_path(cut, ascii_, framing, monkeypatch):
    rnd = random.Random(f"{cut}{ascii_}{framing}")
    for n in range(150):
        chunks = random_chunks(rnd)
        if framing == "mimo":
            body = mimo_frames(chunks, ascii_, index_first=rnd.random() < 0.3)
        else:
            body = other_frames(chunks, ascii_, spaced=rnd.random() < 0.3)
        show = rnd.random() < 0.8
        fast, slow, _ = run_both(body, cut, rnd, monkeypatch, show_reasoning=show)
        assert fast == slow, f"case {n}: {chunks}"
        check(fast)


def test_fast_path_is_taken_for_plain_deltas(monkeypatch):
    chunks = [role()] + [think("hmm ")] * 50 + [say("tok ")] * 50 + [finish(), usage()]
    fast, slow, parses = run_both(mimo_frames(chunks, False, False), "frames", random.Random(1), monkeypatch)
    assert fast == slow
    # role, the first piece of each item (it opens the item), finish, usage, [DONE] take the general path
    assert parses == 5


@pytest.mark.parametrize("cut", ["frames", "random"])
def test_learnt_fast_path_is_taken_for_other_framings(cut, monkeypatch):
    """Frames the MiMo byte patterns do not know, whole or split across reads, skip the JSON parser
    once the general path has seen one plain piece of each kind."""
    chunks = [role()] + [think("hmm ")] * 50 + [say("tok ")] * 50 + [finish(), usage()]
    for spaced in (False, True):
        fast, slow, parses = run_both(other_frames(chunks, False, spaced), cut, random.Random(1), monkeypatch)
        assert fast == slow
        # role, the first two pieces of each item (one opens the item, one teaches the template),
        # finish, usage, [DONE]; `created` changes every fifth frame, each change costs one parse more
        assert parses <= 7 + len(chunks) // 5


def test_fast_path_leaves_odd_frames_to_the_general_path(monkeypatch):
    """Raw control characters and broken UTF-8 are invalid JSON: warned about and skipped either way."""
    ok = mimo_frames([role(), say("a"), say("b")], False, False)[:-1]
    template = ok[-1]
    bad = [template.replace(b'"b"', b'"x\ny"'), template.replace(b'"b"', b'"\xff\xfe"'), template.replace(b'"b"', b'"\\q"')]
    tail = mimo_frames([say("c"), finish(), usage()], False, False)
    fast, slow, _ = run_both(ok + bad + tail, "frames", random.Random(2), monkeypatch)
    assert fast == slow
    events, resp = check(fast)
    assert resp["output"][0]["content"][0]["text"] == "ab" + "\ufffd\ufffd" + "c"


def test_fast_path_waits_for_a_half_read_line(monkeypatch):
    """A read that looks like a whole plain frame is not one when an unterminated line precedes it."""
    ok = mimo_frames([role(), say("a"), say("b"), say("c")], False, False)[:-1]
    glued = ok[:3] + [b"data: ", ok[3]] + mimo_frames([say("d"), finish(), usage()], False, False)
    fast, slow, _ = run_both(glued, "frames", random.Random(3), monkeypatch)
    assert fast == slow
    assert check(fast)[1]["output"][0]["content"][0]["text"] == "abd"


# ----------------------------------------------------------------------------------------------
# Whole runs of frames that fit the learnt template (stream_learn._learned_run), reads cut anywhere

PLAIN_WORDS = ["tok ", "plain", " words", "。", "é", "中文", "😀", "x" * 40]


def run_chunks(rnd: random.Random) -> list:
    """Long runs of plain pieces, now and then an awkward one (escape, quote, bad UTF-8, empty), a
    tool call with text after it, both kinds."""
    def piece() -> str:
        return rnd.choice(AWKWARD) if rnd.random() < 0.15 else rnd.choice(PLAIN_WORDS)

    chunks = [role()]
    for _ in range(rnd.randint(1, 4)):
        kind = rnd.random()
        if kind < 0.35:
            chunks += [think(piece()) for _ in range(rnd.randint(1, 25))]
        elif kind < 0.85:
            chunks += [say(piece()) for _ in range(rnd.randint(1, 25))]
        else:
            chunks += tool_call(0, "call_" + "b" * 24, "exec_command", '{"cmd":"ls"}')
        if rnd.random() < 0.3:  # a piece in a chunk that is more than a piece
            chunks.append(rnd.choice([chunk({"content": "x", "reasoning_content": "y"}), chunk({"content": "x"}, usage=usage()["usage"]),
                                      chunk({"reasoning_content": "y", "role": "assistant"})]))
    calls = any(c["choices"][0]["delta"]["tool_calls"] for c in chunks)
    end = finish("tool_calls" if calls else "stop")
    if rnd.random() < 0.5:
        end["choices"][0]["delta"]["content"] = "last"  # the finish with a piece of its own
    return chunks + [end, usage()]


def reframe(frames: list[bytes], rnd: random.Random, variant: str) -> list[bytes]:
    """Other framings of the same events: `data: ` with the space (all or some frames), CRLF line
    ends, `event:` / `id:` lines and comments between frames, a template that changes mid-stream."""
    out = []
    for f in frames:
        if variant == "spaced" or (variant == "mixed" and rnd.random() < 0.2):
            f = b"data: " + f[5:]
        if variant == "fields" and rnd.random() < 0.15:
            f = rnd.choice([b"event: message\n", b"id: 7\n", b": keep-alive\n\n", b"retry: 10\n"]) + f
        if variant == "changes" and rnd.random() < 0.1:
            f = f.replace(b'"fp_1"', b'"fp_%d"' % rnd.randint(2, 3))
        out.append(f.replace(b"\n", b"\r\n") if variant == "crlf" else f)
    return out


@pytest.mark.parametrize("variant", ["plain", "spaced", "mixed", "crlf", "fields", "changes", "hidden"])
def test_learned_runs_same_bytes_as_general_path_for_reads_cut_anywhere(variant, monkeypatch):
    """Reads of one and a half frames (as bench/fast_upstream.py --framing other cuts them), the first
    read cut at every byte of the first frames: so reads end inside `data:`, inside the head,
    inside a piece or a UTF-8 character of it, between the two line ends; a read of the whole
    body has [DONE], the finish and tool calls in the same read as plain pieces."""
    rnd = random.Random(variant)
    for n in range(2):
        chunks = run_chunks(rnd)
        body = reframe(other_frames(chunks, False, spaced=False), rnd, variant)
        data = b"".join(body)
        step = len(body[2]) * 3 // 2
        first = fast_first = None
        for start in [*range(1, step), len(data) - 1]:
            cuts = list(range(start, len(data), step))
            fast, slow, _ = run_both(body, cuts, rnd, monkeypatch, show_reasoning=variant != "hidden")
            assert fast == slow, f"case {n}, first read {start} bytes: {chunks}"
            first, fast_first = first or slow, fast_first or fast
        assert first == fast_first
        check(first)


def test_learned_run_takes_frames_split_across_reads_without_the_parser(monkeypatch):
    """Past the first frames, a stream cut every 1.5 frames reaches the SSE parser only for the
    halves of frames held between reads (never as events), the first frames, finish, usage, [DONE]."""
    events: list = []
    real = stream_mod.SSEParser.feed
    monkeypatch.setattr(stream_mod.SSEParser, "feed", lambda self, data: events.extend(out := real(self, data)) or out)

    def translate(reads: list[bytes], fast: bool) -> bytes:
        ids = itertools.count()
        monkeypatch.setattr(turn_mod, "new_id", lambda prefix: f"{prefix}_{next(ids)}")
        s = ResponsesStream(make_turn(), RULES)
        s._fast = fast
        return b"".join(map(s.feed, reads)) + s.finish()

    for kind in (think, say):
        chunks = [role()] + [kind("tok ")] * 200 + [finish(), usage()]
        data = b"".join(re.sub(rb'"created":\d+', b'"created":1', f) for f in other_frames(chunks, False, spaced=False))
        step = len(data) // len(chunks) * 3 // 2
        reads = [data[i : i + step] for i in range(0, len(data), step)]
        want = translate(reads, False)
        events.clear()
        assert translate(reads, True) == want
        # role, the piece that opens the item, the one that teaches the template, the one that uses
        # it first (the frames are compiled then), finish, usage, [DONE]
        assert len(events) == 7, events


def test_learned_run_never_joins_a_character_split_between_two_pieces(monkeypatch):
    """Each piece is decoded alone, as the general path does: "é" cut between two chunks is two
    replacement characters either way, in a run of frames or not."""
    chunks = [role()] + [say("tok ")] * 4 + [say("Q1"), say("Q2")] + [say("tok ")] * 4 + [finish(), usage()]
    body = [re.sub(rb'"created":\d+', b'"created":1', f).replace(b"Q1", "é".encode()[:1]).replace(b"Q2", "é".encode()[1:])
            for f in other_frames(chunks, False, False)]
    data = b"".join(body)
    for step in (len(body[2]) * 3 // 2, len(body[2]) * 2, len(data)):
        fast, slow, _ = run_both(body, list(range(step, len(data), step)), random.Random(5), monkeypatch)
        assert fast == slow
        assert check(fast)[1]["output"][0]["content"][0]["text"] == "tok " * 4 + "\ufffd\ufffd" + "tok " * 4


def test_a_frame_cut_short_and_followed_by_a_whole_one_is_junk_either_way(monkeypatch):
    """A frame the provider never finished runs into the next one: one line of junk for the general
    path, so also for the fast paths (the read-level shortcut stays off while a frame is held)."""
    frames = [re.sub(rb'"created":\d+', b'"created":1', f) for f in other_frames([role()] + [say("tok ")] * 6 + [finish(), usage()], False, False)]
    cut = frames[4][: len(frames[4]) // 2 + 40]
    reads = frames[:4] + [frames[4] + cut, frames[5], frames[6]] + frames[7:]  # one frame per read, then the cut one
    fast, slow, _ = run_both(reads, "frames", random.Random(6), monkeypatch)
    assert fast == slow
    assert check(fast)[1]["output"][0]["content"][0]["text"] == "tok " * 5


@pytest.mark.parametrize("framing", ["mimo", "other"])
def test_a_translator_between_reads_holds_nothing_of_a_burst_it_passed_on(framing):
    """256 flows each in the middle of a burst: what one holds after returning a read's events is
    what every flow holds at once until its next read (it was the whole burst's rendered events)."""
    import tracemalloc

    s = ResponsesStream(make_turn(), RULES)
    first = sse([role(), say("hi")], done=False)
    burst = sse([say(f"word {i} ") for i in range(400)] + [think(f"t{i}") for i in range(100)], done=False)
    if framing == "other":
        burst = burst.replace(b"data: ", b"data:").replace(b', "role": null', b"")
    s.feed(first)
    tracemalloc.start()
    try:
        out = s.feed(burst)
        sent = len(out)
        del out
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent > 50_000
    # The text itself stays (as 500 small strings) for the final Response; the events went (before: 1.3-1.5x `sent`).
    assert held < sent // 2, f"{held} bytes held after passing on {sent}"
