"""Proves the Codex harness (tests/support/codex_cli.py) against a scripted Responses server,
so that e2e failures later point at the proxy, not at the harness.

Each test runs the real `codex exec` (pinned in codex_cli.CODEX_VERSION); skipped with the reason
when node/npm are missing or the npm install fails.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.support import responses_server as rs
from tests.support.codex_cli import (
    CODEX_VERSION,
    DUMMY_KEY,
    ensure_codex,
    mimo_catalog,
    native_binary,
    require_codex,
    run_codex,
)

pytestmark = pytest.mark.codex

SAMPLES = Path(__file__).resolve().parent / "fixtures" / "codex"  # copies of the contract samples
# Failure scenarios must not sit through Codex's default retry loops.
FAST = dict(stream_max_retries=0, request_max_retries=0, stream_idle_timeout_ms=5000)


@pytest.fixture(scope="module", autouse=True)
def _codex():
    return require_codex()


@pytest.fixture
def server():
    with rs.ResponsesServer() as srv:
        yield srv


def test_install_is_pinned_idempotent_and_ships_the_native_binary():
    entry = ensure_codex()
    pkg = json.loads((entry.parent.parent / "package.json").read_text())
    assert pkg["version"] == CODEX_VERSION
    assert os.access(native_binary(), os.X_OK)
    t = time.monotonic()
    assert ensure_codex() == entry  # second call: nothing to do
    assert time.monotonic() - t < 1


def test_plain_text_answer(server, tmp_path):
    server.queue(rs.text("Hello from the harness", reasoning="thinking briefly"))
    r = run_codex(server.base_url, "say hello", workdir=tmp_path, timeout=30)
    assert r.returncode == 0, r
    assert r.final_message == "Hello from the harness", r
    assert [i["text"] for i in r.items("reasoning")] == ["thinking briefly"]
    assert r.usage["input_tokens"] == 100 and r.usage["output_tokens"] == 20
    assert r.usage["cached_input_tokens"] == 10 and r.usage["reasoning_output_tokens"] == 5
    # exactly one model call and nothing else (no /models fetch)
    assert [(q.method, q.path) for q in server.requests] == [("POST", "/v1/responses")]
    req = server.requests[0]
    assert req.body["model"] == "mimo-v2.5-pro" and req.body["stream"] is True
    assert req.input_items("message")[-1]["content"][0]["text"] == "say hello"
    # stdin was /dev/null: no <stdin> block appended to the prompt
    assert "<stdin>" not in json.dumps(req.input_items("message")[-1])


def test_authorization_is_the_dummy_env_key_value(server, tmp_path, monkeypatch):
    # A real key in the caller's shell must never be what Codex sends.
    monkeypatch.setenv("MIMO_API_KEY", "sk-real-should-not-leak")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-should-not-leak")
    server.queue(rs.text("ok"))
    r = run_codex(server.base_url, "hi", workdir=tmp_path, timeout=30, env_key_value="dummy-123")
    assert r.returncode == 0, r
    assert server.requests[0].header("authorization") == "Bearer dummy-123"
    assert "sk-real" not in json.dumps(server.requests[0].headers)
    assert DUMMY_KEY == "codex-local-dummy"


def test_replayed_contract_sample_stream(server, tmp_path):
    sample = SAMPLES / "sse_example_reasoning_text.txt"
    if not sample.exists():
        pytest.skip(f"contract sample not present: {sample}")
    server.queue(rs.raw_sse(sample.read_text()))
    r = run_codex(server.base_url, "hi", workdir=tmp_path, timeout=30)
    assert r.returncode == 0, r
    assert r.final_message == "Hello!"


def test_exec_command_round_trip(server, tmp_path):
    server.queue(
        rs.response(rs.reasoning_item("need a shell", encrypted="enc-1", item_id="rs_a"),
                    rs.function_call_item("exec_command", {"cmd": "echo harness-ok"},
                                          call_id="call_x1")),
        rs.text("the command printed harness-ok"),
    )
    r = run_codex(server.base_url, "run echo", workdir=tmp_path, timeout=30)
    assert r.returncode == 0, r
    assert r.final_message == "the command printed harness-ok"
    [cmd] = r.items("command_execution")
    assert "echo harness-ok" in cmd["command"] and cmd["exit_code"] == 0
    assert "harness-ok" in cmd["aggregated_output"]
    assert len(server.requests) == 2
    second = server.requests[1]
    [echoed] = second.input_items("function_call")
    assert echoed["call_id"] == "call_x1" and echoed["name"] == "exec_command"
    [out] = second.input_items("function_call_output")
    assert out["call_id"] == "call_x1" and "harness-ok" in out["output"]
    # the reasoning item comes back whole: the channel a stateless proxy uses for pass-back
    [reasoning] = second.input_items("reasoning")
    assert reasoning["id"] == "rs_a" and reasoning["encrypted_content"] == "enc-1"
    assert r.still_running() == []


def test_resume_last_sends_the_earlier_turn(server, tmp_path):
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    server.queue(rs.text("first answer", reasoning="turn one thoughts"), rs.text("second answer"))
    r1 = run_codex(server.base_url, "first", workdir=work, home=home, ephemeral=False, timeout=30)
    r2 = run_codex(server.base_url, "second", workdir=work, home=home, ephemeral=False,
                   resume_last=True, timeout=30)
    assert (r1.returncode, r2.returncode) == (0, 0), (r1, r2)
    assert r2.final_message == "second answer"
    second = server.requests[1]
    assert [i["summary"][0]["text"] for i in second.input_items("reasoning")] == ["turn one thoughts"]
    texts = [c.get("text") for m in second.input_items("message") for c in m["content"]]
    assert texts[-3:] == ["first", "first answer", "second"]


def test_apply_patch_custom_tool_creates_file(server, tmp_path):
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello from apply_patch\n*** End Patch\n"
    server.queue(
        rs.response(rs.custom_tool_call_item("apply_patch", patch, call_id="call_p1")),
        rs.text("file created"),
    )
    r = run_codex(server.base_url, "create hello.txt", workdir=tmp_path, catalog=True,
                  sandbox="workspace-write", timeout=30)
    assert r.returncode == 0, r
    assert (tmp_path / "hello.txt").read_text() == "hello from apply_patch\n"
    assert r.final_message == "file created"
    [change] = r.items("file_change")
    assert change["changes"][0]["kind"] == "add"
    assert change["changes"][0]["path"].endswith("hello.txt")
    # the catalog is what makes Codex offer the freeform tool
    [tool] = [t for t in server.requests[0].body["tools"] if t.get("name") == "apply_patch"]
    assert tool["type"] == "custom" and tool["format"]["syntax"] == "lark"
    [out] = server.requests[1].input_items("custom_tool_call_output")
    assert out["call_id"] == "call_p1" and "A hello.txt" in out["output"]


def test_builtin_catalog_matches_contract_sample():
    sample = SAMPLES / "model_catalog_mimo.json"
    if not sample.exists():
        pytest.skip(f"contract sample not present: {sample}")
    want = json.loads(sample.read_text())["models"][0]
    have = mimo_catalog()["models"][0]
    assert set(have) == set(want)
    for key in ("slug", "apply_patch_tool_type", "shell_type", "default_reasoning_level",
                "default_reasoning_summary", "supports_parallel_tool_calls"):
        assert have[key] == want[key]


def test_response_failed_invalid_prompt_fails_once_with_message(server, tmp_path):
    server.queue(rs.failed("invalid_prompt", "upstream says: prompt rejected"))
    r = run_codex(server.base_url, "hi", workdir=tmp_path, timeout=30)
    assert r.returncode == 1, r
    assert r.turn_failed
    assert "upstream says: prompt rejected" in r.error_messages, r
    assert len(server.requests) == 1  # invalid_prompt is not retried


def test_timeout_kills_the_process_tree(server, tmp_path):
    # Stream opens, then silence: only our wall-clock timeout ends the run.
    server.queue(dict(rs.response(rs.message_item("partial"), end="none"), hang=30))
    t = time.monotonic()
    r = run_codex(server.base_url, "hi", workdir=tmp_path, timeout=3,
                  stream_idle_timeout_ms=60_000)
    assert r.timed_out and r.returncode != 0
    assert time.monotonic() - t < 10
    assert r.still_running() == [], "Codex processes left behind"


def test_low_retry_settings_make_failures_fast(server, tmp_path):
    # A stream that ends without a terminal event is a retryable drop (contract table 4);
    # with the provider's stream_max_retries=0 Codex gives up after the first attempt.
    server.queue(rs.response(rs.message_item("partial"), end="none"))
    r = run_codex(server.base_url, "hi", workdir=tmp_path, timeout=30, **FAST)
    assert r.returncode == 1, r
    assert len(server.requests) == 1
    assert any("stream closed before response.completed" in m for m in r.error_messages), r
    assert r.duration < 5
