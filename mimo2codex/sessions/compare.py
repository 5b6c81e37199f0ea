"""`launch.py compare FILE`: re-send a recorded session's Codex requests through the current rules and
diff the results against the recording (the regression check after a rule change).

The requests go through a real proxy (mitmdump -s addon/mimo.py, recording into a temporary
flow file) to one of three upstreams:
- the recorded answers (default; offline, deterministic: a difference is a change in our
  translation, on the request side or the stream side);
- the live provider (`--live`, needs the key): the request side is compared, answers will vary;
- any Chat Completions URL (`--base-url`, e.g. a fake): as with --live.
For each request: the Chat request the current rules build vs the recorded one, and the event
list the client gets vs the recorded one, both with ids/timestamps taken out.
"""

from __future__ import annotations

import difflib
import http.client
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from mimo2codex import paths, proxyproc
from mimo2codex.sessions import eventlist
from mimo2codex.sessions.recording import Exchange, normalise

DIFF_LINES = 60
_NUMBER = re.compile(r"^\s*\d+(?:-\d+)?  ")  # the event-number column of an event list
NO_UPSTREAM = "http://127.0.0.1:9/v1"  # reverse-mode target placeholder; replay never dials it


def post(port: int, body: dict, timeout: float = 300.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/responses", json.dumps(body).encode(),
                     {"content-type": "application/json", "accept": "text/event-stream",
                      "authorization": "Bearer mimo2codex-compare"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError as e:
        return 0, str(e).encode()
    finally:
        conn.close()


def _lines_of_request(chat) -> list[str]:
    return json.dumps(normalise(chat), indent=1, sort_keys=True, ensure_ascii=False).splitlines()


def _lines_of_answer(body: bytes) -> list[str]:
    """The event list as the views show it, ids and timestamps taken out."""
    return [normalise(_NUMBER.sub("", line)) for line in eventlist.body_lines(body, limit=0)]


def _diff(a: list[str], b: list[str], a_name: str, b_name: str) -> list[str]:
    diff = list(difflib.unified_diff(a, b, a_name, b_name, n=1, lineterm=""))
    if len(diff) > DIFF_LINES:
        diff = diff[:DIFF_LINES] + [f"… {len(diff) - DIFF_LINES} more diff lines"]
    return diff


def compare(recorded: list[Exchange], current: list[Exchange], *, answers_count: bool, out: TextIO) -> int:
    """Print a report; return the number of requests that differ."""
    differing = 0
    for i, old in enumerate(recorded):
        new = current[i] if i < len(current) else None
        if new is None:
            out.write(f"#{old.index}: no result from the current proxy\n")
            differing += 1
            continue
        notes, details = [], []
        if new.chat_request is None:
            notes.append(f"REFUSED by the current rules ({new.error or new.client_status})")
            same_request = False
        else:
            d = _diff(_lines_of_request(old.chat_request), _lines_of_request(new.chat_request),
                      "recorded chat request", "current rules")
            same_request = not d
            notes.append("chat request same" if same_request else "chat request DIFFERS")
            details += d
        a = _diff(_lines_of_answer(old.client_body), _lines_of_answer(new.client_body),
                  "recorded answer to Codex", "current answer")
        # Another upstream answers differently, but an answer that failed where the recording did not
        # (rejected key, 4xx from the rules' request) is a regression whatever the upstream.
        newly_failed = new.failed and not old.failed
        if newly_failed:
            notes.append(f"answer FAILED ({new.error or new.status or new.client_status})")
        if a:
            notes.append("answer DIFFERS" if answers_count else "answer differs (upstream not the recording)")
            if answers_count or newly_failed:
                details += a
        else:
            notes.append(f"answer same ({len(old.client_events())} events)")
        bad = not same_request or newly_failed or (answers_count and bool(a))
        differing += bad
        out.write(f"{'✗' if bad else '✓'} #{old.index} {old.model}: {' · '.join(notes)}\n")
        for line in details:
            out.write(f"    {line}\n")
    return differing


def run(path: str, *, upstream: str = "replay", base_url: str | None = None, rules_name: str = "mimo",
        sets: tuple[str, ...] = (), out: TextIO = sys.stdout) -> int:
    flowfile = paths.addon_module("flowfile")  # reading flow files needs mitmproxy (we run inside the venv)
    from mimo2codex.translate import rules

    recorded = [e for e in flowfile.load(path) if e.translated and isinstance(e.responses_request, dict)]
    if not recorded:
        out.write(f"{path}: no translated request to compare\n")
        return 2
    r = rules.load(rules_name)
    key: str | None = None
    if upstream == "replay":
        target, sets = NO_UPSTREAM, (*sets, f"mimo_replay={Path(path).resolve()}")
        where = "the recorded answers (offline)"
    elif upstream == "live":
        target, key = r.upstream_url(), os.environ.get(r.auth_env, "").strip()
        if not key:
            out.write(f"--live needs the provider key in {r.auth_env}\n")
            return 2
        where = f"the live provider at {target}"
    else:
        target = base_url or ""
        key = os.environ.get(r.auth_env, "").strip() or "sk-compare-placeholder"
        where = target
    if not target.startswith(("http://", "https://")) or not urlsplit(target).netloc:
        out.write(f"bad upstream URL {target!r}\n")
        return 2
    out.write(f"compare {path}: {len(recorded)} recorded requests → current rules ({rules_name}) → {where}\n")
    with tempfile.TemporaryDirectory(prefix="m2c-compare-") as tmp:
        saved = Path(tmp) / "current.mitm"
        with proxyproc.start(target, key=key, key_env=r.auth_env, rules=rules_name, sets=sets,
                             args=("-w", str(saved)), log_path=Path(tmp) / "proxy.log") as proxy:
            for e in recorded:
                post(proxy.port, e.responses_request)
        current = [e for e in flowfile.load(saved) if e.method == "POST" and e.path.rstrip("/").endswith("/responses")]
    differing = compare(recorded, current, answers_count=upstream == "replay", out=out)
    out.write(f"{'no differences' if not differing else f'{differing} of {len(recorded)} requests differ'}\n")
    return 1 if differing else 0
