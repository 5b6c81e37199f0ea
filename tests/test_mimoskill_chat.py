"""mimoskill/scripts/mimo_chat.py against the strict fake MiMo, run as a user would run it.

The script runs under `python -S` (no site-packages): that proves it needs nothing beyond the
standard library - in particular never the openai package.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from mimo2codex.fakes.mimo import FakeMimo

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "mimoskill" / "scripts" / "mimo_chat.py"
KEY = "sk-test"


def chat(*args: str, key: str | None = KEY, stdin: str | None = None, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMO_")}
    if key is not None:
        env["MIMO_API_KEY"] = key
    env.update(env_extra)
    return subprocess.run([sys.executable, "-S", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, input=stdin, timeout=30)


@pytest.fixture
def fake():
    f = FakeMimo(keys=(KEY,)).start()
    yield f
    f.stop()


def load_script():
    spec = importlib.util.spec_from_file_location("mimo_chat", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------------------- happy paths
def test_streams_answer_to_stdout_and_reasoning_to_stderr(fake):
    fake.queue({"text": "Hello from MiMo", "reasoning": "The user greets me; answer briefly."})
    r = chat("--base-url", fake.base_url, "say", "hi")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Hello from MiMo\n"
    assert "[reasoning] The user greets me; answer briefly." in r.stderr
    req = fake.last
    assert req.headers["Authorization"] == f"Bearer {KEY}" and "api-key" not in req.headers
    body = req.body
    assert body["model"] == "mimo-v2.6-pro"
    assert body["messages"] == [{"role": "user", "content": "say hi"}]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 8192 and "max_tokens" not in body
    assert req.completed and not req.cancelled


def test_json_mode_no_stream_and_options(fake):
    fake.queue({"text": "42", "reasoning": "compute"}, {"text": "forty-two"})
    r = chat("--base-url", fake.base_url, "--json", "--model", "mimo-v2.5", "--system", "be terse",
             "--thinking", "on", "--effort", "high", "--max-tokens", "1000", "-", stdin="the answer?\n")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["content"] == "42" and out["reasoning"] == "compute" and out["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] > 0
    body = fake.last.body
    assert body["messages"] == [{"role": "system", "content": "be terse"}, {"role": "user", "content": "the answer?"}]
    assert body["thinking"] == {"type": "enabled"} and body["reasoning_effort"] == "high"
    assert body["model"] == "mimo-v2.5" and body["max_completion_tokens"] == 1000

    r = chat("--base-url", fake.base_url, "--no-stream", "--hide-reasoning", "hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "forty-two\n" and "[reasoning]" not in r.stderr
    assert fake.last.body["stream"] is False and "stream_options" not in fake.last.body


def test_api_key_header_and_token_plan_host():
    with FakeMimo(keys=("sk-test",)) as payg:
        payg.queue({"text": "ok"})
        r = chat("--base-url", payg.base_url, "--auth", "api-key", "hi")
        assert r.returncode == 0, r.stderr
        assert payg.last.headers["api-key"] == "sk-test" and "Authorization" not in payg.last.headers
    with FakeMimo(keys=("tp-test",), host_family="token_plan") as plan:
        plan.queue({"text": "plan ok"})
        r = chat("hi", key="tp-test", MIMO_BASE_URL=plan.base_url)
        assert r.returncode == 0 and r.stdout == "plan ok\n", r.stderr
        # Token plan refuses the api-key header (contract 1.2): the error says what to try.
        r = chat("hi", "--auth", "api-key", key="tp-test", MIMO_BASE_URL=plan.base_url)
        assert r.returncode == 1
        assert "MiMo error 401 (invalid_key): Invalid API Key - Please provide valid API Key" in r.stderr
        assert "try --auth bearer (the default)" in r.stderr
        assert "tp-test" not in r.stderr


def test_base_url_follows_key_prefix_and_names():
    mod = load_script()
    env = {k: os.environ.pop(k) for k in list(os.environ) if k == "MIMO_BASE_URL"}
    try:
        assert mod.resolve_base_url(None, "sk-abc") == "https://api.xiaomimimo.com/v1"
        assert mod.resolve_base_url(None, "tp-abc") == "https://token-plan-cn.xiaomimimo.com/v1"
        assert mod.resolve_base_url("token-plan-sgp", "tp-abc") == "https://token-plan-sgp.xiaomimimo.com/v1"
        assert mod.resolve_base_url("http://127.0.0.1:1/v1/", "sk-x") == "http://127.0.0.1:1/v1"
        with pytest.raises(mod.ChatError):
            mod.resolve_base_url("moon", "sk-x")
    finally:
        os.environ.update(env)


def test_image_for_vision_model_carries_a_text_part(fake, tmp_path):
    png = tmp_path / "shot.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(png)
    fake.queue({"text": "a red square"}, {"text": "seen"})
    r = chat("--base-url", fake.base_url, "--image", str(png), "what is this?")
    assert r.returncode == 0, r.stderr
    content = fake.last.body["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "what is this?"}
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == png.read_bytes()
    # An image alone still gets a text part (MiMo 400s "`text` is not set" otherwise).
    r = chat("--base-url", fake.base_url, "--image", "https://example.com/cat.png")
    assert r.returncode == 0, r.stderr
    assert fake.last.body["messages"][0]["content"] == [
        {"type": "text", "text": " "}, {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]


def test_image_to_text_only_model_is_stopped_before_sending(fake, tmp_path):
    png = tmp_path / "shot.png"
    Image.new("RGB", (8, 8)).save(png)
    r = chat("--base-url", fake.base_url, "--model", "mimo-v2.5-pro", "--image", str(png), "describe")
    assert r.returncode == 2
    assert "mimo-v2.5-pro is text-only" in r.stderr and "--model mimo-v2.6-pro" in r.stderr
    assert fake.chat_requests == []
    r = chat("--base-url", fake.base_url, "--image", str(tmp_path / "missing.png"), "x")
    assert r.returncode == 2 and "image not found" in r.stderr


def test_list_models(fake):
    r = chat("--base-url", fake.base_url, "--list-models")
    assert r.returncode == 0, r.stderr
    assert "mimo-v2.6-pro" in r.stdout.split() and "mimo-v2.5" in r.stdout.split()


# -------------------------------------------------------------------------------------------- errors
def test_bad_key_gives_readable_error_without_the_key(fake):
    r = chat("--base-url", fake.base_url, "hi", key="sk-wrong-secret")
    assert r.returncode == 1
    assert "MiMo error 401 (invalid_key): Invalid API Key - Please provide valid API Key" in r.stderr
    assert "sk- keys belong to https://api.xiaomimimo.com/v1" in r.stderr and "try --auth api-key" in r.stderr
    assert "sk-wrong-secret" not in r.stderr + r.stdout and "Traceback" not in r.stderr
    r = chat("--base-url", fake.base_url, "hi", key=None)
    assert r.returncode == 2 and "MIMO_API_KEY" in r.stderr


def test_param_detail_and_hints_from_real_validation(fake, tmp_path):
    # Thinking mode + an assistant turn without reasoning_content: the strict fake answers MiMo's 400.
    history = tmp_path / "history.json"
    history.write_text(json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]))
    r = chat("--base-url", fake.base_url, "--messages", str(history), "and now?")
    assert r.returncode == 1
    assert "MiMo error 400: Param Incorrect - The reasoning_content in the thinking mode must be passed back" in r.stderr
    assert "hint: in thinking mode" in r.stderr
    r = chat("--base-url", fake.base_url, "--model", "MiMo-V2.5-Pro", "hi")
    assert r.returncode == 1 and "Not supported model MiMo-V2.5-Pro" in r.stderr and "--list-models" in r.stderr
    fake.queue({"error": {"status": 404, "message": "No endpoints found that support image input"}})
    r = chat("--base-url", fake.base_url, "--model", "mimo-v2.5", "hi")
    assert r.returncode == 1 and "does not accept images" in r.stderr


def test_rate_limit_is_retried_then_reported(fake):
    fake.queue({"error": {"status": 429, "retry_after": 0}}, {"text": "after retry"})
    r = chat("--base-url", fake.base_url, "--retries", "1", "hi")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "after retry\n" and "MiMo answered 429; retrying in 0s" in r.stderr
    assert len(fake.chat_requests) == 2
    fake.queue({"error": {"status": 429}})
    r = chat("--base-url", fake.base_url, "--retries", "0", "hi")
    assert r.returncode == 1
    assert "MiMo error 429 (limitation): Too many requests" in r.stderr and "rate limited" in r.stderr


def test_broken_streams_fail_clearly(fake):
    fake.queue({"text": "partial answer that breaks", "mid_error": {"after": 2, "status": 500, "message": "boom"}})
    r = chat("--base-url", fake.base_url, "hi")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "MiMo error 500 during the stream (the answer above is incomplete): boom" in r.stderr
    fake.queue({"text": "cut short here", "cut_after": 2})
    r = chat("--base-url", fake.base_url, "hi")
    assert r.returncode == 4 and "ended before the answer was complete" in r.stderr
    fake.queue({"text": "truncated", "finish": "length"})
    r = chat("--base-url", fake.base_url, "hi")
    assert r.returncode == 0 and "cut off (finish_reason=length)" in r.stderr


def test_unreachable_host_is_a_network_error():
    r = chat("--base-url", "http://127.0.0.1:9/v1", "--retries", "0", "hi")
    assert r.returncode == 3 and "cannot reach MiMo at http://127.0.0.1:9/v1" in r.stderr


# ------------------------------------------------------------------------------------ one source of facts
def test_script_facts_match_rules_mimo_yaml():
    rules = yaml.safe_load((ROOT / "rules" / "mimo.yaml").read_text())
    mod = load_script()
    assert mod.DEFAULT_MODEL == rules["models"]["default"]
    assert mod.TEXT_ONLY_MODELS == {m["id"] for m in rules["models"]["list"] if not m["vision"]}
    assert mod.MAX_COMPLETION_TOKENS == max(m["max_output"] for m in rules["models"]["list"])
    hosts = {"payg": rules["base_url"], **rules["alt_base_urls"]}
    assert mod.HOSTS == hosts
    doc = (ROOT / "mimoskill" / "references" / "models.md").read_text()
    for m in rules["models"]["list"]:
        row = re.search(rf"^\| `{re.escape(m['id'])}` \|(.*)$", doc, flags=re.M)
        assert row, f"{m['id']} missing from references/models.md"
        assert ("yes" if m["vision"] else "no") in row.group(1).split("|")[2]
    source = SCRIPT.read_text()
    assert "import openai" not in source and "from openai" not in source
