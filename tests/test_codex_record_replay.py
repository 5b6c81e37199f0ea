"""The real Codex CLI, recorded and replayed: `launch.py record` while Codex runs a tool turn against
the strict fake MiMo, then `launch.py replay` with no key and no provider while Codex runs the same
prompt again. Codex's own volatile fields (session ids, item ids, client metadata, tool wall times)
differ between the two runs; the replay must still match every request exactly and give Codex the
same answer."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from addon import flowfile
from mimo2codex import proxyproc
from mimo2codex.fakes.mimo import FakeMimo
from tests.support.codex_cli import DUMMY_KEY, HOMES_DIR, require_codex, run_codex
from tests.support.session import clean_env, cli_proc, stop

pytestmark = [pytest.mark.codex, pytest.mark.e2e]

KEY = "sk-m2c-codex-recording-7d41e0"


def test_codex_session_recorded_then_replayed_offline(tmp_path):
    require_codex()
    work = tmp_path / "work"
    work.mkdir()
    # One CODEX_HOME for both runs, as for a user: its path is part of Codex's prompt. Not under /tmp
    # (see codex_cli.HOMES_DIR).
    HOMES_DIR.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="home-replay-", dir=HOMES_DIR))
    try:
        _record_then_replay(tmp_path, work, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _record_then_replay(tmp_path: Path, work: Path, home: Path) -> None:
    session = tmp_path / "codex.mitm"
    with FakeMimo(keys=(KEY,)).start() as fake:
        fake.queue({"reasoning": "I should run echo.",
                    "tool_calls": [{"name": "exec_command", "arguments": json.dumps({"cmd": "echo hi-from-replay"})}]},
                   {"reasoning": "It printed the text.", "text": "The command printed hi-from-replay."})
        port = proxyproc.free_port()
        rec = cli_proc(["record", str(session), "--port", str(port), "--base-url", fake.base_url],
                       clean_env(MIMO_API_KEY=KEY), tmp_path / "record.log")
        try:
            proxyproc.wait_port(port, rec)
            first = run_codex(f"http://127.0.0.1:{port}/v1", "run echo", workdir=work, home=home, timeout=90)
        finally:
            stop(rec)
        assert first.returncode == 0, f"{first}\n{(tmp_path / 'record.log').read_text()}"
    assert first.final_message == "The command printed hi-from-replay."
    data = session.read_bytes()
    assert KEY.encode() not in data and DUMMY_KEY.encode() not in data

    port = proxyproc.free_port()
    rep = cli_proc(["replay", str(session), "--port", str(port), "--save", str(tmp_path / "replayed.mitm")],
                   clean_env(), tmp_path / "replay.log")
    try:
        proxyproc.wait_port(port, rep)
        second = run_codex(f"http://127.0.0.1:{port}/v1", "run echo", workdir=work, home=home, timeout=90)
    finally:
        stop(rep)
    log = (tmp_path / "replay.log").read_text()
    assert second.returncode == 0, f"{second}\n{log}"
    assert second.final_message == first.final_message
    [cmd] = second.items("command_execution")
    assert "hi-from-replay" in cmd["aggregated_output"]
    replayed = [e for e in flowfile.load(tmp_path / "replayed.mitm") if e.translated]
    assert [e.replay for e in replayed] == ["#1 exact", "#2 exact"], log
