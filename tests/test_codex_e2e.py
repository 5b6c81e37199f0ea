"""End to end: the real Codex CLI -> the real proxy (mitmdump -s addon/mimo.py) -> the strict fake MiMo.

Each test asserts both ends: what the user sees (final message, file on disk, exit code, error
text) and what MiMo received (`fake.requests`). Codex is driven by tests/support/codex_cli.py
(skipped with the reason when node/npm are unavailable); the proxy process comes from
mimo2codex.proxyproc. One proxy and one fake serve the whole module; the fake is reset per test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mimo2codex import proxyproc
from mimo2codex.fakes.mimo import FakeMimo
from tests.support.codex_cli import DUMMY_KEY, ROOT, require_codex, run_codex

pytestmark = [pytest.mark.codex, pytest.mark.e2e]

KEY = "sk-test"
MODEL = "mimo-v2.5-pro"


@pytest.fixture(scope="module", autouse=True)
def _codex():
    return require_codex()


@pytest.fixture(scope="module")
def fake():
    with FakeMimo(keys=(KEY,)).start() as f:
        yield f


@pytest.fixture(scope="module")
def proxy(fake, tmp_path_factory):
    log = tmp_path_factory.mktemp("proxy") / "mitmdump.log"
    with proxyproc.start(fake.base_url, key=KEY, log_path=log) as px:
        yield px


@pytest.fixture
def mimo(fake, proxy):
    fake.reset()
    yield fake


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """The catalog the product itself writes (`launch.py print-config --catalog FILE`)."""
    from mimo2codex.cli import client_config
    from mimo2codex.translate import rules

    path = tmp_path_factory.mktemp("catalog") / "catalog.json"
    path.write_text(json.dumps(client_config.model_catalog(rules.load("mimo"))))
    return path


class E2E:
    """run_codex against the proxy, with the proxy's log attached to every assertion message."""

    def __init__(self, proxy, fake, workdir: Path):
        self.proxy, self.fake, self.workdir = proxy, fake, workdir

    def run(self, prompt: str, **kw):
        kw.setdefault("timeout", 60)
        kw.setdefault("workdir", self.workdir)
        self.log_mark = len(self.proxy.log())
        return run_codex(self.proxy.base_url, prompt, **kw)

    def why(self, result) -> str:
        reqs = [(r.path, r.status, (r.error or "")) for r in self.fake.requests]
        return f"{result}\n--- fake MiMo requests ---\n{reqs}\n--- proxy log ---\n{self.proxy.log()[self.log_mark:][-4000:]}"

    @property
    def chats(self):
        return self.fake.chat_requests


@pytest.fixture
def e2e(proxy, mimo, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    return E2E(proxy, mimo, work)


def _assistant_msgs(body: dict) -> list[dict]:
    return [m for m in body["messages"] if m.get("role") == "assistant"]


def _tool_msgs(body: dict) -> list[dict]:
    return [m for m in body["messages"] if m.get("role") == "tool"]


# --------------------------------------------------------------------------------------------


def test_plain_answer(e2e):
    e2e.fake.queue({"text": "Hello from MiMo", "reasoning": "The user greets me."})
    r = e2e.run("say hello")
    assert r.returncode == 0, e2e.why(r)
    assert r.final_message == "Hello from MiMo", e2e.why(r)
    assert [i["text"] for i in r.items("reasoning")] == ["The user greets me."]
    assert r.usage and r.usage["output_tokens"] > 0
    [req] = e2e.chats
    assert req.status == 200 and req.completed
    assert req.body["model"] == MODEL and req.body["stream"] is True
    assert req.body["messages"][-1]["role"] == "user"
    assert "say hello" in json.dumps(req.body["messages"][-1])
    # The proxy swaps the key: MiMo sees the real one, never Codex's placeholder.
    assert req.headers.get("authorization") == f"Bearer {KEY}"
    assert DUMMY_KEY not in json.dumps(dict(req.headers)) and DUMMY_KEY.encode() not in req.raw
    assert KEY not in e2e.proxy.log() and DUMMY_KEY not in e2e.proxy.log()


def test_exec_command_round_trip(e2e):
    e2e.fake.queue(
        {"reasoning": "I should run echo.",
         "tool_calls": [{"name": "exec_command", "arguments": "{\"cmd\":\"echo hi-from-e2e\"}"}]},
        {"text": "The command printed hi-from-e2e."},
    )
    r = e2e.run("run echo")
    assert r.returncode == 0, e2e.why(r)
    assert r.final_message == "The command printed hi-from-e2e.", e2e.why(r)
    [cmd] = r.items("command_execution")
    assert "echo hi-from-e2e" in cmd["command"] and cmd["exit_code"] == 0
    assert "hi-from-e2e" in cmd["aggregated_output"]
    assert len(e2e.chats) == 2, e2e.why(r)
    second = e2e.chats[1].body
    [asst] = [m for m in _assistant_msgs(second) if m.get("tool_calls")]
    [call] = asst["tool_calls"]
    assert call["function"]["name"] == "exec_command"
    assert json.loads(call["function"]["arguments"]) == {"cmd": "echo hi-from-e2e"}
    [tool] = _tool_msgs(second)
    assert tool["tool_call_id"] == call["id"]
    assert "hi-from-e2e" in tool["content"]
    # pass-back: the tool-call turn carries its original reasoning
    assert asst.get("reasoning_content") == "I should run echo."


def test_apply_patch_creates_file(e2e, catalog):
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello from MiMo via apply_patch\n*** End Patch\n"
    e2e.fake.queue(
        {"tool_calls": [{"name": "apply_patch", "arguments": json.dumps({"input": patch})}]},
        {"text": "Created hello.txt."},
    )
    r = e2e.run("create hello.txt", catalog=catalog, sandbox="workspace-write")
    assert r.returncode == 0, e2e.why(r)
    assert (e2e.workdir / "hello.txt").read_text() == "hello from MiMo via apply_patch\n", e2e.why(r)
    assert r.final_message == "Created hello.txt."
    [change] = r.items("file_change")
    assert change["changes"][0]["kind"] == "add"
    first, second = (q.body for q in e2e.chats)
    # Codex's freeform tool reached MiMo as a function with one string parameter
    [tool] = [t for t in first["tools"] if t["function"]["name"] == "apply_patch"]
    assert tool["type"] == "function"
    assert tool["function"]["parameters"]["properties"]["input"]["type"] == "string"
    [tool_msg] = _tool_msgs(second)
    assert "hello.txt" in tool_msg["content"]
    [asst] = [m for m in _assistant_msgs(second) if m.get("tool_calls")]
    assert json.loads(asst["tool_calls"][0]["function"]["arguments"]) == {"input": patch}


def test_multi_turn_reasoning_pass_back(e2e, tmp_path):
    """Two user turns (`codex exec resume --last`): the second MiMo request carries turn 1's
    reasoning_content on the assistant message it belongs to."""
    home = tmp_path / "codex-home"
    e2e.fake.queue(
        {"text": "First answer.", "reasoning": "Turn one reasoning, verbatim."},
        {"text": "Second answer.", "reasoning": "Turn two reasoning."},
    )
    r1 = e2e.run("first question", home=home, ephemeral=False)
    assert r1.returncode == 0, e2e.why(r1)
    r2 = e2e.run("second question", home=home, ephemeral=False, resume_last=True)
    assert r2.returncode == 0, e2e.why(r2)
    assert (r1.final_message, r2.final_message) == ("First answer.", "Second answer.")
    assert len(e2e.chats) == 2
    second = e2e.chats[1].body
    asst = _assistant_msgs(second)
    assert [m.get("content") for m in asst] == ["First answer."], second["messages"][-3:]
    assert asst[0].get("reasoning_content") == "Turn one reasoning, verbatim."
    users = [m for m in second["messages"] if m.get("role") == "user"]
    assert "second question" in json.dumps(users[-1])


def test_parallel_tool_calls(e2e):
    e2e.fake.queue(
        {"reasoning": "Two independent commands.",
         "tool_calls": [{"name": "exec_command", "arguments": "{\"cmd\":\"echo alpha\"}"},
                        {"name": "exec_command", "arguments": "{\"cmd\":\"echo beta\"}"}]},
        {"text": "alpha and beta"},
    )
    r = e2e.run("run two commands")
    assert r.returncode == 0, e2e.why(r)
    assert r.final_message == "alpha and beta"
    outputs = sorted(c["aggregated_output"].strip().splitlines()[-1] for c in r.items("command_execution"))
    assert outputs == ["alpha", "beta"], e2e.why(r)
    assert e2e.chats[0].body.get("parallel_tool_calls") is True
    second = e2e.chats[1].body
    # one assistant message with both calls, then one tool message per call, in call order
    [asst] = [m for m in _assistant_msgs(second) if m.get("tool_calls")]
    ids = [c["id"] for c in asst["tool_calls"]]
    assert len(ids) == 2 and len(set(ids)) == 2
    tail = second["messages"][second["messages"].index(asst) + 1:]
    assert [m["role"] for m in tail] == ["tool", "tool"]
    assert [m["tool_call_id"] for m in tail] == ids
    assert "alpha" in tail[0]["content"] and "beta" in tail[1]["content"]
    assert asst.get("reasoning_content") == "Two independent commands."


def test_upstream_429_fails_with_rate_limit_message(e2e):
    e2e.fake.queue({"error": {"status": 429}, "repeat": -1})
    # request_max_retries = 1 as `launch.py print-config` recommends; no turn-level retries so
    # the test measures the proxy's own budget (the multiplied case is the test below).
    r = e2e.run("hi", request_max_retries=1, stream_max_retries=0, timeout=90)
    assert r.returncode == 1, e2e.why(r)
    assert r.turn_failed and r.final_message is None
    text = " ".join(r.error_messages).lower()
    assert "429" in text or "rate limit" in text, e2e.why(r)
    assert r.duration < 15, e2e.why(r)
    assert e2e.chats and all(q.status == 429 for q in e2e.chats)


def test_upstream_429_is_decided_once_not_multiplied_by_codex(e2e):
    e2e.fake.queue({"error": {"status": 429}, "repeat": -1})
    # one turn-level retry is enough to show the multiplication (Codex's default is 5)
    r = e2e.run("hi", request_max_retries=1, stream_max_retries=1, timeout=90)
    assert r.returncode == 1, e2e.why(r)
    assert not r.reconnects, e2e.why(r)
    # the proxy's own budget (rules retry.attempts = 2) plus the first attempt, once
    assert len(e2e.chats) <= 3, e2e.why(r)


def test_upstream_cut_mid_stream_is_a_failure_not_an_answer(e2e):
    e2e.fake.queue({"text": "This answer will be cut off somewhere in the middle.",
                    "reasoning": "thinking", "cut_after": 4, "repeat": -1})
    r = e2e.run("hi", stream_max_retries=1, request_max_retries=0, timeout=60)
    assert r.returncode == 1, e2e.why(r)
    assert r.turn_failed
    assert r.final_message != "This answer will be cut off somewhere in the middle."
    assert any("disconnected" in m or "stream" in m for m in r.error_messages), e2e.why(r)
    # Codex retried the turn once (stream_max_retries=1): two upstream attempts, both cut
    assert len(e2e.chats) == 2, e2e.why(r)
    assert not any(q.completed for q in e2e.chats)


def test_upstream_cut_once_then_recovered_by_codex_retry(e2e):
    e2e.fake.queue(
        {"text": "This answer will be cut off.", "cut_after": 3},
        {"text": "Recovered answer."},
    )
    r = e2e.run("hi", stream_max_retries=2, timeout=60)
    assert r.returncode == 0, e2e.why(r)
    assert r.final_message == "Recovered answer.", e2e.why(r)
    assert len(e2e.chats) == 2


def test_finish_reason_length_is_incomplete(e2e):
    e2e.fake.queue({"text": "A long answer that ran out of", "finish": "length"})
    r = e2e.run("write a long essay", timeout=60)
    assert r.returncode == 1, e2e.why(r)
    assert any("Incomplete response returned, reason: max_output_tokens" in m
               for m in r.error_messages), e2e.why(r)
    assert len(e2e.chats) == 1  # incomplete is not retried


def test_front_door_launch_py_with_print_config_catalog(fake, tmp_path):
    """The user's path: `python3 launch.py --port P --base-url ... --api-key K` and the catalog
    from `launch.py print-config --catalog FILE`, then Codex writes a file through it."""
    fake.reset()
    port = proxyproc.free_port()
    catalog = tmp_path / "catalog.json"
    env = {k: v for k, v in os.environ.items() if k != "MIMO_API_KEY"}
    subprocess.run([sys.executable, str(ROOT / "launch.py"), "print-config", "--catalog", str(catalog)],
                   check=True, capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    log = open(tmp_path / "launch.log", "wb")
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), "--port", str(port),
                             "--base-url", fake.base_url, "--api-key", KEY],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    try:
        proxyproc.wait_port(port, proc, timeout=60)
        work = tmp_path / "work"
        work.mkdir()
        patch = "*** Begin Patch\n*** Add File: notes.md\n+# via launch.py\n*** End Patch\n"
        fake.queue({"reasoning": "Add the file.",
                    "tool_calls": [{"name": "apply_patch", "arguments": json.dumps({"input": patch})}]},
                   {"text": "notes.md written."})
        r = run_codex(f"http://127.0.0.1:{port}/v1", "write notes.md", workdir=work,
                      catalog=catalog, sandbox="workspace-write", timeout=60)
        launch_log = (tmp_path / "launch.log").read_text(errors="replace")
        why = f"{r}\n--- launch.py log ---\n{launch_log[-3000:]}"
        assert r.returncode == 0, why
        assert (work / "notes.md").read_text() == "# via launch.py\n", why
        assert r.final_message == "notes.md written."
        assert [q.headers.get("authorization") for q in fake.chat_requests] == [f"Bearer {KEY}"] * 2
        assert KEY not in launch_log and DUMMY_KEY not in launch_log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
