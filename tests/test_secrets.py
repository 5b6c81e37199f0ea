"""Secrets: the upstream key never shows up in anything the proxy outputs, and the proxy itself
can be locked with a local access token and stays on loopback unless told otherwise.

Every output is grepped for the key: what each client received, mitmdump's log at debug level
with the most detailed flow dump, the flow file (`-w`), and mitmweb's API (also while a request
is in flight, when the key is on its way upstream). Upstreams here misbehave on purpose and
echo the key back in error bodies, HTML pages and mid-stream error events.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from mimo2codex import proxyproc
from mimo2codex.cli import commands as cli, launcher
from mimo2codex.fakes.mimo import FakeMimo
from tests.support import faults as F
from tests.support.faults import call, check_answer, responses_body

pytestmark = pytest.mark.e2e

KEY = "sk-m2c-secret-7Qv4Zr9Xw2"
PLAIN_KEY = "Zq7plainKey5521xWv"  # no sk-/tp- prefix: only exact-value scrubbing can catch it
TOKEN = "local-token-Hq83Lm2Pz"
LOUD = ("termlog_verbosity=debug", "flow_detail=4", "mimo_verbose=true", "mimo_stream_idle_timeout=1", "mimo_stats=true")


def _grep(where: str, data: bytes | str, *secrets_: str) -> None:
    data = data.encode() if isinstance(data, str) else data
    for s in secrets_:
        assert s.encode() not in data, f"{s[:6]}... found in {where}: ...{data[max(0, data.find(s.encode()) - 200):][:400]!r}"


def _exercise_fake(port: int, fake: FakeMimo) -> list[F.Answer]:
    """One of everything that touches the key: streams, tools, retries, upstream 401, cuts, stalls, hang-ups."""
    out = []
    fake.queue({"text": "hello", "reasoning": "thinking about it"})
    out.append(call(port, responses_body()))
    fake.queue({"text": "whole"})
    out.append(call(port, responses_body(stream=False)))
    fake.queue({"tool_calls": [{"name": "shell", "arguments": {"command": ["ls"]}}]})
    out.append(call(port, responses_body(tools=[{"type": "function", "name": "shell", "parameters": {"type": "object"}}])))
    fake.queue({"error": {"status": 429}}, {"text": "after retry"})  # the retry is sent by the proxy itself
    out.append(call(port, responses_body()))
    fake.queue({"error": {"status": 401}})
    out.append(call(port, responses_body()))
    fake.queue({"text": "cut short", "cut_after": 3, "cut_mode": "rst"})
    out.append(call(port, responses_body()))
    fake.queue({"text": "stalled", "stall_after": 2})
    out.append(call(port, responses_body()))
    fake.queue({"text": "never", "header_delay": 30})
    out.append(call(port, responses_body(stream=False)))
    out.append(call(port, path="/healthz", method="GET"))
    out.append(call(port, path="/v1/models", method="GET"))
    out.append(call(port, b"{not json"))
    return out


def _exercise_raw(port: int, raw: F.RawUpstream, KEY: str) -> list[F.Answer]:
    """An upstream that echoes the key back everywhere it can."""
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}", "param": f"Bearer {KEY}", "code": "401"}}).encode()
    html = f"<html><head><title>Bad key {KEY}</title></head><body>{KEY}</body></html>".encode()
    mid = b"data: " + json.dumps({"error": {"message": f"key {KEY} revoked", "code": "500"}}).encode() + b"\n\n"
    out = []
    for stream in (True, False):
        raw.queue(F.whole(401, "application/json", echo))
        out.append(call(port, responses_body(stream=stream)))
        raw.queue(*[F.whole(502, "text/html", html)] * 3)
        out.append(call(port, responses_body(stream=stream)))
    raw.queue([("send", F.head() + F.chunk(F.chat_chunk("partial")) + F.chunk(mid) + F.END)])
    out.append(call(port, responses_body()))
    raw.queue(F.whole(400, "text/plain", f"bad request from {KEY}".encode()))
    out.append(call(port, responses_body()))
    for stream in (True, False):  # a 200 whose JSON body is an error object
        raw.queue(F.whole(200, "application/json", json.dumps({"error": {"message": f"nope {KEY}", "code": "401"}}).encode()))
        out.append(call(port, responses_body(stream=stream)))
    return out


def test_key_never_in_answers_logs_or_flow_files(tmp_path):
    fake = FakeMimo(keys=(KEY,)).start()
    raw = F.RawUpstream().start()
    proxies = []
    try:
        for name, url, key in (("fake", fake.base_url, KEY), ("raw", raw.base_url, PLAIN_KEY)):
            log_path, flows = tmp_path / f"{name}.log", tmp_path / f"{name}.mitm"
            proxies.append((name, proxyproc.start(url, key=key, sets=LOUD, args=("-w", str(flows)), log_path=log_path),
                            log_path, flows))
        answers = _exercise_fake(proxies[0][1].port, fake) + _exercise_raw(proxies[1][1].port, raw, PLAIN_KEY)
        assert PLAIN_KEY.encode() in raw.requests[0].head
        assert fake.chat_requests[0].headers["authorization"] == f"Bearer {KEY}"  # it did go upstream, on the wire
        for a in answers:
            _grep("an answer to the client", a.body + json.dumps(a.headers).encode(), KEY, PLAIN_KEY)
        kinds = [check_answer(a)[:2] for a in answers if a.status != 200 or "event-stream" in a.headers.get("content-type", "")]
        assert ("failed", "invalid_prompt") in kinds or ("http", "401") in kinds  # the 401s were really exercised
        for _, p, _, _ in proxies:
            assert F.wait_idle(p.port)["turns"] == 0
    finally:
        for _, p, _, _ in proxies:
            p.stop()
        fake.stop()
        raw.stop()
    for name, _, log_path, flows in proxies:
        log = log_path.read_text(errors="replace")
        assert "POST" in log and ("<redacted>" in log or "authorization" not in log.lower())  # the dump is really detailed
        _grep(f"the {name} proxy's log", log, KEY, PLAIN_KEY)
        data = flows.read_bytes()
        assert len(data) > 1000
        _grep(f"the {name} flow file", data, KEY, KEY[3:], PLAIN_KEY)


def _mitmweb(upstream_url: str, tmp_path, extra=()):
    port, web = proxyproc.free_port(), proxyproc.free_port()
    argv = [sys.executable, "-c", "from mitmproxy.tools.main import mitmweb; mitmweb()", "-s", str(proxyproc.ADDON),
            "--mode", f"reverse:{upstream_url.rsplit('/v1', 1)[0]}@127.0.0.1:{port}", "--set", "connection_strategy=lazy",
            "--set", f"confdir={proxyproc.CONFDIR}", "--set", f"mimo_base_url={upstream_url}", "--set", f"web_port={web}",
            "--set", "web_open_browser=false", "--set", "web_password=pw", "--set", "termlog_verbosity=debug", *extra]
    log = open(tmp_path / "mitmweb.log", "wb")
    proc = subprocess.Popen(argv, env=dict(os.environ, MIMO_API_KEY=KEY), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(proxyproc.ROOT))
    p = proxyproc.Proxy(proc, port, tmp_path / "mitmweb.log")
    try:
        proxyproc.wait_port(port, proc)
        proxyproc.wait_port(web, proc)
    except Exception:
        p.stop()
        raise
    return p, web


def _web_get(web: int, path: str) -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{web}{path}", headers={"authorization": "Bearer pw"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def test_key_never_in_mitmweb_even_in_flight(tmp_path):
    fake = FakeMimo(keys=(KEY,)).start()
    p, web = _mitmweb(fake.base_url, tmp_path)
    try:
        fake.queue({"text": "slow to start", "header_delay": 1.5})
        answers = []
        t = threading.Thread(target=lambda: answers.append(call(p.port, responses_body())))
        t.start()
        assert fake.wait_until(lambda: fake.chat_requests, 5), "request never reached the upstream"
        flows = _web_get(web, "/flows")  # the request is on its way upstream, the answer not yet back
        assert b"/v1/chat/completions" in flows and b"<redacted>" in flows
        _grep("mitmweb's /flows while the request is in flight", flows, KEY)
        t.join(20)
        fake.queue({"error": {"status": 401}})
        answers.append(call(p.port, responses_body()))
        assert check_answer(answers[0])[0] == "completed"
        ids = [f["id"] for f in json.loads(_web_get(web, "/flows"))]
        assert len(ids) >= 2
        dumps = [_web_get(web, "/flows"), _web_get(web, "/flows/dump"), _web_get(web, "/options")]
        for fid in ids:
            for part in ("request", "response"):
                for view in ("content.data", "content/auto.json", "content/raw.json"):
                    try:
                        dumps.append(_web_get(web, f"/flows/{fid}/{part}/{view}"))
                    except urllib.error.HTTPError:
                        pass  # a view this version does not have
        for i, d in enumerate(dumps):
            _grep(f"mitmweb API answer #{i}", d, KEY)
    finally:
        p.stop()
        fake.stop()
    _grep("mitmweb's log", p.log(), KEY)


# ----------------------------------------------------------------------------------------------
# The local access token


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    fake = FakeMimo(keys=(KEY,)).start()
    d = tmp_path_factory.mktemp("token")
    p = proxyproc.start(fake.base_url, key=KEY, sets=(f"mimo_access_token={TOKEN}", *LOUD), args=("-w", str(d / "f.mitm")),
                        log_path=d / "proxy.log")
    try:
        yield p, fake, d
    finally:
        p.stop()
        fake.stop()


@pytest.mark.parametrize("headers,why", [({"authorization": ""}, "no access token"),
                                         ({"authorization": "Bearer nope"}, "wrong"),
                                         ({"authorization": f"Basic {TOKEN}"}, "no access token")])
def test_access_token_required(locked, headers, why):
    p, fake, _ = locked
    n = len(fake.chat_requests)
    for path, method in (("/v1/responses", "POST"), ("/v1/models", "GET"), ("/healthz", "GET")):
        a = call(p.port, responses_body(), path=path, method=method, headers=headers)
        assert check_answer(a)[:2] == ("http", "401"), a.body
        err = a.json()["error"]
        assert err["code"] == "invalid_api_key" and why in err["message"] and "auth.json" in err["message"]
        _grep("the 401", a.body, TOKEN, KEY)
    assert len(fake.chat_requests) == n


def test_access_token_accepted_and_never_stored(locked):
    p, fake, d = locked
    for headers in ({"authorization": f"Bearer {TOKEN}"}, {"authorization": "", "x-api-key": TOKEN}):
        fake.queue({"text": "let in"})
        a = call(p.port, responses_body(), headers=headers)
        assert check_answer(a)[0] == "completed" and F.output_text(a) == "let in"
        a = call(p.port, path="/v1/models", method="GET", headers=headers)
        assert a.status == 200
    assert fake.chat_requests[-1].headers["authorization"] == f"Bearer {KEY}"  # the client's token is not forwarded
    p.stop()
    _grep("the locked proxy's log", p.log(), TOKEN, KEY)
    _grep("the locked proxy's flow file", (d / "f.mitm").read_bytes(), TOKEN, KEY)


def test_access_token_from_environment(tmp_path):
    fake = FakeMimo(keys=(KEY,)).start()
    p = proxyproc.start(fake.base_url, key=KEY, env={"MIMO2CODEX_ACCESS_TOKEN": TOKEN}, log_path=tmp_path / "p.log")
    try:
        assert call(p.port, path="/healthz", method="GET").status == 401
        assert call(p.port, path="/healthz", method="GET", headers={"authorization": f"Bearer {TOKEN}"}).status == 200
    finally:
        p.stop()
        fake.stop()


# ----------------------------------------------------------------------------------------------
# Loopback


def _listening(port: int) -> set[str]:
    """Local addresses with a listening socket on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(addr)
    return found


def test_binds_loopback_by_default_and_warns_otherwise(tmp_path):
    args = cli.parser().parse_args([])
    assert args.host == "127.0.0.1"
    argv = launcher.mitm_argv(args, launcher.load_rules(args.rules), "https://api.xiaomimimo.com/v1")
    assert f"@127.0.0.1:{args.port}" in argv[argv.index("--mode") + 1]
    fake = FakeMimo(keys=(KEY,)).start()
    p = proxyproc.start(fake.base_url, key=KEY, log_path=tmp_path / "lo.log")
    try:
        assert _listening(p.port) == {"0100007F"}  # 127.0.0.1 only
    finally:
        p.stop()
    port = proxyproc.free_port()
    argv = [sys.executable, "-c", proxyproc.MITMDUMP, "-s", str(proxyproc.ADDON), "--mode",
            f"reverse:{fake.url}@0.0.0.0:{port}", "--set", "connection_strategy=lazy", "--set", f"confdir={proxyproc.CONFDIR}",
            "--set", f"mimo_base_url={fake.base_url}"]
    log = tmp_path / "any.log"
    proc = subprocess.Popen(argv, env=dict(os.environ, MIMO_API_KEY=KEY), stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=str(proxyproc.ROOT))
    wide = proxyproc.Proxy(proc, port, log)
    try:
        proxyproc.wait_port(port, proc)
        deadline = time.monotonic() + 5
        while "not loopback" not in wide.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "not loopback" in wide.log() and "mimo_access_token" in wide.log()
    finally:
        wide.stop()
        fake.stop()
    _grep("the warning", wide.log(), KEY)
