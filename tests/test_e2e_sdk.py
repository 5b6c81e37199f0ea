"""End to end: the openai SDK (Responses streaming) -> a real mitmdump with addon/mimo.py -> the strict fake MiMo."""

from __future__ import annotations

import json
import time

import openai
import pytest

from mimo2codex import proxyproc
from mimo2codex.fakes.mimo import FakeMimo

pytestmark = pytest.mark.e2e
KEY = "sk-e2e-secret-key-1234"
MODEL = "mimo-v2.5-pro"
EXEC = {"type": "function", "name": "exec_command", "description": "Run a command", "strict": False,
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"], "additionalProperties": False}}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    log = tmp_path_factory.mktemp("proxy") / "mitmdump.log"
    with FakeMimo(keys=(KEY,)).start() as fake:
        with proxyproc.start(fake.base_url, key=KEY, sets=("mimo_verbose=true",), log_path=log) as proxy:
            yield fake, proxy


@pytest.fixture
def fake(chain):
    chain[0].reset()
    return chain[0]


@pytest.fixture
def client(chain):
    return openai.OpenAI(base_url=chain[1].base_url, api_key="codex-placeholder", max_retries=0, timeout=30)


def user(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def stream(client, **kw):
    events = []
    with client.responses.stream(model=MODEL, **kw) as s:
        for ev in s:
            events.append(ev)
        final = s.get_final_response() if events and events[-1].type == "response.completed" else None
    return events, final


def test_plain_text_streamed_and_accumulated(client, fake):
    fake.queue({"reasoning": "Greet back.", "text": "Hello from MiMo — 你好!", "usage": {"cached_tokens": 7}})
    events, final = stream(client, input=[user("hi")])
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "Hello from MiMo — 你好!"
    assert final.usage.input_tokens_details.cached_tokens == 7 and final.usage.total_tokens > 0
    reasoning = next(i for i in final.output if i.type == "reasoning")
    assert reasoning.summary[0].text == "Greet back." and reasoning.encrypted_content
    sent = fake.requests[-1]
    assert sent.body["model"] == MODEL and "input" not in sent.body
    assert "codex-placeholder" not in json.dumps(dict(sent.headers))


def test_non_stream_create_returns_a_response_object(client, fake):
    fake.queue({"text": "plain answer"})
    resp = client.responses.create(model=MODEL, input="hi")
    assert resp.status == "completed" and resp.output_text == "plain answer"


def test_one_tool_call(client, fake):
    fake.queue({"reasoning": "run it", "tool_calls": [{"name": "exec_command", "arguments": '{"cmd": "echo \\"hi\\" ü"}'}]})
    _, final = stream(client, input=[user("run")], tools=[EXEC])
    call = next(i for i in final.output if i.type == "function_call")
    assert call.name == "exec_command" and call.call_id.startswith("call_")
    assert json.loads(call.arguments) == {"cmd": 'echo "hi" ü'}


def test_parallel_interleaved_tool_calls_keep_order(client, fake):
    fake.queue({"tool_calls": [{"name": "exec_command", "arguments": '{"cmd": "one"}'},
                               {"name": "exec_command", "arguments": '{"cmd": "two"}'}], "interleaved": True})
    events, final = stream(client, input=[user("both")], tools=[EXEC])
    calls = [i for i in final.output if i.type == "function_call"]
    assert [json.loads(c.arguments)["cmd"] for c in calls] == ["one", "two"]
    done = [e.output_index for e in events if e.type == "response.output_item.done"]
    assert done == sorted(done)  # items never interleave in the Responses stream


def test_reasoning_passed_back_on_the_second_turn(client, fake):
    fake.queue({"reasoning": "I must look first.", "tool_calls": [{"name": "exec_command", "arguments": '{"cmd": "ls"}'}]})
    fake.queue({"reasoning": "Done looking.", "text": "Two files."})
    _, first = stream(client, input=[user("look")], tools=[EXEC])
    echoed = [i.model_dump(exclude_none=True) for i in first.output]
    call = next(i for i in echoed if i["type"] == "function_call")
    follow = [user("look"), *echoed, {"type": "function_call_output", "call_id": call["call_id"], "output": "a\nb"}]
    _, second = stream(client, input=follow, tools=[EXEC])
    assert second.output_text == "Two files."
    assistant = next(m for m in fake.requests[-1].body["messages"] if m["role"] == "assistant")
    assert assistant["reasoning_content"] == "I must look first."
    assert assistant["tool_calls"][0]["id"] == call["call_id"]


def test_length_becomes_incomplete(client, fake):
    fake.queue({"text": "This answer is cut", "finish": "length"})
    events, _ = stream(client, input=[user("long")])
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("error,code,needle", [
    ({"status": 400, "message": "Param Incorrect", "param": "`text` is not set"}, "invalid_prompt", "`text` is not set"),
    ({"status": 401}, "invalid_prompt", "MIMO_API_KEY"),
    ({"status": 402}, "insufficient_quota", "balance"),
])
def test_upstream_errors_become_failed(client, fake, error, code, needle):
    fake.queue({"error": error})
    events, _ = stream(client, input=[user("x")])
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == code and needle in events[-1].response.error.message
    assert KEY not in events[-1].response.error.message


def test_upstream_429_retried_then_served(client, fake):
    fake.queue({"error": {"status": 429}}, {"text": "after the storm"})
    _, final = stream(client, input=[user("x")])
    assert final.output_text == "after the storm" and len(fake.requests) == 2


def test_upstream_429_storm_ends_as_one_http_429(client, fake):
    # Decided once (contract: codex-responses.md section 4): a failed stream would be retried by Codex.
    fake.queue(*[{"error": {"status": 429, "retry_after": 0}}] * 4)
    with pytest.raises(openai.RateLimitError) as e:
        stream(client, input=[user("x")])
    assert e.value.status_code == 429 and "retry-after" not in e.value.response.headers
    err = e.value.body
    assert err["code"] == "rate_limit_exceeded" and "try again in" in err["message"]
    assert len(fake.requests) == 3  # the first attempt + rules retry.attempts


def test_cut_mid_stream_is_failed_not_completed(client, fake):
    fake.queue({"text": "partial answer that never finishes", "cut_after": 4})
    events, _ = stream(client, input=[user("x")])
    assert events[-1].type == "response.failed"


def test_first_delta_arrives_while_upstream_still_holds_the_rest(client, fake):
    fake.queue({"text": "one two three four five six", "chunk_delay": 0.4})
    t0 = time.monotonic()
    first = end = upstream_done_at_first_delta = None
    with client.responses.stream(model=MODEL, input=[user("slow")]) as s:
        for ev in s:
            if ev.type == "response.output_text.delta" and first is None:
                first = time.monotonic() - t0
                upstream_done_at_first_delta = fake.requests[-1].completed
        end = time.monotonic() - t0
    assert upstream_done_at_first_delta is False  # the fake was still holding the rest of its stream
    assert first is not None and end - first >= 1.0, (first, end)
    assert fake.requests[-1].completed


def test_key_never_in_proxy_log(chain):
    assert KEY not in chain[1].log()
