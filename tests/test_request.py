"""Responses -> Chat request mapping (mimo2codex.translate.request) against the MiMo rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mimo2codex.translate import envelope, request, request_messages, rules
from mimo2codex.translate.request import BadRequest, to_chat

SAMPLES = Path(__file__).parent / "fixtures" / "codex"
MIMO = rules.load("mimo")


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def msg(role: str, text: str) -> dict:
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def chat_of(items, **body) -> dict:
    return to_chat({"model": "mimo-v2.5-pro", "input": items, **body}, MIMO)[0]


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("0*.json")))
def test_codex_samples_translate_without_responses_only_fields(name):
    chat, turn = to_chat(sample(name), MIMO)
    for field in ("input", "store", "include", "prompt_cache_key", "client_metadata", "reasoning", "text", "instructions"):
        assert field not in chat
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert chat["model"] == "mimo-v2.5-pro"
    assert chat["max_completion_tokens"] == 131072
    assert {m["role"] for m in chat["messages"]} <= {"system", "user", "assistant", "tool"}
    assert turn.stream is True and turn.thinking is True


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("0*.json")))
def test_encode_gives_the_bytes_of_one_compact_dump(name):
    chat, _ = to_chat(sample(name), MIMO)
    assert request.encode(chat) == json.dumps(chat, ensure_ascii=False, separators=(",", ":")).encode()


def test_encode_survives_a_lone_surrogate():
    chat = chat_of(json.loads('[{"type": "message", "role": "user", "content": "half \\ud83d of a pair, 中文"}]'))
    raw = request.encode(chat)
    assert json.loads(raw) == chat  # the odd message is ASCII-escaped, the rest stays UTF-8
    assert b"\\ud83d" in raw
    with pytest.raises(UnicodeEncodeError):  # what the one-piece dump did
        json.dumps(chat, ensure_ascii=False).encode()


def test_developer_becomes_system_and_instructions_lead():
    chat = chat_of([msg("developer", "be brief"), msg("user", "hi")], instructions="You are Codex")
    assert chat["messages"] == [{"role": "system", "content": "You are Codex"},
                                {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def test_string_input_is_one_user_message():
    chat = to_chat({"model": "mimo-v2.6-pro", "input": "hello"}, MIMO)[0]
    assert chat["messages"] == [{"role": "user", "content": "hello"}]


def test_reasoning_restored_from_our_envelope_even_with_hidden_summary():
    items = [msg("user", "q"), {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": envelope.seal("deep thought")},
             msg("assistant", "answer"), msg("user", "again")]
    assistant = chat_of(items)["messages"][1]
    assert assistant == {"role": "assistant", "content": "answer", "reasoning_content": "deep thought"}


def test_history_resent_every_turn_is_unsealed_and_checked_once_and_the_memo_stays_bounded(monkeypatch):
    calls = []
    memo = request_messages._Memo(lambda s: calls.append(s) or s.upper(), limit=10)
    monkeypatch.setattr(request_messages, "_unseal", request_messages._Memo(lambda s: calls.append(s) or envelope.unseal(s)))
    items = [msg("user", "q"), {"type": "reasoning", "summary": [], "encrypted_content": envelope.seal("deep thought")},
             {"type": "function_call", "name": "f", "call_id": "c1", "arguments": '{"a":1'},
             {"type": "function_call_output", "call_id": "c1", "output": "ok"}, msg("user", "again")]
    first, second = chat_of(items), chat_of(json.loads(json.dumps(items)))  # the next turn: equal strings, new objects
    assert first == second and first["messages"][1]["reasoning_content"] == "deep thought"
    assert first["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"a":1}'  # repaired both times
    assert len(calls) == 1
    calls.clear()
    assert [memo("abc"), memo("abc"), memo("defg"), memo("abc")] == ["ABC", "ABC", "DEFG", "ABC"]
    assert calls == ["abc", "defg", "abc"]  # 3+3 and 4+4 characters overflow 10: emptied, then filled again
    assert memo("x" * 20) == "X" * 20 and "x" * 20 not in memo.cache  # larger than the whole memo: not kept


def test_foreign_encrypted_content_is_ignored_and_summary_used():
    items = [msg("user", "q"), {"type": "reasoning", "summary": [{"type": "summary_text", "text": "from summary"}],
                                "encrypted_content": "gAAAAABoOpenAIblob"}, msg("assistant", "a"), msg("user", "q2")]
    assert chat_of(items)["messages"][1]["reasoning_content"] == "from summary"


def test_reasoning_content_text_preferred_over_summary():
    item = {"type": "reasoning", "summary": [{"type": "summary_text", "text": "short"}],
            "content": [{"type": "reasoning_text", "text": "raw reasoning text"}], "encrypted_content": "opaque"}
    chat = chat_of([msg("user", "q"), item, msg("assistant", "a"), msg("user", "q2")])
    assert chat["messages"][1]["reasoning_content"] == "raw reasoning text"


def test_placeholder_when_history_has_no_reasoning_in_thinking_mode():
    chat = chat_of([msg("user", "q"), msg("assistant", "a"), msg("user", "q2")])
    assert chat["messages"][1]["reasoning_content"] == MIMO.reasoning["placeholder"]


def test_thinking_off_sends_disabled_and_no_reasoning_content():
    chat, turn = to_chat({"model": "mimo-v2.5-pro", "input": [msg("user", "q"), msg("assistant", "a"), msg("user", "b")]},
                         MIMO, thinking=False)
    assert chat["thinking"] == {"type": "disabled"} and "reasoning_effort" not in chat
    assert "reasoning_content" not in chat["messages"][1]
    assert turn.thinking is False and turn.show_reasoning is False


def test_parallel_calls_grouped_into_one_assistant_message_with_outputs_in_call_order():
    chat = chat_of(sample("05_parallel_calls_followup.json")["input"])
    roles = [m["role"] for m in chat["messages"]]
    i = roles.index("assistant")
    assert roles[i:] == ["assistant", "tool", "tool"]
    calls = chat["messages"][i]["tool_calls"]
    assert [c["id"] for c in calls] == [m["tool_call_id"] for m in chat["messages"][i + 1 :]]
    assert "content" not in chat["messages"][i]  # omitted next to tool_calls, per rules


def test_out_of_order_and_missing_outputs_are_repaired():
    items = [msg("user", "go"),
             {"type": "function_call", "call_id": "a", "name": "exec_command", "arguments": "{}"},
             {"type": "function_call", "call_id": "b", "name": "exec_command", "arguments": "{}"},
             {"type": "function_call", "call_id": "c", "name": "exec_command", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c", "output": "C"},
             {"type": "function_call_output", "call_id": "a", "output": "A"},
             msg("user", "next")]
    m = chat_of(items)["messages"]
    assert [x["role"] for x in m] == ["user", "assistant", "tool", "tool", "tool", "user"]
    assert [(x["tool_call_id"], x["content"]) for x in m[2:5]] == [("a", "A"), ("b", request.INTERRUPTED), ("c", "C")]


def test_orphan_output_kept_as_user_context():
    m = chat_of([msg("user", "go"), {"type": "function_call_output", "call_id": "zzz", "output": "lost"}])["messages"]
    assert [x["role"] for x in m] == ["user", "user"] and "lost" in m[1]["content"]


def test_consecutive_assistant_messages_merge():
    m = chat_of([msg("user", "q"), msg("assistant", "one"), msg("assistant", "two"), msg("user", "q2")])["messages"]
    assert [x["role"] for x in m] == ["user", "assistant", "user"] and m[1]["content"] == "one\n\ntwo"


def test_invalid_historical_arguments_are_repaired():
    items = [msg("user", "q"), {"type": "function_call", "call_id": "a", "name": "f", "arguments": '{"cmd": "ls'},
             {"type": "function_call_output", "call_id": "a", "output": "x"}]
    call = chat_of(items)["messages"][1]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"cmd": "ls"}


def test_custom_tool_offered_as_function_and_history_wrapped():
    body = sample("03_apply_patch_followup.json")
    chat, turn = to_chat(body, MIMO)
    fn = next(t["function"] for t in chat["tools"] if t["function"]["name"] == "apply_patch")
    assert fn["parameters"]["required"] == ["input"] and "grammar" in fn["description"]
    assert turn.custom_tools == {"apply_patch"}
    call = next(m for m in chat["messages"] if m["role"] == "assistant")["tool_calls"][0]
    assert json.loads(call["function"]["arguments"])["input"].startswith("*** Begin Patch")


def test_namespace_tools_flattened_and_calls_mapped_back():
    body = sample("08_namespace_call_followup.json")
    chat, turn = to_chat(body, MIMO)
    names = [t["function"]["name"] for t in chat["tools"]]
    assert "close_agent" in names and len(names) == len(set(names))
    assert turn.namespaces["close_agent"] == ("multi_agent_v1", "close_agent")
    call = next(m for m in chat["messages"] if m["role"] == "assistant")["tool_calls"][0]
    assert call["function"]["name"] == "close_agent"


def test_namespace_collision_gets_prefixed_name():
    tools = [{"type": "function", "name": "spawn", "parameters": {}},
             {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "spawn", "parameters": {}}]}]
    chat, turn = to_chat({"model": "mimo-v2.5-pro", "input": "x", "tools": tools}, MIMO)
    assert [t["function"]["name"] for t in chat["tools"]] == ["spawn", "ns__spawn"]
    assert turn.namespaces == {"ns__spawn": ("ns", "spawn")}


def test_local_shell_becomes_shell_function_and_call_round_trips():
    items = [msg("user", "q"), {"type": "local_shell_call", "call_id": "s1", "status": "completed",
                                "action": {"type": "exec", "command": ["ls", "-l"], "working_directory": "/tmp"}},
             {"type": "local_shell_call_output", "call_id": "s1", "output": "total 0"}]
    chat, turn = to_chat({"model": "mimo-v2.5-pro", "input": items, "tools": [{"type": "local_shell"}]}, MIMO)
    assert chat["tools"][0]["function"]["name"] == "shell" and turn.local_shell == "shell"
    call = chat["messages"][1]["tool_calls"][0]
    assert call["function"]["name"] == "shell" and json.loads(call["function"]["arguments"]) == {"command": ["ls", "-l"], "workdir": "/tmp"}


def test_strict_null_omitted_and_duplicates_dropped():
    tools = [{"type": "function", "name": "f", "strict": None, "parameters": {"type": "object"}},
             {"type": "function", "name": "f", "strict": True, "parameters": {"type": "object"}}]
    chat, turn = to_chat({"model": "mimo-v2.5-pro", "input": "x", "tools": tools}, MIMO)
    assert chat["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert any("duplicate" in w for w in turn.warnings)


def test_server_side_tools_dropped_and_web_search_opt_in():
    tools = [{"type": "code_interpreter"}, {"type": "file_search"}, {"type": "web_search", "user_location": {"type": "approximate", "city": "Beijing"}}]
    assert "tools" not in to_chat({"model": "mimo-v2.5-pro", "input": "x", "tools": tools}, MIMO)[0]
    chat = to_chat({"model": "mimo-v2.5-pro", "input": "x", "tools": tools}, MIMO, web_search=True)[0]
    assert chat["tools"] == [{"type": "web_search", "user_location": {"type": "approximate", "city": "Beijing"}}]


def test_images_stripped_for_text_only_model_with_placeholder():
    chat = chat_of(sample("07_image_input_turn.json")["input"])
    user = chat["messages"][-1]
    assert isinstance(user["content"], str) and "image omitted" in user["content"]


def test_image_only_message_gets_text_part_on_vision_model():
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "high"}
    chat = to_chat({"model": "mimo-v2.6-pro", "input": [{"type": "message", "role": "user", "content": [image]}]}, MIMO)[0]
    parts = chat["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": " "} and parts[1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def test_image_tool_output_moves_to_user_message_on_vision_model():
    body = sample("06_view_image_followup.json")
    body["model"] = "mimo-v2.6-pro"
    m = to_chat(body, MIMO)[0]["messages"]
    assert [x["role"] for x in m[-3:]] == ["assistant", "tool", "user"]
    assert isinstance(m[-2]["content"], str)  # tool content stays a string
    assert [p["type"] for p in m[-1]["content"]] == ["text", "image_url"]


@pytest.mark.parametrize("effort,model,expected", [
    ("minimal", "mimo-v2.5-pro", "low"), ("xhigh", "mimo-v2.5-pro", "high"), ("medium", "mimo-v2.6-pro", "medium"),
    ("high", "mimo-v2.6-flash", "high"), ("max", "mimo-v2.6-pro", "high"),
])
def test_effort_mapped_and_clamped(effort, model, expected):
    chat = to_chat({"model": model, "input": "x", "reasoning": {"effort": effort}}, MIMO)[0]
    assert chat["reasoning_effort"] == expected and chat["thinking"] == {"type": "enabled"}


def test_effort_none_turns_thinking_off():
    chat, turn = to_chat({"model": "mimo-v2.6-pro", "input": "x", "reasoning": {"effort": "none"}}, MIMO)
    assert chat["thinking"] == {"type": "disabled"} and "reasoning_effort" not in chat and not turn.thinking


def test_params_clamped_dropped_and_mapped():
    body = {"model": "mimo-v2.5-pro[1m]", "input": "x", "max_output_tokens": 500000, "temperature": 0.2,
            "tool_choice": {"type": "function", "name": "f"}, "text": {"format": {"type": "json_schema", "name": "s", "schema": {}}},
            "tools": [{"type": "function", "name": "f", "parameters": {}}], "service_tier": "flex", "truncation": "auto"}
    chat, turn = to_chat(body, MIMO)
    assert chat["model"] == "mimo-v2.5-pro" and turn.model == "mimo-v2.5-pro[1m]"
    assert chat["max_completion_tokens"] == 131072
    assert "temperature" not in chat  # thinking mode
    assert chat["tool_choice"] == "auto" and chat["response_format"] == {"type": "json_object"}
    assert "service_tier" not in chat and "truncation" not in chat
    cool = to_chat({**body, "reasoning": {"effort": "none"}, "model": "mimo-v2.6-pro", "temperature": 9}, MIMO)[0]
    assert cool["temperature"] == 1.5


def test_tool_choice_none_removes_tools():
    chat = to_chat({"model": "mimo-v2.5-pro", "input": "x", "tool_choice": "none",
                    "tools": [{"type": "function", "name": "f", "parameters": {}}]}, MIMO)[0]
    assert "tools" not in chat and "tool_choice" not in chat


def test_retired_alias_maps_to_successor():
    assert to_chat({"model": "mimo-v2-omni", "input": "x"}, MIMO)[0]["model"] == "mimo-v2.5"


@pytest.mark.parametrize("body,needle", [
    ([], "JSON object"),
    ({"input": "x"}, "'model'"),
    ({"model": "gpt-9", "input": "x"}, "known models: mimo-v2.6-pro"),
    ({"model": "mimo-v2.5-pro", "input": 5}, "'input'"),
    ({"model": "mimo-v2.5-pro", "input": [{"type": "bogus"}]}, "bogus"),
    ({"model": "mimo-v2.5-pro", "input": []}, "at least one message"),
    ({"model": "mimo-v2.5-pro", "input": "x", "tools": "f"}, "'tools'"),
    ({"model": "mimo-v2.5-pro", "input": [{"type": "function_call", "name": "f"}]}, "call_id"),
])
def test_bad_input_is_a_precise_bad_request(body, needle):
    with pytest.raises(BadRequest) as e:
        to_chat(body, MIMO)
    assert needle in e.value.message and e.value.status == 400


def test_reasoning_only_turn_sends_no_empty_assistant():
    items = [msg("user", "q"), {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}]}, msg("user", "q2")]
    assert [m["role"] for m in chat_of(items)["messages"]] == ["user", "user"]


@pytest.mark.parametrize("field,value,needle", [
    ("model", 5, "invalid type for 'model': expected a string"),
    ("stream", "false", "invalid type for 'stream': expected a boolean"),
    ("max_output_tokens", "10", "invalid type for 'max_output_tokens'"),
    ("max_output_tokens", -5, "must be at least 1"),
    ("max_output_tokens", True, "invalid type for 'max_output_tokens'"),
    ("temperature", "hot", "expected a number"),
    ("reasoning", "high", "expected an object"),
])
def test_wrong_types_refused_with_the_clients_field_name(field, value, needle):
    with pytest.raises(BadRequest) as e:
        to_chat({"model": "mimo-v2.5-pro", "input": "x", field: value}, MIMO)
    assert needle in e.value.message and e.value.param == field


# -- history compacted elsewhere (Codex replays OpenAI-compacted sessions) ------------------------


def test_compaction_with_a_readable_summary_becomes_a_user_message():
    chat, turn = to_chat({"model": "mimo-v2.5-pro", "input": [
        {"type": "compaction_summary", "summary": [{"type": "summary_text", "text": "We fixed the parser."}]},
        msg("user", "go on")]}, MIMO)
    summary, last = chat["messages"][-2:]
    assert summary == {"role": "user", "content": request.COMPACTED_PREFIX + "We fixed the parser."}
    assert last["role"] == "user" and not turn.warnings


def test_opaque_compaction_blob_is_dropped_with_a_warning_on_the_turn(caplog):
    chat, turn = to_chat({"model": "mimo-v2.5-pro", "input": [
        msg("user", "first"), {"type": "compaction", "encrypted_content": "gAAAA-openai-blob"},
        msg("user", "second")]}, MIMO)
    users = [json.dumps(m["content"]) for m in chat["messages"] if m["role"] == "user"]
    assert len(users) == 2 and "first" in users[0] and "second" in users[1]
    assert "gAAAA" not in json.dumps(chat)
    [note] = turn.warnings
    assert "'compaction'" in note and "cannot read" in note
    assert any("cannot read" in r.getMessage() for r in caplog.records)


def test_compaction_trigger_is_refused_with_a_precise_message():
    with pytest.raises(BadRequest) as e:
        chat_of([msg("user", "hi"), {"type": "compaction_trigger"}])
    assert e.value.status == 400 and e.value.code == "unsupported_compaction"
    assert "compaction_trigger" in e.value.message and "inline" in e.value.message
