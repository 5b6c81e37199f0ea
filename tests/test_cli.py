"""launch.py as a user runs it: subcommands, refusals, and the proxy it starts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mimo2codex import proxyproc
from mimo2codex.fakes.mimo import FakeMimo

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = [sys.executable, str(ROOT / "launch.py")]


def run(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("MIMO_API_KEY", "MIMO_BASE_URL")}
    full.update(env or {})
    return subprocess.run([*LAUNCH, *args], capture_output=True, text=True, timeout=timeout, env=full, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("cmd", [[], ["print-config"], ["print-cc-switch"], ["demo"], ["check-rules"], ["doctor"],
                                 ["service"], ["service", "install"], ["service", "logs"]])
def test_help_on_every_subcommand(cmd):
    r = run(*cmd, "--help")
    assert r.returncode == 0 and "usage:" in r.stdout


def test_print_config_points_codex_at_the_proxy(tmp_path):
    catalog = tmp_path / "catalog.json"
    r = run("print-config", "--port", "9123", "--catalog", str(catalog))
    assert r.returncode == 0
    assert 'base_url = "http://127.0.0.1:9123/v1"' in r.stdout and 'wire_api = "responses"' in r.stdout
    assert "requires_openai_auth = true" in r.stdout and "mimo2codex-local" in r.stdout
    assert f'model_catalog_json = "{catalog}"' in r.stdout
    models = json.loads(catalog.read_text())["models"]
    assert {m["slug"] for m in models} >= {"mimo-v2.6-pro", "mimo-v2.5-pro"}
    assert all(m["apply_patch_tool_type"] == "freeform" for m in models)
    env = run("print-config", "--env-key")
    assert 'env_key = "MIMO2CODEX_KEY"' in env.stdout and "requires_openai_auth" not in env.stdout


def test_print_cc_switch_lists_models():
    r = run("print-cc-switch")
    assert r.returncode == 0 and "# auth.json" in r.stdout and "mimo-v2.5-pro[1m]" in r.stdout


def test_check_rules_ok_and_precise_failure(tmp_path):
    assert run("check-rules").returncode == 0
    bad = tmp_path / "broken.yaml"
    bad.write_text("provider: broken\nname: B\nbase_url: http://x\nmodels:\n  default: m\n  list:\n    - {id: m, context: big}\n")
    r = run("check-rules", str(bad))
    assert r.returncode == 1 and "broken.yaml:7: models.list[0].context: must be an integer" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_refuses_to_start_without_a_key():
    r = run("--port", str(proxyproc.free_port()))
    assert r.returncode != 0 and "MIMO_API_KEY" in r.stderr and "Traceback" not in r.stderr


def test_refuses_a_busy_port():
    with FakeMimo().start() as fake:
        r = run("--port", str(fake.port), env={"MIMO_API_KEY": "sk-test"})
    assert r.returncode != 0 and "already in use" in r.stderr


@contextlib.contextmanager
def launched(log_path: Path, *args: str, env: dict | None = None):
    """launch.py running a proxy on a free port, stopped with Ctrl-C as a user would; yields the port."""
    port = proxyproc.free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*LAUNCH, "--port", str(port), *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            proxyproc.wait_port(port, proc)
            yield port
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(15)


def post(port: int, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/responses", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_launch_serves_healthz_and_translates(tmp_path):
    with FakeMimo(keys=("sk-launch-secret",)).start() as fake:
        fake.queue({"text": "hi from launch"})
        with launched(tmp_path / "out.log", "--base-url", fake.base_url, "--api-key", "sk-launch-secret") as port:
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read())
            assert health["ok"] is True and health["upstream"] == fake.base_url
            status, resp = post(port, {"model": "mimo-v2.5-pro", "input": "hi", "stream": False})
            assert status == 200 and resp["output"][-1]["content"][0]["text"] == "hi from launch"
    out = (tmp_path / "out.log").read_text()
    assert f"listening on http://127.0.0.1:{port}" in out and "sk-launch-secret" not in out
    assert "local access token: none" in out


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_launch_on_ipv6_loopback(tmp_path):
    # mitmproxy takes the listen host without brackets; bracketed, "[::1]" was looked up as a name and the start failed
    assert 'base_url = "http://[::1]:8788/v1"' in run("--host", "::1", "print-config").stdout
    port = proxyproc.free_port()
    log_path = tmp_path / "out.log"
    with FakeMimo(keys=("sk-test",)).start() as fake, open(log_path, "wb") as log:
        proc = subprocess.Popen([*LAUNCH, "--host", "::1", "--port", str(port), "--base-url", fake.base_url],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                env=dict(os.environ, MIMO_API_KEY="sk-test"))
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    health = json.loads(urllib.request.urlopen(f"http://[::1]:{port}/healthz", timeout=2).read())
                    break
                except OSError:
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.1)
            assert health["ok"] is True
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(15)
    assert f"listening on http://[::1]:{port}" in log_path.read_text()


def test_launch_access_token_flag(tmp_path):
    token = "tok-launch-local-5f2c9e"
    env = {k: v for k, v in os.environ.items() if k != "MIMO2CODEX_ACCESS_TOKEN"}
    with FakeMimo(keys=("sk-launch-secret",)).start() as fake:
        fake.queue({"text": "let in"})
        with launched(tmp_path / "out.log", "--base-url", fake.base_url, "--api-key", "sk-launch-secret",
                      "--access-token", token, "-v", env=env) as port:
            body = {"model": "mimo-v2.5-pro", "input": "hi", "stream": False}
            status, err = post(port, body)
            assert status == 401 and err["error"]["code"] == "invalid_api_key" and "no access token" in err["error"]["message"]
            status, err = post(port, body, {"authorization": "Bearer not-the-token"})
            assert status == 401 and "wrong" in err["error"]["message"]
            assert len(fake.requests) == 0  # refused before anything reached the provider
            status, resp = post(port, body, {"authorization": f"Bearer {token}"})
            assert status == 200 and resp["output"][-1]["content"][0]["text"] == "let in"
    out = (tmp_path / "out.log").read_text()
    assert "local access token: required" in out and f"<your MIMO2CODEX_ACCESS_TOKEN>" in out
    assert token not in out and "sk-launch-secret" not in out


def test_print_config_never_prints_the_access_token():
    token = "tok-print-config-81d0"
    r = run("print-config", env={"MIMO2CODEX_ACCESS_TOKEN": token})
    assert r.returncode == 0 and '"OPENAI_API_KEY": "<your MIMO2CODEX_ACCESS_TOKEN>"' in r.stdout and token not in r.stdout
    env = run("print-config", "--env-key", env={"MIMO2CODEX_ACCESS_TOKEN": token})
    assert 'export MIMO2CODEX_KEY="$MIMO2CODEX_ACCESS_TOKEN"' in env.stdout and token not in env.stdout


def test_demo_runs_offline():
    r = run("demo", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "response.completed" in r.stdout and "assistant.reasoning_content: \"The user wants" in r.stdout
    assert "its own key only" in r.stdout


def test_demo_follows_provider_before_or_after_the_subcommand():
    after = run("demo", "--provider", "deepseek", timeout=120)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "fake DeepSeek (strict, offline)" in after.stdout and "What DeepSeek received" in after.stdout
    assert '"model": "deepseek-v4-pro"' in after.stdout and "export DEEPSEEK_API_KEY" in after.stdout
    unknown = run("--provider", str(ROOT / "tests" / "no-such-rules.yaml"), "demo")
    assert unknown.returncode != 0 and "bad rules" in unknown.stderr and "Traceback" not in unknown.stderr


@pytest.mark.parametrize("cmd", ["print-config", "print-cc-switch"])
def test_global_flags_before_or_after_the_subcommand(cmd):
    flags = ["--port", "9321", "--provider", "kimi", "--access-token", "tok-flags-1"]
    before, after = run(*flags, cmd), run(cmd, *flags)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert before.stdout == after.stdout
    assert "127.0.0.1:9321/v1" in after.stdout and "[model_providers.kimi]" in after.stdout
    assert "<your MIMO2CODEX_ACCESS_TOKEN>" in after.stdout and "tok-flags-1" not in after.stdout


def test_compare_with_broken_rules_is_one_line_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("provider: [\n")
    r = run("compare", str(tmp_path / "s.mitm"), "--provider", str(bad))
    assert r.returncode != 0 and "bad rules" in r.stderr and "bad.yaml:2" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_record_into_a_path_that_cannot_be_a_folder_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    r = run("record", str(tmp_path / "afile" / "s.mitm"), env={"MIMO_API_KEY": "sk-test"})
    assert r.returncode != 0 and "cannot write a flow file at" in r.stderr and "Traceback" not in r.stdout + r.stderr, r.stderr


def test_show_of_a_directory_says_so_and_names_its_files(tmp_path):
    empty = run("show", str(tmp_path))
    assert empty.returncode != 0 and f"{tmp_path} is a directory, not a flow file" in empty.stderr, empty.stderr
    (tmp_path / "monday.mitm").write_bytes(b"")
    r = run("show", str(tmp_path))
    assert r.returncode != 0 and "is a directory" in r.stderr and "monday.mitm" in r.stderr, r.stderr
    assert "no such flow file" not in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, says", [(["doctor", "--timeout", "-1"], "--timeout: must be more than 0"),
                                        (["doctor", "--timeout", "inf"], "--timeout: must be more than 0"),
                                        (["replay", "s.mitm", "--pace", "-5"], "--pace: must be 0 or more")])
def test_out_of_range_numbers_are_usage_errors_not_tracebacks(args, says):
    r = run(*args)
    assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_keyless_local_provider_starts_and_sends_no_auth_header(tmp_path):
    from mimo2codex.fakes.providers import fake_server

    env = {k: v for k, v in os.environ.items() if k != "LOCAL_API_KEY"}
    with fake_server("local", keys=None).start() as fake:
        with launched(tmp_path / "out.log", "--provider", "local", "--base-url", fake.base_url, env=env) as port:
            status, resp = post(port, {"model": "qwen3-coder:30b", "input": "hi", "stream": False})
            assert status == 200 and resp["status"] == "completed"
            assert "authorization" not in {k.lower() for k in dict(fake.requests[-1].headers)}
