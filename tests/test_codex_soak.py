"""Soak with the real Codex CLI (issue 13 item 7): one Codex session of 100+ model turns through one
real mitmdump and the strict fake MiMo.

Five `codex exec` invocations (the first, then `resume --last`) of scripted tool loops mixing text,
single and parallel exec_command calls and apply_patch edits, with one 429 (absorbed by the proxy's
retry), one stream cut mid-answer (Codex retries the request) and one auto-compaction (large usage
reported, Codex compacts before the next turn). Checked: every invocation ends in turn.completed with
the scripted answer, every MiMo request but the injected faults was accepted and completed, each
request carries the whole history it should (every call answered, nothing dropped, the summary after
the compaction), the files apply_patch wrote exist, and the proxy's RSS (printed) stays flat.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_codex_e2e import (  # noqa: F401  (module fixtures: this file gets its own proxy and fake)
    _assistant_msgs, _codex, _tool_msgs, e2e, fake, mimo, proxy)

pytestmark = [pytest.mark.codex, pytest.mark.e2e]

RUNS = 5
ROUNDS = 22  # tool rounds per invocation, plus its closing text answer
COMPACT_LIMIT = 200_000  # far above what the fake reports by itself (request bytes / 4)
BIG_USAGE = {"prompt_tokens": 300_000, "completion_tokens": 40, "total_tokens": 300_040}
RSS_GROWTH_MB = 40  # generous: one Python process, Codex's ~40 KB requests, 120+ flows kept by mitmdump
FAULT_429 = (1, 5)  # (run, round) before which MiMo answers 429 once
FAULT_CUT = (2, 7)  # (run, round) whose first attempt is cut mid-stream


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def round_reply(run: int, i: int) -> tuple[dict, int]:
    """The scripted model answer for one tool round, and how many calls it makes."""
    kind = i % 4
    if kind == 0:
        return {"text": None, "reasoning": f"r{run}.{i} one command",
                "tool_calls": [{"name": "exec_command", "arguments": json.dumps({"cmd": f"echo soak-{run}-{i}"})}]}, 1
    if kind == 1:
        return {"reasoning": f"r{run}.{i} two at once", "tool_calls": [
            {"name": "exec_command", "arguments": json.dumps({"cmd": f"echo par-{run}-{i}-a"})},
            {"name": "exec_command", "arguments": json.dumps({"cmd": f"echo par-{run}-{i}-b"})}]}, 2
    if kind == 2:
        patch = f"*** Begin Patch\n*** Add File: soak/f{run}_{i}.txt\n+run {run} round {i}\n*** End Patch\n"
        return {"reasoning": f"r{run}.{i} edit", "tool_calls": [{"name": "apply_patch", "arguments": json.dumps({"input": patch})}]}, 1
    return {"text": f"progress note {run}.{i}", "reasoning": f"r{run}.{i} talk",
            "tool_calls": [{"name": "exec_command", "arguments": json.dumps({"cmd": f"echo note-{run}-{i}"})}]}, 1


def script(run: int) -> tuple[list[dict], int]:
    replies, calls = [], 0
    if run == 3:  # Codex compacts before this turn: its first request is the compaction
        replies.append({"text": "SOAK-SUMMARY: runs 0-2 done, files soak/f*_*.txt written.", "reasoning": "Summarise."})
    for i in range(ROUNDS):
        if (run, i) == FAULT_429:
            replies.append({"error": {"status": 429, "retry_after": 0.1}})
        reply, n = round_reply(run, i)
        if (run, i) == FAULT_CUT:
            replies.append({"text": "this attempt is cut off somewhere in the middle", "cut_after": 3})
        replies.append({k: v for k, v in reply.items() if v is not None})
        calls += n
    final = {"text": f"run {run} finished", "reasoning": f"r{run} wrap-up"}
    if run == 2:
        final["usage"] = BIG_USAGE
    replies.append(final)
    return replies, calls


def test_a_long_codex_session_through_one_proxy(e2e, tmp_path, capsys):
    home = tmp_path / "codex-home"
    pid = e2e.proxy.proc.pid
    kw = dict(home=home, ephemeral=False, catalog=True, sandbox="workspace-write", timeout=240,
              extra_config=[("model_auto_compact_token_limit", COMPACT_LIMIT)])
    rss = [rss_mb(pid)]
    seen = 0
    for run in range(RUNS):
        replies, calls = script(run)
        e2e.fake.queue(*replies)
        r = e2e.run(f"soak run {run}: keep working", resume_last=run > 0, **kw)
        assert r.returncode == 0 and not r.turn_failed, e2e.why(r)
        assert r.final_message == f"run {run} finished", e2e.why(r)
        assert any(ev.get("type") == "turn.completed" for ev in r.events)
        assert not e2e.fake.pending, e2e.why(r)  # every scripted answer was asked for
        reqs = e2e.chats[seen:]
        seen = len(e2e.chats)
        faults = [q for q in reqs if q.status != 200 or not q.completed]
        expected_faults = {FAULT_429[0]: [429], FAULT_CUT[0]: [200]}.get(run, [])
        assert [q.status for q in faults] == expected_faults, [(q.status, q.error) for q in faults]
        assert len(reqs) == len(replies), e2e.why(r)
        last = reqs[-1].body
        # nothing lost: this turn's every call is in the last request, each answered right after it
        msgs = last["messages"]
        turn_start = max(i for i, m in enumerate(msgs) if m["role"] == "user" and f"soak run {run}" in json.dumps(m))
        mine = [m for m in msgs[turn_start:] if m["role"] == "assistant" and m.get("tool_calls")]
        assert sum(len(m["tool_calls"]) for m in mine) == calls
        assert all(m.get("reasoning_content") for m in mine)
        for m in mine:
            at = msgs.index(m)
            ids = [c["id"] for c in m["tool_calls"]]
            assert [t.get("tool_call_id") for t in msgs[at + 1:at + 1 + len(ids)]] == ids
        earlier = "\n".join(json.dumps(m) for m in msgs[:turn_start])
        if run in (1, 2):  # before the compaction the whole session is replayed
            assert all(f"run {k} finished" in earlier for k in range(run))
        if run == 3:
            assert "CONTEXT CHECKPOINT COMPACTION" in json.dumps(reqs[0].body["messages"][-1])
            assert "SOAK-SUMMARY" in earlier and "run 0 finished" not in earlier
        if run == 4:
            assert "SOAK-SUMMARY" in earlier and "run 3 finished" in earlier
        rss.append(rss_mb(pid))
        with capsys.disabled():
            print(f"\nsoak run {run}: {len(reqs)} MiMo requests, {r.duration:.1f}s, proxy RSS {rss[-1]:.1f} MB")
    total = len(e2e.chats)
    files = sorted((e2e.workdir / "soak").glob("f*_*.txt"))
    assert len(files) == RUNS * len([i for i in range(ROUNDS) if i % 4 == 2])
    assert (e2e.workdir / "soak" / "f4_2.txt").read_text() == "run 4 round 2\n"
    with capsys.disabled():
        print(f"soak: {total} MiMo requests in one session; proxy RSS MB {[round(x, 1) for x in rss]}")
    assert total >= 100
    assert rss[-1] - rss[1] < RSS_GROWTH_MB, rss
