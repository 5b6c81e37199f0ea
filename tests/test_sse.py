"""SSE parsing (provider side) and Responses event encoding (client side)."""

from __future__ import annotations

import json
import random

import pytest

from mimo2codex.translate import sse
from mimo2codex.translate.sse import DONE, DeltaTemplate, SSEParser
from mimo2codex.translate.turn import Turn


def parse_all(data: bytes, cuts: list[int] | None = None) -> list[tuple[str | None, bytes]]:
    p = SSEParser()
    out = []
    last = 0
    for c in (cuts or []) + [len(data)]:
        out += p.feed(data[last:c])
        last = c
    return out + p.close()


MIMO = (
    'data: {"id":"a","choices":[{"index":0,"delta":{"content":"你好 🌍","role":null}}]}\n\n'
    'data: {"id":"a","choices":[{"index":0,"delta":{"content":"ok"}}]}\n\n'
    "data: [DONE]\n\n"
).encode()


def test_plain_frames():
    events = parse_all(MIMO)
    assert [e[0] for e in events] == [None, None, None]
    assert json.loads(events[0][1])["choices"][0]["delta"]["content"] == "你好 🌍"
    assert events[-1][1] == DONE


def test_every_split_point_gives_the_same_events():
    want = parse_all(MIMO)
    for i in range(len(MIMO) + 1):
        assert parse_all(MIMO, [i]) == want, i


def test_byte_by_byte_and_random_splits():
    want = parse_all(MIMO)
    assert parse_all(MIMO, list(range(1, len(MIMO)))) == want
    rnd = random.Random(7)
    for _ in range(200):
        cuts = sorted(rnd.sample(range(1, len(MIMO)), rnd.randint(1, 6)))
        assert parse_all(MIMO, cuts) == want


def test_utf8_split_inside_a_character_is_reassembled():
    data = 'data: {"t":"é中🌍"}\n\n'.encode()
    for i in range(len(data) + 1):
        (ev,) = parse_all(data, [i])
        assert json.loads(ev[1]) == {"t": "é中🌍"}


def test_data_without_space_multiline_event_id_comments():
    data = b': keepalive\n\nevent: error\nid: 7\nretry: 100\ndata:{"a":\ndata: 1}\n\ndata\n\ndata:\n\n'
    events = parse_all(data)
    assert events[0] == ("error", b'{"a":\n1}')
    assert json.loads(events[0][1]) == {"a": 1}
    # A bare "data" line and an empty "data:" each make an event with empty data.
    assert events[1:] == [(None, b""), (None, b"")]


def test_crlf_and_cr_line_ends_even_split_between_cr_and_lf():
    crlf = MIMO.replace(b"\n", b"\r\n")
    cr = MIMO.replace(b"\n", b"\r")
    want = parse_all(MIMO)
    for data in (crlf, cr):
        assert parse_all(data) == want
        for i in range(len(data) + 1):
            assert parse_all(data, [i]) == want, (data[:20], i)


def test_event_name_is_reset_after_each_frame():
    events = parse_all(b"event: x\ndata: 1\n\ndata: 2\n\n")
    assert events == [("x", b"1"), (None, b"2")]


def test_close_flushes_an_unterminated_last_frame():
    p = SSEParser()
    assert p.feed(b'data: {"a":1}') == []
    assert p.close() == [(None, b'{"a":1}')]
    p = SSEParser()
    assert p.feed(b"data: [DONE]\n") == []
    assert p.close() == [(None, DONE)]


def test_fast_path_and_slow_path_agree():
    frames = b"".join(b'data: {"n":%d}\n\n' % i for i in range(50))
    fast = SSEParser().feed(frames)
    slow = parse_all(frames, list(range(3, len(frames), 5)))
    assert fast == slow and len(fast) == 50
    # Mixed content falls back to the line parser.
    mixed = b'data: {"n":1}\n\n: ping\n\ndata: {"n":2}\n\n'
    assert SSEParser().feed(mixed) == [(None, b'{"n":1}'), (None, b'{"n":2}')]


@pytest.mark.parametrize("frames", [
    b"".join(b'data:{"n":%d}\n\n' % i for i in range(20)),  # `data:` without the space, the whole-frames way
    b'data:{"n":1}\n\ndata: {"n":2}\n\ndata:  {"n":3}\n\n',  # mixed: one space is the separator, a second one is data
    b'data: {"n":1}\n\ndata:{"n":2}\n\n',
    b'data:\n\ndata:{"n":2}\ndata:x\n\n',
])
def test_whole_frame_reads_agree_with_the_line_parser(frames):
    assert SSEParser().feed(frames) == parse_all(frames, list(range(1, len(frames), 3)))


def test_payloads_strip_data_prefix_and_iter_events():
    err = b'data:{"error":{"code":"400","message":"Param Incorrect"}}\n\n'
    assert sse.strip_data_prefix(err) == b'{"error":{"code":"400","message":"Param Incorrect"}}'
    assert sse.strip_data_prefix(b'  {"error":1}\n') == b'{"error":1}'
    assert sse.strip_data_prefix(b"data: [DONE]\n\n") == b"data: [DONE]"
    assert sse.payloads(b"data: 1\n\ndata: 2") == [b"1", b"2"]
    body = b'event: response.created\ndata: {"type":"response.created"}\n\ndata: [DONE]\n\ndata: junk\n\n'
    assert list(sse.iter_events(body)) == [{"type": "response.created"}]


# ----------------------------------------------------------------------------------------------
# Encoding


def test_event_frame_shape():
    frame = sse.event("response.output_item.added", 3, {"output_index": 0, "item": {"id": "x"}})
    head, data = frame.split(b"\n", 1)
    assert head == b"event: response.output_item.added" and data.startswith(b"data: ") and frame.endswith(b"\n\n")
    obj = json.loads(data[6:])
    assert obj == {"type": "response.output_item.added", "sequence_number": 3, "output_index": 0, "item": {"id": "x"}}
    assert list(obj)[:2] == ["type", "sequence_number"]


@pytest.mark.parametrize("text", ["Hel", "", "quote \" backslash \\ newline \n tab \t", "中文 🌍", "100% %d %s %b", "\x00\x1f"])
def test_delta_template_is_byte_identical_to_a_full_dump(text):
    where = {"item_id": "msg_1", "output_index": 1, "content_index": 0}
    t = DeltaTemplate("response.output_text.delta", where, after={"logprobs": []})
    full = sse.event("response.output_text.delta", 12, {**where, "delta": text, "logprobs": []})
    assert t.render(12, text) == full
    assert json.loads(full.split(b"data: ", 1)[1])["delta"] == text


def test_lone_surrogates_never_break_the_output():
    t = DeltaTemplate("response.output_text.delta", {"item_id": "m", "output_index": 0, "content_index": 0})
    out = t.render(0, "a\ud83d")  # half an emoji, as a provider may split an escaped pair
    out.decode("utf-8")  # valid UTF-8
    assert json.loads(out.split(b"data: ", 1)[1])["delta"] == "a\ufffd"
    # A pair that arrived in two pieces and was joined is re-paired.
    assert json.loads(sse.dump_str("\ud83d" + "\ude00")) == "😀"
    sse.event("x", 0, {"t": "\udc00"}).decode("utf-8")


def test_usage_variants():
    full = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
            "completion_tokens_details": {"reasoning_tokens": 5}, "prompt_tokens_details": {"cached_tokens": 10}}
    assert sse.usage_from_chat(full) == {
        "input_tokens": 100, "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 0},
        "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 120}
    bare = sse.usage_from_chat({"prompt_tokens": 7, "completion_tokens": 3, "prompt_tokens_details": None,
                                "completion_tokens_details": None})
    assert bare["input_tokens_details"]["cached_tokens"] == 0 and bare["output_tokens_details"]["reasoning_tokens"] == 0
    assert bare["total_tokens"] == 10  # computed when missing
    assert sse.usage_from_chat({"prompt_tokens": 1, "completion_tokens": 1, "prompt_tokens_details": {}})["input_tokens_details"]["cached_tokens"] == 0
    assert sse.usage_from_chat(None) is None


def test_response_object_echo_cannot_override_our_fields():
    turn = Turn(model="mimo-v2.5-pro", echo={"id": "evil", "status": "x", "tools": [{"type": "function", "name": "f"}],
                                             "tool_choice": "auto", "parallel_tool_calls": False, "prompt_cache_key": "k"})
    r = sse.response_object(turn, "in_progress")
    assert r["id"] == turn.response_id and r["status"] == "in_progress" and r["model"] == "mimo-v2.5-pro"
    assert r["tools"] == [{"type": "function", "name": "f"}] and r["parallel_tool_calls"] is False and r["prompt_cache_key"] == "k"
    assert r["output"] == [] and r["usage"] is None and r["error"] is None and r["incomplete_details"] is None
    assert list(r)[:2] == ["id", "object"]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5])
def test_render_pieces_is_render_piece_in_a_row(n):
    t = DeltaTemplate("response.output_text.delta", {"item_id": "msg_1", "output_index": 0, "content_index": 0}, after={"logprobs": []})
    pieces = [b"p%d %%d" % i for i in range(n)]
    assert t.render_pieces(7, pieces) == b"".join(t.render_piece(7 + i, p) for i, p in enumerate(pieces))


def test_resume_hands_back_the_line_start_and_nothing_more():
    p = SSEParser()
    assert p.feed(b'data: {"a":1}\n\ndata: {"b"') == [(None, b'{"a":1}')]
    assert not p.idle
    assert p.resume(b":2}\n\n") == b'data: {"b":2}\n\n'
    assert p.idle and p.feed(b"data: x\n\n") == [(None, b"x")]
    for pending in (b"data: a\n", b"event: e\n", b"data: a\r"):  # a frame's first line, a name, a "\r"
        p = SSEParser()
        assert p.feed(pending) == []
        assert p.resume(b"\n") is None
        assert p.feed(b"\n") + p.close() == parse_all(pending + b"\n")


def _codex_turn(**echo) -> Turn:
    from pathlib import Path

    from mimo2codex.translate import request, rules

    body = json.loads((Path(__file__).parent / "fixtures" / "codex" / "05_parallel_calls_followup.json").read_text())
    body = {**body.get("body", body), **echo}
    return request.to_chat(body, rules.load("mimo"))[1]


@pytest.mark.parametrize("echo", [{}, {"instructions": "Réponds en français ✓", "metadata": {"k": "ü"}, "temperature": 0.3}, {"tools": []}])
@pytest.mark.parametrize("status, extra", [
    ("in_progress", {}),
    ("completed", {"output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                               "content": [{"type": "output_text", "text": "ça marche \u2028 \"q\"", "annotations": []}]}],
                   "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}),
    ("failed", {"error": {"code": "server_error", "message": "boom"}}),
    ("incomplete", {"incomplete_details": {"reason": "max_output_tokens"}}),
])
def test_a_response_event_is_the_same_bytes_as_the_event_it_replaces(echo, status, extra):
    turn = _codex_turn(**echo)
    output = extra.pop("output", None)
    cache: list[bytes] = []
    for seq in (0, 7, 12345):  # the echo is dumped on the first call, reused on the others
        resp = sse.response_object(turn, status, output, **extra)
        assert sse.response_event(f"response.{status}", seq, resp, cache) == sse.event(f"response.{status}", seq, {"response": resp})
    assert len(cache) == 1


def test_a_response_event_with_a_lone_surrogate_is_the_same_json():
    turn = _codex_turn()
    resp = sse.response_object(turn, "completed", [{"type": "message", "text": "half \ud83d of it"}])
    got = sse.response_event("response.completed", 3, resp, [])
    want = sse.event("response.completed", 3, {"response": resp})
    payload = lambda b: json.loads(b.split(b"data: ", 1)[1])  # noqa: E731
    assert got.startswith(b"event: response.completed\ndata: ") and payload(got) == payload(want)
