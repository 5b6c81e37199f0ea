"""request_json: `loads` must equal json.loads on every input, and `encode` splicing the client's
literals must give JSON equal to a plain dump of the same Chat payload (byte for byte when the
client wrote its strings as Python's encoder does, as Codex's serde_json does)."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from bench.run import codex_request
from mimo2codex.translate import hooks, request, request_json, rules
from mimo2codex.translate.request_json import Literals

MIMO = rules.load("mimo")
PIECES = ["plain text ", "\n", "\t", '"quoted"', "back\\slash", "\x00\x1b\x7f", "é", "—→", "中文",
          "\U0001f600", "\ud800", "\udc00x", "{\"type\": \"x\"}", "},{", "\\u0041", "/", "\r\n"]
STYLES = {
    "codex": dict(ensure_ascii=False, separators=(",", ":")),
    "ascii": dict(ensure_ascii=True, separators=(",", ":")),
    "spaced": dict(ensure_ascii=False),
    "pretty": dict(ensure_ascii=False, indent=2),
}


@pytest.fixture
def small(monkeypatch):
    """Thresholds low enough that small random bodies exercise the walk and the splice."""
    monkeypatch.setattr(request_json, "MIN_BODY", 0)
    monkeypatch.setattr(request_json, "BIG", 8)


def dump(obj, style: str) -> bytes:
    return json.dumps(obj, **STYLES[style]).encode("utf-8", "surrogatepass")


def rand_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(PIECES) for _ in range(n))


def rand_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -7, 2**70, 1.5, -0.0, 1e300])
    if kind in (2, 3, 4):
        return rand_text(rng, rng.randrange(0, 12))
    if kind in (5, 6):
        return [rand_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rand_text(rng, rng.randrange(3)): rand_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def rand_body(rng: random.Random) -> dict:
    items = []
    for t in range(rng.randrange(1, 8)):
        call = f"call_{t}"
        items += [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": rand_text(rng, rng.randrange(20))}]},
            {"type": "function_call", "name": "exec_command", "call_id": call, "arguments": json.dumps({"cmd": rand_text(rng, 5)})},
            {"type": "function_call_output", "call_id": call, "output": rand_text(rng, rng.randrange(40))},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": rand_text(rng, 6)}]},
            {"type": "code_interpreter_call", "id": rand_text(rng, 2), "extra": rand_value(rng)},
        ]
    return {"model": "mimo-v2.6-pro", "instructions": rand_text(rng, rng.randrange(30)), "input": items,
            "stream": True, "metadata": {"k": rand_text(rng, 3)},
            "tools": [{"type": "function", "name": "exec_command", "description": rand_text(rng, 10),
                       "parameters": {"type": "object", "properties": {"cmd": {"type": "string", "x": rand_value(rng)}}}}]}


def same(a, b) -> bool:
    """Equal as JSON values, and of the same types (json's 1 == 1.0 == True would hide a wrong parse)."""
    return json.dumps(a, sort_keys=False) == json.dumps(b, sort_keys=False)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_loads_equals_json_loads_on_random_bodies(small, style):
    rng = random.Random(f"loads-{style}")
    for _ in range(150):
        body = rand_body(rng)
        raw = dump(body, style)
        got, lits = request_json.loads(raw)
        assert same(got, json.loads(raw))
        for value, start, end in lits.spans.values():  # every noted span is a literal of that very value
            assert json.loads(raw[start:end].decode("utf-8", "surrogatepass")) == value


def test_loads_equals_json_loads_on_values_that_are_not_codex_bodies(small):
    rng = random.Random("values")
    for _ in range(300):
        raw = dump(rand_value(rng), rng.choice(sorted(STYLES)))
        assert same(request_json.loads(raw)[0], json.loads(raw))
    for raw in (b'{"input": [{"a": 1, "a": "second value wins"}], "input": [1]}',
                b'{"a": "x", "a": "yyyyyyyyyy", "b": NaN, "c": -Infinity}',
                b'  {"input":[ {"type" : "t" , "output" : "\\u00e9\\ud83d\\ude00 long enough" } ] }\n',
                '{"input":[{"type":"m","text":"caf\u00e9 long enough"}]}'.encode(),
                b'{"input":[{"type":"m","text":"\xed\xa0\x80 raw surrogate, long"}]}',
                b"[]", b'"just a long string value"', b"123"):
        assert same(request_json.loads(raw)[0], json.loads(raw)), raw


@pytest.mark.parametrize("raw", [b"", b"{", b'{"input":[{"type":"x","output":"unterminated}]}', b'{"a":1}x',
                                 b'{"a":"\xff\xfe bad utf-8 long"}', b'{"input":[1,]}', b'{"a" 1}',
                                 b'{"input":[{"type":"x","output":"ctrl \x01 char long"}]}',
                                 '{"input":[{"type":"x","output":"é ctrl \x01 char, raw UTF-8 first"}]}'.encode(),
                                 '{"input":[{"type":"x","output":"é unterminated \\"}]}'.encode()])
def test_bad_bodies_fail_as_json_loads_fails(small, raw):
    with pytest.raises(ValueError) as expected:
        json.loads(raw)
    with pytest.raises(type(expected.value)) as got:
        request_json.loads(raw)
    assert str(got.value) == str(expected.value)


TRICKY = ["é" + '\\"' * 3 + " then the end", "é" + '"' * 40, "é ends in a backslash \\", "é \\\\\\\" \\\\",
          "中文" * 30, "é" + "\\" * 9 + '"' + "\\" * 4, "é\u2028 and \U0001f600 and \ud800 alone"]


@pytest.mark.parametrize("style", ["codex", "spaced"])
def test_long_literals_with_raw_utf8_end_where_json_loads_ends_them(small, style):
    """Escaped quotes and runs of backslashes before the closing quote, more escaped quotes than a
    few searches find (scanned instead), raw UTF-8 in the first bytes (decoded once, from UTF-8)."""
    body = {"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": t} for t in TRICKY]}
    raw = dump(body, style)
    got, lits = request_json.loads(raw)
    assert same(got, json.loads(raw))
    for value, start, end in lits.spans.values():
        assert json.loads(raw[start:end].decode("utf-8", "surrogatepass")) == value
    assert {v for v, _, _ in lits.spans.values()} >= {t for t in TRICKY if "\ud800" not in t}


def test_a_long_utf8_literal_is_scanned_once(small, monkeypatch):
    output = "工具调用返回的一行源代码 — ✓\n" * 40
    raw = dump({"model": "m", "instructions": "—", "input": [{"type": "function_call_output", "call_id": "c", "output": output}]},
               "codex")
    scans = []

    def counted(text, end, *a):
        value, stop = request_json.json.decoder.scanstring(text, end, *a)
        scans.append(value)
        return value, stop

    monkeypatch.setattr(request_json, "scanstring", counted)
    got, lits = request_json.loads(raw)
    assert got["input"][0]["output"] == output and lits.get(got["input"][0]["output"]) is not None
    assert sum(1 for v in scans if len(v) >= len(output) // 2) == 1  # not once as Latin-1 first


def test_other_encodings_are_read_as_json_loads_reads_them(small):
    body = {"input": [{"type": "m", "output": "a long enough text é"}]}
    for codec in ("utf-16", "utf-32-le", "utf-8-sig"):
        raw = json.dumps(body).encode(codec)
        got, lits = request_json.loads(raw)
        assert got == body and not lits


@pytest.mark.parametrize("style", sorted(STYLES))
def test_spliced_payload_equals_a_plain_dump(small, style):
    rng = random.Random(f"encode-{style}")
    spliced = 0
    for _ in range(150):
        raw = dump(rand_body(rng), style)
        body, lits = request_json.loads(raw)
        chat, _ = request.to_chat(body, MIMO)
        plain = request_json.encode(chat)
        assert plain == json.dumps(chat, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass") \
            or "\\ud" in plain.decode()  # a lone surrogate: its group ASCII-escaped instead
        out = request_json.encode(chat, lits)
        assert same(json.loads(out), json.loads(plain))
        out.decode("utf-8")  # valid UTF-8 for the provider, whatever the client wrote
        spliced += sum(1 for m in chat["messages"] if request_json._holds(m, lits.spans, 4))
        if style == "codex" and "\\ud" not in plain.decode():
            assert out == plain  # the client escaped as we do: the very same bytes
    assert spliced > 100  # the splice did run


def test_a_literal_is_copied_as_the_client_wrote_it(small):
    output = "line one\nline \u00e9 two"
    raw = json.dumps({"model": "mimo-v2.6-pro", "input": [
        {"type": "function_call", "name": "f", "call_id": "c", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": output}]}).encode()  # ASCII-escaped, with spaces
    body, lits = request_json.loads(raw)
    chat, _ = request.to_chat(body, MIMO)
    out = request_json.encode(chat, lits)
    assert b'"line one\\nline \\u00e9 two"' in out  # the client's \u00e9, not our raw UTF-8
    assert json.loads(out) == json.loads(request_json.encode(chat))


def test_a_string_changed_by_a_hook_is_encoded_anew(small, monkeypatch):
    def shout(chat, turn, rules_):
        for m in chat["messages"]:
            if m["role"] == "tool":
                m["content"] = m["content"].upper()

    monkeypatch.setitem(hooks.REGISTRY["request"], "shout", shout)
    loud = dataclasses.replace(MIMO, hooks={**MIMO.hooks, "request": [*MIMO.hooks["request"], "shout"]})
    raw = dump({"model": "mimo-v2.6-pro", "input": [
        {"type": "function_call", "name": "f", "call_id": "c", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "quiet tool output"}]}, "codex")
    body, lits = request_json.loads(raw)
    assert lits
    chat, _ = request.to_chat(body, loud)
    out = json.loads(request_json.encode(chat, lits))
    assert [m["content"] for m in out["messages"] if m["role"] == "tool"] == ["QUIET TOOL OUTPUT"]


def test_literals_match_by_identity_not_by_equality():
    text = "x" * 2000
    lits = Literals(b'"' + text.encode() + b'"')
    lits.spans[id(text)] = (text, 0, 2002)
    assert bytes(lits.get(text)) == b'"' + text.encode() + b'"'
    assert lits.get("".join(["x"] * 2000)) is None  # equal, another object: encoded, never assumed


@pytest.mark.parametrize("size,items", [(300_000, None), (1_000_000, None), (300_000, 2000)])
def test_codex_sized_requests_at_the_real_thresholds(size, items):
    raw = dump(codex_request(size, items), "codex")
    body, lits = request_json.loads(raw)
    assert same(body, json.loads(raw))
    chat, _ = request.to_chat(body, MIMO)
    assert request_json.encode(chat, lits) == request_json.encode(chat) == \
        json.dumps(chat, ensure_ascii=False, separators=(",", ":")).encode()
    if items is None:  # tool outputs of several KB: each is copied, not escaped again
        assert sum(request_json._holds(m, lits.spans, 4) for m in chat["messages"]) >= len(
            [i for i in body["input"] if i["type"] == "function_call_output"])


def test_small_bodies_are_not_walked():
    raw = dump(codex_request(100_000, 500), "codex")
    assert len(raw) < request_json.MIN_BODY
    assert not request_json.loads(raw)[1]
