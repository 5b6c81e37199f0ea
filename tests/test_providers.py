"""The conversation suite, once per provider: every rules file in rules/ against its strict fake.

At the translator level: a Codex-shaped Responses request -> `request.to_chat` with the provider's
rules -> the provider's fake validates it (mimo2codex/fakes/providers.py: a request the provider
would refuse fails here) -> the fake's provider-shaped SSE, cut into odd pieces -> `ResponsesStream`
-> the Responses events Codex reads. Cases: text, tools, parallel tools, the reasoning round trip
(turn 2 carries turn 1's reasoning back where the provider wants it), and errors (HTTP errors
mapped to the codes Codex acts on, errors in the middle of a stream). `test_proxy_run` drives the
same conversation through a real mitmdump once per provider.
"""

from __future__ import annotations

import copy
import json
import os
import urllib.request
from pathlib import Path

import pytest

from mimo2codex.translate import errors, request, rules
from mimo2codex.fakes import providers
from mimo2codex.fakes.chat_server import FakeError
from mimo2codex.translate.stream import ResponsesStream, translate_body

PROVIDERS = ["mimo", "deepseek", "kimi", "glm", "qwen", "minimax", "openrouter", "local"]
SAMPLES = Path(__file__).parent / "fixtures" / "codex"
BASE = json.loads((SAMPLES / "01_text_turn.json").read_text())  # a real Codex request: instructions, tools, include


def test_every_shipped_provider_is_in_the_suite():
    assert sorted(rules.provider_names()) == sorted(PROVIDERS)


def user(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def sse_events(data: bytes) -> list[dict]:
    out = []
    for block in data.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
    return out


class Conv:
    """One provider: its rules, its strict fake profile, and a conversation driven through both."""

    def __init__(self, name: str, model: str | None = None, *, thinking: bool = True):
        self.name = name
        self.rules = rules.load(name)
        self.profile = providers.profile(name)
        self.model = model or self.rules.default_model
        self.thinking = thinking

    def body(self, items: list, **extra) -> dict:
        body = copy.deepcopy(BASE)
        body.update(model=self.model, input=items, **extra)
        return body

    def chat(self, body: dict) -> tuple[dict, object]:
        return request.to_chat(body, self.rules, thinking=self.thinking)

    def upstream(self, chat: dict):
        raw = json.dumps(chat, ensure_ascii=False).encode()
        try:
            return self.profile.validate(json.loads(raw), len(raw))
        except FakeError as e:  # the provider would refuse what we send: show both sides
            pytest.fail(f"{self.name} fake refused the request: {e.status} {e.body}\nrequest: {raw[:1500]!r}")

    def send(self, items: list, spec: dict, **extra) -> tuple[dict, object, dict, list[dict]]:
        """(chat request, fake's view of it, final Response object, all Responses events)."""
        chat, turn = self.chat(self.body(items, **extra))
        fturn = self.upstream(chat)
        reply = self.profile.make_reply(spec)
        self.profile.check_reply(fturn, reply)
        raw = b"".join(self.profile.stream_events(fturn, reply))
        if reply.mid_error is not None:
            cut = self.profile.stream_events(fturn, reply)[: reply.mid_error.get("after", 2)]
            raw = b"".join(cut) + self.profile.frame_stream_error(self.profile.reply_error(reply.mid_error).body)
        sm = ResponsesStream(turn, self.rules)
        out = b"".join(sm.feed(raw[i:i + 7]) for i in range(0, len(raw), 7)) + sm.finish()
        events = sse_events(out)
        return chat, fturn, events[-1]["response"], events


def outputs(resp: dict, kind: str) -> list[dict]:
    return [o for o in resp["output"] if o["type"] == kind]


def text_of(resp: dict) -> str:
    return "".join(p["text"] for m in outputs(resp, "message") for p in m["content"] if p["type"] == "output_text")


def shell_call(command: list[str], cid: str | None = None) -> dict:
    call = {"name": "exec_command", "arguments": {"cmd": " ".join(command)}}
    if cid:
        call["id"] = cid
    return call


# ----------------------------------------------------------------------------------------------
# The suite


@pytest.mark.parametrize("name", PROVIDERS)
def test_text(name):
    c = Conv(name)
    chat, fturn, resp, events = c.send([user("Say hello")], {"text": "Hello from the fake — ünïcödé ✓", "reasoning": "The user greets me."})
    assert resp["status"] == "completed", resp
    assert text_of(resp) == "Hello from the fake — ünïcödé ✓"
    reasoning = outputs(resp, "reasoning")
    assert fturn.thinking and reasoning, "every default model thinks"
    assert reasoning[0]["summary"][0]["text"] == "The user greets me."
    assert reasoning[0]["encrypted_content"].startswith("m2c1:")
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    assert resp["usage"]["output_tokens"] > 0


@pytest.mark.parametrize("name", PROVIDERS)
def test_tool_call(name):
    c = Conv(name)
    chat, fturn, resp, _ = c.send([user("list files")], {"reasoning": "I should look.", "tool_calls": [shell_call(["ls", "-la"])]})
    assert resp["status"] == "completed"
    calls = outputs(resp, "function_call")
    assert [(x["name"], json.loads(x["arguments"])) for x in calls] == [("exec_command", {"cmd": "ls -la"})]
    assert calls[0]["call_id"]
    assert "exec_command" in fturn.functions


@pytest.mark.parametrize("name", PROVIDERS)
def test_parallel_tool_calls(name):
    c = Conv(name)
    spec = {"reasoning": "Two things at once.", "interleaved": True,
            "tool_calls": [shell_call(["cat", "a.txt"]), shell_call(["cat", "b \"quoted\" ✓.txt"])]}
    _, _, resp, events = c.send([user("read both")], spec)
    calls = outputs(resp, "function_call")
    assert [json.loads(x["arguments"])["cmd"] for x in calls] == ["cat a.txt", 'cat b "quoted" ✓.txt']
    assert len({x["call_id"] for x in calls}) == 2
    done = [e["item"]["call_id"] for e in events if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"]
    assert sorted(done) == sorted(x["call_id"] for x in calls)


def _turn_two(c: Conv, first_items: list, resp: dict) -> list:
    """What Codex sends next: the history, the output items echoed back, one output per call."""
    echoed = [{k: v for k, v in o.items() if k not in ("status",)} for o in resp["output"]]
    results = [{"type": "function_call_output", "call_id": o["call_id"], "output": "total 0\nfile.txt"}
               for o in resp["output"] if o["type"] == "function_call"]
    return first_items + echoed + results


@pytest.mark.parametrize("name", PROVIDERS)
def test_reasoning_round_trip(name):
    c = Conv(name)
    items = [user("look around")]
    _, _, resp1, _ = c.send(items, {"reasoning": "First I list the files.", "tool_calls": [shell_call(["ls"])]})
    assert outputs(resp1, "reasoning") and outputs(resp1, "function_call")
    chat2, fturn2, resp2, _ = c.send(_turn_two(c, items, resp1), {"reasoning": "Now I know.", "text": "There is file.txt."})
    assert resp2["status"] == "completed" and text_of(resp2) == "There is file.txt."
    assistant = next(m for m in chat2["messages"] if m["role"] == "assistant")
    cfg = c.rules.reasoning
    where = json.dumps(assistant, ensure_ascii=False)
    if cfg["pass_back"] != "none":
        assert "First I list the files." in where, f"{name} must carry the reasoning back: {assistant}"
        if cfg.get("pass_back_as", "field") == "field":
            assert assistant[cfg["pass_back_field"]] == "First I list the files."
    else:
        assert "First I list the files." not in where


@pytest.mark.parametrize("name", [n for n in PROVIDERS if providers.profile(n).passback is not None])
def test_reasoning_pass_back_is_really_required_by_the_fake(name):
    """Negative control: without the pass-back, the same turn-2 request is refused by the fake
    (for the providers that document a 400 for it; GLM uses the reasoning without demanding it)."""
    c = Conv(name)
    items = [user("look around")]
    _, _, resp1, _ = c.send(items, {"reasoning": "First I list the files.", "tool_calls": [shell_call(["ls"])]})
    chat2, _ = c.chat(c.body(_turn_two(c, items, resp1)))
    for m in chat2["messages"]:
        if m["role"] == "assistant":
            for key in ("reasoning_content", "reasoning", "reasoning_details"):
                m.pop(key, None)
            if isinstance(m.get("content"), str) and "</think>" in m["content"]:
                m["content"] = m["content"].split("</think>", 1)[1].lstrip()
    raw = json.dumps(chat2).encode()
    with pytest.raises(FakeError) as e:
        c.profile.validate(json.loads(raw), len(raw))
    assert e.value.status == 400


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("0*.json")))
def test_real_codex_requests_are_accepted(name, sample):
    c = Conv(name)
    body = json.loads((SAMPLES / sample).read_text())
    body["model"] = c.model
    chat, _ = c.chat(body)
    c.upstream(chat)


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("effort", ["none", "minimal", "low", "medium", "high", "xhigh"])
def test_every_codex_effort_is_accepted(name, effort):
    c = Conv(name)
    for model in c.rules.models:
        c.model = model
        chat, turn = c.chat(c.body([user("hi")], reasoning={"effort": effort, "summary": "auto"}))
        fturn = c.upstream(chat)
        assert fturn.thinking == turn.thinking, f"{model}: we think {turn.thinking}, the fake {fturn.thinking}"


@pytest.mark.parametrize("name", PROVIDERS)
def test_reasoning_off_is_accepted(name):
    c = Conv(name, thinking=False)
    for model, info in c.rules.models.items():
        c.model = model
        chat, turn = c.chat(c.body([user("hi")]))
        fturn = c.upstream(chat)
        assert fturn.thinking == turn.thinking == (info.thinking == "always")


# ----------------------------------------------------------------------------------------------
# Errors

COMMON_ERRORS = [
    ({"status": 429, "retry_after": 2}, "rate_limit_exceeded", True),
    ({"status": 500}, "server_error", True),
    ({"status": 503}, "server_is_overloaded", True),
    ({"status": 400, "message": "something is wrong with the request"}, "invalid_prompt", False),
]
# Provider-specific bodies, exactly as the fake sends them (status, body) -> (code, retry)
SPECIAL_ERRORS = {
    "mimo": [(402, None, "insufficient_quota", False)],
    "deepseek": [(402, None, "insufficient_quota", False),
                 (422, None, "invalid_prompt", False),
                 (400, {"error": {"message": "This model's maximum context length is 1048576 tokens", "type": "invalid_request_error",
                                  "param": None, "code": "invalid_request_error"}}, "context_length_exceeded", False)],
    "kimi": [(402, None, "insufficient_quota", False),
             (429, {"error": {"message": "Your account is suspended, please check your plan and billing details",
                              "type": "exceeded_current_quota_error"}}, "insufficient_quota", False),
             (400, {"error": {"message": "Invalid request: Your request exceeded model token limit: 262144",
                              "type": "invalid_request_error"}}, "context_length_exceeded", False)],
    "glm": [(429, {"error": {"code": "1113", "message": "余额不足或无可用资源包,请充值。"}}, "insufficient_quota", False),
            (400, {"error": {"code": "1261", "message": "Prompt 超长"}}, "context_length_exceeded", False)],
    "qwen": [(400, {"error": {"code": "Arrearage", "message": "Access denied, please make sure your account is in good standing.",
                              "type": "Arrearage"}}, "insufficient_quota", False),
             (429, {"error": {"code": "insufficient_quota", "type": "insufficient_quota",
                              "message": "You exceeded your current quota, please check your plan and billing details."}},
              "insufficient_quota", False),
             (400, {"error": {"code": "invalid_parameter_error", "type": "invalid_request_error",
                              "message": "Range of input length should be [1, 983616]"}}, "context_length_exceeded", False)],
    "minimax": [(400, {"type": "error", "error": {"type": "bad_request_error", "message": "context window exceeds limit (1039)",
                                                  "http_code": "400"}}, "context_length_exceeded", False)],
    "openrouter": [(402, None, "insufficient_quota", False), (403, None, "invalid_prompt", False),
                   (408, None, "server_error", True), (502, None, "server_error", True)],
    "local": [(400, {"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it",
                               "type": "exceed_context_size_error"}}, "context_length_exceeded", False),
              (404, {"object": "error", "message": "The model `nope` does not exist.", "type": "NotFoundError", "param": None,
                     "code": 404}, "invalid_prompt", False)],
}


def _map(c: Conv, err: FakeError) -> errors.MappedError:
    data, _ = c.profile.frame_error(err.body, True)  # stream requests: the error body as the fake frames it
    return errors.map_upstream(c.rules, err.status, data, err.headers)


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("spec,code,retry", COMMON_ERRORS)
def test_http_errors(name, spec, code, retry):
    c = Conv(name)
    mapped = _map(c, c.profile.reply_error(c.profile.make_reply({"error": spec}).error))
    assert (mapped.code, mapped.retry) == (code, retry), mapped
    assert mapped.http_answer == (code == "rate_limit_exceeded")  # decided once, for every provider (rules/README.md)
    if "retry_after" in spec:
        assert mapped.retry_after == 2 and "2s" in mapped.message


@pytest.mark.parametrize("name", PROVIDERS)
def test_auth_error(name):
    c = Conv(name)
    mapped = _map(c, c.profile.auth_error())
    assert mapped.code == "invalid_prompt" and mapped.status == 401 and not mapped.retry
    assert c.rules.auth_env in mapped.message


@pytest.mark.parametrize("name,status,body,code,retry", [(n, *case) for n, cases in SPECIAL_ERRORS.items() for case in cases])
def test_provider_specific_errors(name, status, body, code, retry):
    c = Conv(name)
    err = FakeError(status, body) if body is not None else c.profile.reply_error({"status": status})
    mapped = _map(c, err)
    assert (mapped.code, mapped.retry) == (code, retry), mapped


@pytest.mark.parametrize("name", PROVIDERS)
def test_validation_error_of_the_fake_maps_to_invalid_prompt(name):
    """A request the fake refuses (an unknown model, sent past the translator) surfaces as a 4xx Codex will not retry."""
    c = Conv(name)
    try:
        c.profile.validate({"model": "no-such-model-xyz", "messages": [{"role": "user", "content": "hi"}]}, 10)
    except FakeError as e:
        mapped = _map(c, e)
    else:
        pytest.fail("the fake accepted an unknown model")
    assert mapped.code == "invalid_prompt" and not mapped.retry


@pytest.mark.parametrize("name", PROVIDERS)
def test_error_in_the_middle_of_the_stream_fails_the_response(name):
    c = Conv(name)
    _, _, resp, events = c.send([user("hi")], {"text": "partial answer that never ends", "mid_error": {"status": 500, "after": 3}})
    assert resp["status"] == "failed", resp
    assert resp["error"]["code"] == "server_error"
    assert events[-1]["type"] == "response.failed"


def test_minimax_reports_some_failures_as_http_200():
    c = Conv("minimax")
    body = providers.MiniMaxProfile.base_resp(1008, "insufficient balance")
    chat, turn = c.chat(c.body([user("hi")]))
    c.upstream(chat)
    data, _ = c.profile.frame_error(body, True)
    sm = ResponsesStream(turn, c.rules)
    resp = sse_events(sm.feed(data) + sm.finish())[-1]["response"]
    assert resp["status"] == "failed" and resp["error"]["code"] == "insufficient_quota"


def test_minimax_http_200_failure_as_plain_json():
    c = Conv("minimax")
    chat, turn = c.chat(c.body([user("hi")]))
    body = json.dumps(providers.MiniMaxProfile.base_resp(1008, "insufficient balance")).encode()
    _, sm = translate_body(turn, c.rules, body, "application/json")
    assert sm.response["status"] == "failed" and sm.response["error"]["code"] == "insufficient_quota"


# ----------------------------------------------------------------------------------------------
# Provider shapes the rules must undo


@pytest.mark.parametrize("name", PROVIDERS)
def test_cached_and_reasoning_tokens_reach_the_usage(name):
    c = Conv(name)
    _, _, resp, _ = c.send([user("hi")], {"text": "ok", "reasoning": "r", "usage": {"cached_tokens": 40, "reasoning_tokens": 3,
                                                                              "prompt_tokens": 100, "completion_tokens": 9}})
    usage = resp["usage"]
    assert usage["input_tokens"] == 100 and usage["output_tokens"] == 9
    assert usage["input_tokens_details"]["cached_tokens"] == 40
    assert usage["output_tokens_details"]["reasoning_tokens"] == 3


def test_minimax_think_tags_become_reasoning_and_go_back_inline():
    c = Conv("minimax")
    items = [user("look")]
    _, _, resp1, _ = c.send(items, {"reasoning": "a <b> c", "text": "Done.", "tool_calls": [shell_call(["ls"])]})
    assert outputs(resp1, "reasoning")[0]["summary"][0]["text"] == "a <b> c"
    assert text_of(resp1) == "Done."
    chat2, _, _, _ = c.send(_turn_two(c, items, resp1), {"text": "ok"})
    assistant = next(m for m in chat2["messages"] if m["role"] == "assistant")
    assert assistant["content"] == "<think>a <b> c</think>\n\nDone."
    assert "reasoning_content" not in assistant


def test_minimax_gets_one_leading_system_message():
    c = Conv("minimax")
    chat, _, _, _ = c.send([{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev rules"}]},
                            user("hi")], {"text": "ok"})
    systems = [i for i, m in enumerate(chat["messages"]) if m["role"] == "system"]
    assert systems == [0] and chat["messages"][0]["content"].endswith("dev rules")


def test_local_server_without_reasoning_parser():
    c = Conv("local", "qwen3:8b")  # served with <think> inline; not in rules/local.yaml: the fallback applies
    chat, fturn, resp, _ = c.send([user("hi")], {"reasoning": "thinking inline", "text": "Answer."})
    assert "reasoning_effort" not in chat and "max_tokens" not in chat
    assert outputs(resp, "reasoning")[0]["summary"][0]["text"] == "thinking inline"
    assert text_of(resp) == "Answer."


def test_local_context_overflow_is_context_length_exceeded():
    c = Conv("local", "tiny:1b")
    chat, _ = c.chat(c.body([user("x" * 20000)]))
    raw = json.dumps(chat).encode()
    with pytest.raises(FakeError) as e:
        c.profile.validate(json.loads(raw), len(raw))
    assert _map(c, e.value).code == "context_length_exceeded"


def test_openrouter_reasoning_knob_and_details_pass_back():
    c = Conv("openrouter")
    chat, turn = c.chat(c.body([user("hi")], reasoning={"effort": "high"}))
    assert chat["reasoning"] == {"enabled": True, "effort": "high"}
    assert "thinking" not in chat and "reasoning_effort" not in chat
    chat, turn = c.chat(c.body([user("hi")], reasoning={"effort": "none"}))
    assert chat["reasoning"] == {"effort": "none"}
    c.model = "some-vendor/new-model"  # unlisted: passes through with the fallback (no caps)
    chat, turn = c.chat(c.body([user("hi")], reasoning={"effort": "medium"}))
    assert chat["model"] == "some-vendor/new-model" and chat["reasoning"]["effort"] == "medium" and "max_tokens" not in chat


def test_deepseek_thinking_mode_never_gets_a_forced_tool_choice():
    c = Conv("deepseek")
    chat, _ = c.chat(c.body([user("hi")], tool_choice="required"))
    assert "tool_choice" not in chat
    c.upstream(chat)
    off = Conv("deepseek", thinking=False)
    chat, _ = off.chat(off.body([user("hi")], tool_choice="required"))
    assert chat["tool_choice"] == "required" and chat["thinking"] == {"type": "disabled"}
    off.upstream(chat)


def test_glm_streams_tool_arguments_only_when_asked():
    c = Conv("glm")
    chat, _, resp, _ = c.send([user("ls")], {"tool_calls": [shell_call(["ls"])]})
    assert chat["tool_stream"] is True and "stream_options" not in chat and "max_tokens" in chat
    assert all("strict" not in t["function"] for t in chat.get("tools", []))
    assert outputs(resp, "function_call")


def test_kimi_k3_cannot_stop_thinking():
    c = Conv("kimi", thinking=False)
    chat, turn = c.chat(c.body([user("hi")], reasoning={"effort": "none"}))
    assert turn.thinking and chat["thinking"] == {"type": "enabled"} and chat["reasoning_effort"] == "low"
    c.upstream(chat)
    c.model = "kimi-k2.6"
    chat, turn = c.chat(c.body([user("hi")], reasoning={"effort": "high"}))
    assert not turn.thinking and chat["thinking"] == {"type": "disabled"} and "reasoning_effort" not in chat


# ----------------------------------------------------------------------------------------------
# One real mitmdump per provider


@pytest.mark.parametrize("name", PROVIDERS)
def test_proxy_run(name, tmp_path):
    """mitmdump -s addon/mimo.py --set mimo_rules=NAME in front of the provider's fake: a tool turn, then its follow-up."""
    r = rules.load(name)
    key = providers.default_key(name) or "any-local-key"
    log = tmp_path / "mitmdump.log"
    with providers.fake_server(name).start() as fake:
        fake.queue({"reasoning": "Let me look.", "tool_calls": [shell_call(["ls"])]},
                   {"reasoning": "Got it.", "text": f"{name} says hi"})
        with _proxy(fake, name, {r.auth_env: key}, log) as proxy:
            c = Conv(name)
            items = [user("look around")]
            resp1 = _post(proxy.url + "/v1/responses", c.body(items))
            assert resp1["status"] == "completed", (resp1, proxy.log()[-3000:])
            resp2 = _post(proxy.url + "/v1/responses", c.body(_turn_two(c, items, resp1)))
            assert resp2["status"] == "completed" and text_of(resp2) == f"{name} says hi", (resp2, proxy.log()[-3000:])
        first, second = fake.chat_requests[-2:]
        assert first.body["model"] == r.default_model and second.body["messages"][-1]["role"] == "tool"


def _proxy(fake, name: str, env: dict, log: Path):
    """The README's mitmdump recipe. (proxyproc.start derives the reverse target from a /v1 base URL;
    GLM's /api/paas/v4 or Qwen's /compatible-mode/v1 need the origin and the full base URL apart.)"""
    import subprocess
    import sys

    from mimo2codex import proxyproc

    port = proxyproc.free_port()
    proxyproc.CONFDIR.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-c", proxyproc.MITMDUMP, "-s", str(proxyproc.ADDON), "--mode", f"reverse:{fake.url}@127.0.0.1:{port}",
            "--set", "connection_strategy=lazy", "--set", f"confdir={proxyproc.CONFDIR}", "--set", f"mimo_rules={name}",
            "--set", f"mimo_base_url={fake.base_url}", "--set", "mimo_verbose=true"]
    child_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    child_env.update(env)
    proc = subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env,
                            start_new_session=True, cwd=str(proxyproc.ROOT))
    proxy = proxyproc.Proxy(proc, port, log)
    try:
        proxyproc.wait_port(port, proc)
    except Exception:
        proxy.stop()
        raise
    return proxy


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json",
                                                                  "authorization": "Bearer mimo2codex-local"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return sse_events(r.read())[-1]["response"]
