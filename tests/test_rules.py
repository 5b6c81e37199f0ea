"""The rules language: the loader's errors (file, line, key), every shipped file, the built-in hooks
behind the declarative keys, a provider written only for this test working end to end, and rules
reloading while the proxy runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from mimo2codex.translate import errors, hooks, request, rules
from mimo2codex.fakes.chat_server import FakeError, ModelInfo
from mimo2codex.fakes.providers import StrictProfile
from mimo2codex.translate.stream import ResponsesStream

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = """\
provider: acme
name: Acme AI
base_url: http://127.0.0.1:9/v1
auth:
  env: ACME_API_KEY
models:
  default: acme-1
  list:
    - {id: acme-1, context: 32768, max_output: 4096, vision: false, thinking: true, efforts: [low, high]}
"""


def write(tmp_path: Path, text: str, name: str = "acme.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def load_error(tmp_path: Path, text: str) -> rules.RulesError:
    with pytest.raises(rules.RulesError) as e:
        rules.load(write(tmp_path, text))
    return e.value


# ----------------------------------------------------------------------------------------------
# Loader


@pytest.mark.parametrize("name", rules.provider_names())
def test_every_shipped_rules_file_loads(name):
    r = rules.load(name)
    assert r.provider == name and r.default_model in r.models
    assert r.auth_env.endswith("_API_KEY")
    assert r.base_url.startswith(("https://", "http://127.0.0.1"))
    text = (rules.RULES_DIR / f"{name}.yaml").read_text()
    if name != "mimo":
        assert "https://" in text.split("provider:")[0], f"{name}.yaml must cite its sources before the first key"


def test_minimal_file_gets_everything_else_from_defaults(tmp_path):
    r = rules.load(write(tmp_path, MINIMAL))
    assert r.name == "Acme AI" and r.chat_url() == "http://127.0.0.1:9/v1/chat/completions"
    assert r.auth_header == "Authorization" and r.auth_value("k") == "Bearer k"
    assert r.hooks == {"request": (), "chunk": ()} and r.fallback is None and r.drop == ()


@pytest.mark.parametrize("text,line,key,reason", [
    (MINIMAL + "colour: blue\n", 10, "colour", "unknown key"),
    (MINIMAL.replace("context: 32768", "context: big"), 9, "models.list[0].context", "must be an integer"),
    (MINIMAL.replace("thinking: true", "thinking: sometimes"), 9, "models.list[0].thinking", "must be true/false or one of always"),
    (MINIMAL + "reasoning:\n  pass_back: maybe\n", 11, "reasoning.pass_back", "must be one of all, tool_calls, none"),
    (MINIMAL + "models:\n  strip_suffix: '(['\n", None, "", "not valid YAML"),
    (MINIMAL.replace("models:\n", "models:\n  strip_suffix: '(['\n"), 7, "models.strip_suffix", "invalid regular expression"),
    (MINIMAL + "drop: [stream options]\n", 10, "drop[0]", "is not a path"),
    (MINIMAL + "hooks:\n  chunk: [no_such_hook]\n", 11, "hooks.chunk", "unknown hook 'no_such_hook'"),
    (MINIMAL + "reasoning:\n  think_tags: ['<think>']\n", 11, "reasoning.think_tags", "must be [opening tag, closing tag]"),
    (MINIMAL + "reasoning:\n  pass_back_as: think_tags\n", 11, "reasoning.pass_back_as", "needs reasoning.think_tags"),
    (MINIMAL + "retry:\n  attempts: -1\n", 11, "retry.attempts", "must be >= 0"),
    (MINIMAL + "response:\n  finish_reasons: {done: finished}\n", 11, "response.finish_reasons.done", "must be one of stop"),
    (MINIMAL.replace("default: acme-1", "default: acme-2"), 7, "models.default", "'acme-2' is not in models.list"),
    (MINIMAL + "  aliases: {old: acme-0}\n", 10, "models.aliases.old", "points to unknown model 'acme-0'"),
    (MINIMAL + "  fallback: {context: 1, max_output: 1, vision: true, thinking: true}\n", None, "models.fallback.efforts", "missing"),
    ("name: x\n", None, "provider", "missing"),
    ("- just\n- a list\n", 1, "", "mapping at the top level"),
])
def test_errors_name_file_line_and_key(tmp_path, text, line, key, reason):
    e = load_error(tmp_path, text)
    assert e.path.endswith("acme.yaml") and e.key == key and reason in e.reason, str(e)
    if line is not None:
        assert e.line == line, str(e)
    assert str(e).startswith(f"{e.path}:{e.line}: " if e.line else f"{e.path}: ")


def test_duplicate_key_names_its_line(tmp_path):
    e = load_error(tmp_path, MINIMAL + "name: Acme again\n")
    assert e.line == 10 and "duplicate key 'name'" in e.reason, str(e)


def test_yaml_1_2_booleans_only(tmp_path):
    """`no`/`on`/`yes` are strings (YAML 1.2, as before PyYAML), only true/false are booleans."""
    r = rules.load(write(tmp_path, MINIMAL.replace("name: Acme AI", "name: no").replace("acme-1", "on")))
    assert r.name == "no" and r.default_model == "on" and r.models["on"].thinking is True


def test_built_in_hook_names_are_reserved(tmp_path):
    r = rules.load("minimax")
    builtin = next(n for n in r.hooks["request"] if n.startswith("@"))
    e = load_error(tmp_path, MINIMAL + f"hooks:\n  request: ['{builtin}']\n")
    assert e.key == "hooks.request" and "unknown hook" in e.reason and "@" not in e.reason.split("known:")[1]


def test_provider_name_or_path(tmp_path):
    assert rules.resolve_path("glm") == rules.RULES_DIR / "glm.yaml"
    assert rules.resolve_path(str(tmp_path / "x.yaml")) == tmp_path / "x.yaml"
    with pytest.raises(rules.RulesError, match="no such rules file"):
        rules.load(tmp_path / "missing.yaml")


def test_a_directory_or_binary_file_is_a_rules_error_not_a_traceback(tmp_path):
    with pytest.raises(rules.RulesError, match="cannot read it"):
        rules.load(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(rules.RulesError, match="not UTF-8 text"):
        rules.load(tmp_path / "bin.yaml")


def test_check_rules_command(tmp_path):
    bad = write(tmp_path, MINIMAL + "colour: blue\n", "bad.yaml")
    launch = [sys.executable, str(ROOT / "launch.py"), "check-rules"]
    ok = subprocess.run(launch, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert all(f"{n}.yaml" in ok.stdout for n in rules.provider_names())
    fail = subprocess.run(launch + [str(bad), "deepseek"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert fail.returncode == 1
    assert f"FAIL {bad}:10: colour: unknown key" in fail.stdout and "ok   " in fail.stdout


# ----------------------------------------------------------------------------------------------
# Built-in hooks behind declarative keys


def run_request_hooks(r: rules.Rules, chat: dict) -> dict:
    for name in r.hooks["request"]:
        hooks.REGISTRY["request"][name](chat, None, r)
    return chat


def run_chunk_hooks(r: rules.Rules, chunks: list[dict]) -> list[dict]:
    state: dict = {}
    out = []
    for c in chunks:
        for name in r.hooks["chunk"]:
            c = hooks.REGISTRY["chunk"][name](c, state)
            if c is None:
                break
        else:
            out.append(c)
    return out


def test_drop_paths(tmp_path):
    r = rules.load(write(tmp_path, MINIMAL + "drop: [stream_options, 'tools[].function.strict', a.b.c, 'missing[].x']\n"))
    chat = {"stream_options": {}, "tools": [{"function": {"name": "f", "strict": True}}, {"function": {"name": "g"}}],
            "a": {"b": {"c": 1, "d": 2}}, "keep": 1}
    assert run_request_hooks(r, chat) == {"tools": [{"function": {"name": "f"}}, {"function": {"name": "g"}}],
                                          "a": {"b": {"d": 2}}, "keep": 1}


def test_merge_system_messages(tmp_path):
    r = rules.load(write(tmp_path, MINIMAL + "messages:\n  system: merge\n"))
    chat = {"messages": [{"role": "system", "content": "A"}, {"role": "user", "content": "u"},
                         {"role": "system", "content": [{"type": "text", "text": "B"}]}, {"role": "assistant", "content": "x"}]}
    assert run_request_hooks(r, chat)["messages"] == [{"role": "system", "content": "A\n\nB"}, {"role": "user", "content": "u"},
                                                       {"role": "assistant", "content": "x"}]
    one = {"messages": [{"role": "system", "content": "A"}, {"role": "user", "content": "u"}]}
    assert run_request_hooks(r, json.loads(json.dumps(one))) == one


def test_pass_back_as(tmp_path):
    tags = MINIMAL + "reasoning:\n  think_tags: ['<t>', '</t>']\n  pass_back_as: think_tags\n"
    r = rules.load(write(tmp_path, tags))
    chat = {"messages": [{"role": "assistant", "reasoning_content": "why", "tool_calls": []}, {"role": "assistant", "content": "a"}]}
    assert run_request_hooks(r, chat)["messages"] == [{"role": "assistant", "content": "<t>why</t>\n\n", "tool_calls": []},
                                                       {"role": "assistant", "content": "a"}]
    r = rules.load(write(tmp_path, MINIMAL + "reasoning:\n  pass_back_as: reasoning_details\n  pass_back_field: reasoning\n"))
    chat = {"messages": [{"role": "assistant", "content": "a", "reasoning": "why"}]}
    assert run_request_hooks(r, chat)["messages"][0]["reasoning_details"] == [
        {"type": "reasoning.text", "text": "why", "format": "unknown", "index": 0}]


def _delta_chunks(pieces: list[str], finish: str = "stop") -> list[dict]:
    out = [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    return out + [{"choices": [{"index": 0, "delta": {"content": None}, "finish_reason": finish}]}]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 100])
def test_think_tags_split_anywhere(tmp_path, size):
    r = rules.load(write(tmp_path, MINIMAL + "reasoning:\n  think_tags: ['<think>', '</think>']\n  fields: [reasoning_content]\n"))
    text = "\n<think>\nstep 1 < 2\nstep </thin 2\n</think>\n\nThe <think> answer"
    chunks = run_chunk_hooks(r, _delta_chunks([text[i:i + size] for i in range(0, len(text), size)]))
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks)
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert reasoning == "step 1 < 2\nstep </thin 2" and content == "The <think> answer"


def test_think_tags_only_at_the_start_and_in_whole_messages(tmp_path):
    r = rules.load(write(tmp_path, MINIMAL + "reasoning:\n  think_tags: ['<think>', '</think>']\n"))
    plain = run_chunk_hooks(r, _delta_chunks(["Use <think>", " tags"]))
    assert "".join(c["choices"][0]["delta"]["content"] or "" for c in plain) == "Use <think> tags"
    short = run_chunk_hooks(r, _delta_chunks(["<"]))  # held back as a possible tag, flushed at the finish
    assert "".join(c["choices"][0]["delta"]["content"] or "" for c in short) == "<"
    whole = run_chunk_hooks(r, [{"choices": [{"index": 0, "message": {"content": "<think>r</think>\nA"}, "finish_reason": "stop"}]}])
    assert whole[0]["choices"][0]["message"] == {"content": "A", "reasoning_content": "r"}


def test_usage_moves_and_counts_are_found(tmp_path):
    r = rules.load(write(tmp_path, MINIMAL + "response:\n  usage:\n    cached_tokens: [cached_tokens, x.hits]\n"
                                             "    reasoning_tokens: [thinking_tokens]\n"))
    chunk = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop",
                          "usage": {"prompt_tokens": 5, "x": {"hits": 3}, "thinking_tokens": 2, "prompt_tokens_details": None}}]}
    (out,) = run_chunk_hooks(r, [chunk])
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 3}
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 2}
    kept = {"usage": {"prompt_tokens_details": {"cached_tokens": 7}, "cached_tokens": 1}}
    assert run_chunk_hooks(r, [kept])[0]["usage"]["prompt_tokens_details"] == {"cached_tokens": 7}


def test_finish_reasons(tmp_path):
    r = rules.load(write(tmp_path, MINIMAL + "response:\n  finish_reasons: {done: stop, cut: length, boom: error}\n"))
    assert run_chunk_hooks(r, _delta_chunks([], "done"))[-1]["choices"][0]["finish_reason"] == "stop"
    assert run_chunk_hooks(r, _delta_chunks([], "cut"))[-1]["choices"][0]["finish_reason"] == "length"
    assert run_chunk_hooks(r, _delta_chunks([], "boom"))[-1]["error"]["code"] == "boom"
    assert run_chunk_hooks(r, _delta_chunks([], "stop"))[-1]["choices"][0]["finish_reason"] == "stop"


def test_named_hooks():
    base = {"id": "x", "choices": None, "base_resp": {"status_code": 1008, "status_msg": "insufficient balance"}}
    assert hooks.REGISTRY["chunk"]["minimax_base_resp"](base, {})["error"]["code"] == "1008"
    ok = {"choices": [], "base_resp": {"status_code": 0, "status_msg": ""}}
    assert hooks.REGISTRY["chunk"]["minimax_base_resp"](ok, {}) is ok
    details = {"choices": [{"delta": {"reasoning_details": [{"type": "reasoning.summary", "summary": "S"},
                                                            {"type": "reasoning.encrypted", "data": "xx"}]}}]}
    assert hooks.REGISTRY["chunk"]["reasoning_details_text"](details, {})["choices"][0]["delta"]["reasoning"] == "S"


def test_same_settings_share_one_built_in_hook(tmp_path):
    a = rules.load(write(tmp_path, MINIMAL + "drop: [x]\n", "a.yaml"))
    b = rules.load(write(tmp_path, MINIMAL + "drop: [x]\n", "b.yaml"))
    c = rules.load(write(tmp_path, MINIMAL + "drop: [y]\n", "c.yaml"))
    assert a.hooks == b.hooks != c.hooks


# ----------------------------------------------------------------------------------------------
# A provider that exists only in this test: one YAML file, no change to the translator

ACME = MINIMAL.replace("auth:\n  env: ACME_API_KEY\n", "auth:\n  env: ACME_API_KEY\n  header: X-Acme-Key\n  scheme: ''\n") + """\
reasoning:
  enable: {think: true}
  disable: {think: false}
  effort_field: options.effort
  fields: [thoughts]
  pass_back: tool_calls
  pass_back_field: thoughts
params:
  max_output_tokens: {to: max_tokens, clamp: max_output, default: max_output}
  parallel_tool_calls: {to: null}
  tool_choice: {to: null}
  text.format: {to: null}
messages:
  system: merge
drop:
  - stream_options
  - tools[].function.strict
response:
  usage:
    cached_tokens: [cache_hits]
  finish_reasons: {done: stop, calls: tool_calls}
errors:
  - status: 418
    code: rate_limit_exceeded
    retry: true
    message: "Acme is brewing: {detail}. Please try again in {retry_after}s."
  - status: 400
    match: 'ACME-TOO-LONG'
    code: context_length_exceeded
  - status: [400, 404]
    code: invalid_prompt
  - code: server_error
"""


class AcmeProfile(StrictProfile):
    """Acme's quirks: its own field names everywhere, one system message, strict about everything else."""

    name = "acme"
    base_path = "/v1"
    models = {"acme-1": ModelInfo("acme-1", 32768, 4096, frozenset({"text"}), True, ("low", "high"), None, False, "acme")}
    reasoning_field = "thoughts"
    passback = "tool_calls"
    finish_reasons = ("done", "calls", "length")
    message_keys = ("role", "content", "tool_calls", "tool_call_id", "thoughts")
    tool_function_keys = ("name", "description", "parameters")
    allowed_fields = frozenset({"model", "messages", "stream", "think", "options", "max_tokens", "tools", "temperature", "top_p"})

    def presented_key(self, headers):
        return headers.get("X-Acme-Key")

    def check_params(self, body, info):
        if not isinstance(body.get("think"), bool):
            raise self.bad("bad_type", field="think", expected="Input should be a valid boolean")
        opts = body.get("options", {})
        if set(opts) - {"effort"} or opts.get("effort", "low") not in info.efforts:
            raise self.bad("bad_type", field="options", expected="{effort: low|high}")
        return super().check_params(body, info)

    def check_message_shapes(self, messages):
        super().check_message_shapes(messages)
        if [m["role"] for m in messages].count("system") > 1:
            raise self.bad("bad_type", field="messages", expected="one system message")

    def resolve_thinking(self, body, info):
        return body["think"]

    def stream_events(self, turn, reply):
        def acme(chunk):
            choice = (chunk.get("choices") or [{}])[0]
            if choice.get("finish_reason"):
                choice["finish_reason"] = {"stop": "done", "tool_calls": "calls"}.get(choice["finish_reason"], choice["finish_reason"])
                chunk["usage"] = {"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57, "cache_hits": 20}
            return [chunk]

        return self.rewrite(super().stream_events(turn, reply), acme)


def _events(data: bytes) -> list[dict]:
    return [json.loads(line[6:]) for block in data.decode().split("\n\n") for line in block.splitlines() if line.startswith("data: ")]


def test_a_provider_written_only_for_this_test_works_end_to_end(tmp_path):
    r = rules.load(write(tmp_path, ACME))
    fake = AcmeProfile(keys=("acme-key",))
    tools = [{"type": "function", "name": "run", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
              "strict": True}]

    def turn(items, spec):
        body = {"model": "acme-1", "instructions": "You are Codex.", "input": items, "tools": tools, "tool_choice": "auto",
                "parallel_tool_calls": True, "reasoning": {"effort": "medium"}, "stream": True}
        chat, t = request.to_chat(body, r)
        raw = json.dumps(chat).encode()
        ft = fake.validate(json.loads(raw), len(raw))
        out_stream = ResponsesStream(t, r)
        raw_sse = b"".join(fake.stream_events(ft, fake.make_reply(spec)))
        out = b"".join(out_stream.feed(raw_sse[i:i + 5]) for i in range(0, len(raw_sse), 5)) + out_stream.finish()
        return chat, _events(out)[-1]["response"]

    dev = {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be brief"}]}
    items = [dev, {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]}]
    chat1, resp1 = turn(items, {"reasoning": "plan", "tool_calls": [{"name": "run", "arguments": {"cmd": "ls"}}]})
    assert chat1["think"] is True and chat1["options"] == {"effort": "high"} and chat1["max_tokens"] == 4096
    assert "stream_options" not in chat1 and "strict" not in chat1["tools"][0]["function"]
    assert resp1["status"] == "completed" and resp1["usage"]["input_tokens_details"]["cached_tokens"] == 20
    call = next(o for o in resp1["output"] if o["type"] == "function_call")
    items2 = items + [o for o in resp1["output"]] + [{"type": "function_call_output", "call_id": call["call_id"], "output": "a b"}]
    chat2, resp2 = turn(items2, {"reasoning": "done", "text": "Files: a b"})
    assert next(m for m in chat2["messages"] if m["role"] == "assistant")["thoughts"] == "plan"
    assert resp2["status"] == "completed" and resp2["output"][-1]["content"][0]["text"] == "Files: a b"
    # Errors as Acme sends them, mapped by the file's own rules.
    for status, body, code in ((418, {"error": {"message": "teapot"}}, "rate_limit_exceeded"),
                               (400, {"error": {"message": "ACME-TOO-LONG"}}, "context_length_exceeded"),
                               (404, {"error": {"message": "nope"}}, "invalid_prompt")):
        assert errors.map_upstream(r, status, json.dumps(body).encode(), {"retry-after": "3"}).code == code
    with pytest.raises(FakeError):  # the fake is strict: a second system message is refused
        fake.validate({"model": "acme-1", "think": False, "messages": [{"role": "system", "content": "a"},
                                                                      {"role": "system", "content": "b"}]}, 10)


# ----------------------------------------------------------------------------------------------
# Reloading while the proxy runs


def test_rules_watch_reloads_valid_edits_only(tmp_path, caplog):
    from mitmproxy.test import taddons

    from addon.mimo import MimoTranslate
    from addon.rules_watch import RulesWatch

    path = write(tmp_path, MINIMAL)
    translate, watch = MimoTranslate(), RulesWatch()
    with taddons.context(translate, watch) as tctx:
        tctx.configure(translate, mimo_rules=str(path))
        first = translate.rules
        assert first.name == "Acme AI" and watch.check() is False
        stream = ResponsesStream(request.to_chat({"model": "acme-1", "input": "hi"}, first)[1], first)
        path.write_text(MINIMAL.replace("Acme AI", "Acme AI 2"))
        assert watch.check() is True and translate.rules.name == "Acme AI 2"
        assert stream.rules is first  # a stream in flight keeps the rules it started with
        path.write_text(MINIMAL + "colour: blue\n")
        assert watch.check() is False and translate.rules.name == "Acme AI 2"
        assert f"{path}:10: colour: unknown key" in caplog.text
        path.write_text(MINIMAL.replace("Acme AI", "Acme AI 3"))
        assert watch.check() is True and translate.rules.name == "Acme AI 3"
        with pytest.raises(Exception):
            tctx.configure(watch, mimo_rules_watch=-1)


def test_proxy_reloads_rules_without_dropping_a_stream(tmp_path):
    """Real mitmdump: the rules file changes while an answer streams; that answer completes, the next
    request and /v1/models see the new rules."""
    from mimo2codex.fakes import providers
    from tests.test_providers import _proxy, sse_events

    path = tmp_path / "my-local.yaml"
    local = (rules.RULES_DIR / "local.yaml").read_text()
    path.write_text(local)
    with providers.fake_server("local").start() as fake:
        fake.queue({"text": "slow " * 12, "chunk_delay": 0.1}, {"text": "after"})
        with _proxy(fake, str(path), {"LOCAL_API_KEY": "k"}, tmp_path / "px.log") as proxy:
            result: dict = {}

            def slow():
                req = urllib.request.Request(proxy.url + "/v1/responses", json.dumps(
                    {"model": "qwen3-coder:30b", "input": "hi", "stream": True}).encode(), {"content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    result["events"] = sse_events(resp.read())

            t = threading.Thread(target=slow)
            t.start()
            time.sleep(0.4)
            path.write_text(local.replace("- {id: qwen3-coder:30b", "- {id: brand-new:1b, context: 1000, max_output: 0, vision: false, "
                                                                    "thinking: false, efforts: []}\n    - {id: qwen3-coder:30b"))
            t.join(30)
            final = result["events"][-1]["response"]
            assert final["status"] == "completed" and final["output"][-1]["content"][0]["text"] == "slow " * 12
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with urllib.request.urlopen(proxy.url + "/v1/models", timeout=5) as resp:
                    ids = [m["id"] for m in json.loads(resp.read())["data"]]
                if "brand-new:1b" in ids:
                    break
                time.sleep(0.2)
            assert "brand-new:1b" in ids, proxy.log()[-2000:]
            assert "rules reloaded" in proxy.log()
