"""Record → replay of Codex sessions: the pieces (taddons/tflow, plain servers) and the whole path
through real mitmdump processes (`launch.py record`, `mitmdump -s addon/mimo.py -w`, `launch.py replay`)."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow, tutils

from addon import flowfile
from addon.mimo import MimoTranslate
from addon.tee import Tee
from addon.recorder import Recorder
from addon.replay import Replay
from mimo2codex import proxyproc
from mimo2codex.sessions import compare, replay
from mimo2codex.translate import secrets
from mimo2codex.fakes.mimo import FakeMimo
from mimo2codex.sessions.recording import Exchange, Matcher, comparable_events, fingerprint, normalise
from tests.support.session import (CODEX_BEARER, CODEX_COOKIE, REPLIES, Run, _body, _msg, clean_env, cli_proc,
                                   run_session, stop)

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-m2c-recording-secret-4f9a1c77"
SECRETS = (KEY, CODEX_BEARER, CODEX_COOKIE.split("=", 1)[1])


def sse(*events: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def chat_chunk(**delta) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


def assert_no_secret(path: Path) -> None:
    data = path.read_bytes()
    for s in SECRETS:
        assert s.encode() not in data, f"{s!r} reached {path.name}"


# ------------------------------------------------------------------------------------------------
# Tolerant matching


def codex_request(cache_key: str, date: str, wall: str, msg_id: str) -> dict:
    return {"model": "mimo-v2.5-pro", "prompt_cache_key": cache_key, "client_metadata": {"turn_id": cache_key},
            "input": [{"type": "message", "id": msg_id, "role": "user",
                       "content": [{"type": "input_text", "text": f"<current_date>{date}</current_date>"}]},
                      {"type": "function_call_output", "id": f"fco_{msg_id}", "call_id": "call_abc123",
                       "output": f"Chunk ID: 1a2b3c\nWall time: {wall} seconds\nOutput:\nok"}]}


def test_fingerprint_ignores_codex_volatile_fields():
    a = codex_request("5e0c0a52-1111-4a3b-9c1d-0123456789ab", "2026-11-24", "0.0720", "msg_01a20db7-f387")
    b = codex_request("7f1d0b63-2222-4b4c-8d2e-abcdef012345", "2026-12-01", "1.5000", "msg_99b30ec8-e498")
    assert fingerprint(a) == fingerprint(b)
    c = json.loads(json.dumps(b))
    c["input"][1]["output"] = c["input"][1]["output"].replace("ok", "FAILED")
    assert fingerprint(a) != fingerprint(c)
    assert "prompt_cache_key" not in normalise(a) and "client_metadata" not in normalise(a)


def test_matcher_exact_then_shape_then_order_then_repeat():
    def ex(i, text, n_items=1):
        items = [{"type": "message", "role": "user", "content": text}] * n_items
        return Exchange(index=i, responses_request={"model": "m", "input": items}, chat_request={"model": "m"})

    m = Matcher([ex(1, "a"), ex(2, "b"), ex(3, "c", 2)])
    req = lambda text, n=1: {"model": "m", "input": [{"type": "message", "role": "user", "content": text}] * n}  # noqa: E731
    assert [(e.index, how) for e, how in [m.match(req("b"))]] == [(2, "exact")]
    assert (lambda r: (r[0].index, r[1]))(m.match(req("zzz", 2))) == (3, "shape")
    assert (lambda r: (r[0].index, r[1]))(m.match(req("zzz", 5))) == (1, "order")
    assert m.remaining() == 0
    assert (lambda r: (r[0].index, r[1]))(m.match(req("b"))) == (2, "repeat")  # Codex retried more than recorded
    assert m.match(req("never")) == (None, "none")


# ------------------------------------------------------------------------------------------------
# The replay upstream on its own


def post_chat(url: str, body: dict, headers: dict | None = None) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url + "/chat/completions", json.dumps(body).encode(),
                                 {"content-type": "application/json", **(headers or {})}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_replay_upstream_plays_recorded_answers_by_header_or_body():
    body = sse(chat_chunk(role="assistant", content=""), chat_chunk(content="Hel"), chat_chunk(content="lo"))
    exchanges = [
        Exchange(index=2, responses_request={"model": "m", "input": "hi"}, chat_request={"model": "m", "messages": [1]},
                 upstream_status=200, upstream_content_type="text/event-stream", upstream_body=body),
        Exchange(index=5, responses_request={"model": "m", "input": "x"}, chat_request={"model": "m", "messages": [2]},
                 upstream_status=429, upstream_content_type="application/json", upstream_headers={"retry-after": "1"},
                 upstream_body=b'{"error":{"code":"429","message":"Too many requests"}}'),
    ]
    assert replay.frames(body)[1] == b"data: " + json.dumps(chat_chunk(content="Hel")).encode() + b"\n\n"
    with replay.ReplayUpstream(exchanges) as server:
        status, headers, got = post_chat(server.base_url, {"model": "m", "messages": [1]})
        assert (status, got) == (200, body) and headers["Transfer-Encoding"] == "chunked"
        status, headers, got = post_chat(server.base_url, {"whatever": 1}, {replay.HEADER: "5"})
        assert status == 429 and headers["retry-after"] == "1" and b"Too many" in got
        status, _, got = post_chat(server.base_url, {"whatever": 1}, {replay.HEADER: "none"})
        assert status == 400 and b"no recorded answer" in got
        assert [(r["index"], r["rule"]) for r in server.requests] == [(2, "exact"), (5, "proxy"), (None, "none")]


# ------------------------------------------------------------------------------------------------
# Recorder (taddons)


def translated_flow() -> http.HTTPFlow:
    f = tflow.tflow(req=tutils.treq(method=b"POST", path=b"/v1/chat/completions", content=b'{"model":"m"}',
                                    headers=http.Headers(host="api.example.test", api_key=KEY,
                                                         authorization=f"Bearer {KEY}")))
    # As addon/mimo.py keeps them: the client's bytes (here holding the key, pasted by a user), the Chat request as the body.
    f.metadata.update({"m2c.chat_request": True, "m2c.responses_request": b'{"model":"m","input":"key: %s"}' % KEY.encode(),
                       "m2c.model": "m"})
    return f


class FakeTee(Tee):
    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.raw, self.out = [b"data: {\"partial\": 1}\n\n"], [b"event: response.created\ndata: {}\n\n"]

    def __call__(self, data: bytes) -> list[bytes]:
        return [data]


class KeyHolder:
    """Stands in for MimoTranslate: the recorder asks it for the key to scrub."""

    name = "mimotranslate"

    def api_key(self) -> str:
        return KEY


def test_recorder_redacts_and_completes_flows_in_flight_at_shutdown():
    rec = Recorder()
    with taddons.context(KeyHolder(), rec) as tctx:
        waiting = translated_flow()  # still waiting for the provider's headers
        streaming = translated_flow()  # mid-stream
        rec.request(waiting)
        rec.request(streaming)
        streaming.response = tutils.tresp(headers=http.Headers(content_type="text/event-stream",
                                                               set_cookie="lb=cookie-secret-91be44"), content=None)
        rec.responseheaders(streaming)
        streaming.response.stream = FakeTee()
        streaming.metadata["m2c.error_detail"] = f"upstream said: bad key {KEY}"
        rec.done()  # a reload of addon/mimo.py, not the end: nothing is cut off
        assert waiting.marked != ":x:" and not streaming.comment
        tctx.master.should_exit.set()  # mitmproxy's shutdown sets it before every addon's done()
        rec.done()
    for f in (waiting, streaming):
        assert f.request.headers["api-key"] == secrets.REDACTED
        assert f.request.headers["authorization"] == secrets.REDACTED
        assert f.marked == ":x:" and "cut off" in f.comment
        assert KEY not in json.dumps(f.get_state(), default=repr)
    assert streaming.response.content == b'data: {"partial": 1}\n\n'  # the bytes received so far
    assert streaming.metadata["m2c.upstream_status"] == 200
    assert streaming.metadata["m2c.client_body"].startswith("event: response.created")
    assert streaming.response.headers["set-cookie"] == secrets.REDACTED


def test_recorder_keeps_pass_through_cookies_for_the_client():
    """A response that was not sent yet gets its Set-Cookie back right after Save wrote the flow."""
    rec = Recorder()
    with taddons.context(rec) as tctx:
        rec.running()
        restore = tctx.master.addons.get("m2crestoreaftersave")
        f = tflow.tflow(resp=tutils.tresp(headers=http.Headers(set_cookie="id=cookie-secret-91be44")))
        f.request.headers["cookie"] = CODEX_COOKIE
        rec.request(f)
        rec.response(f)
        assert f.response.headers["set-cookie"] == secrets.REDACTED  # what Save writes
        assert f.request.headers["cookie"] == secrets.REDACTED
        restore.response(f)
        assert f.response.headers["set-cookie"] == "id=cookie-secret-91be44"  # what the client gets


def test_recorder_records_final_status_after_a_successful_retry():
    rec = Recorder()
    with taddons.context(rec):
        f = translated_flow()
        f.response = tutils.tresp(status_code=429, headers=http.Headers(content_type="application/json", retry_after="2"))
        rec.responseheaders(f)
        assert f.metadata["m2c.upstream_status"] == 429 and json.loads(f.metadata["m2c.upstream_headers"]) == {"retry-after": "2"}
        f.metadata["m2c.retries"] = "429 → retry in 2.0s"
        f.metadata["m2c.upstream_body"] = "data: {}\n\ndata: [DONE]\n\n"
        rec.response(f)
        assert f.metadata["m2c.upstream_status"] == 200
        assert f.metadata["m2c.upstream_content_type"] == "text/event-stream"


def test_replay_addon_rejects_a_file_without_translated_exchanges(tmp_path):
    empty = tmp_path / "empty.mitm"
    empty.write_bytes(b"")
    addon = Replay()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match="no translated"):
            tctx.configure(addon, mimo_replay=str(empty))
        bad = tmp_path / "bad.mitm"
        bad.write_bytes(b"this is not a flow file")
        with pytest.raises(exceptions.OptionsError, match="mimo_replay"):
            tctx.configure(addon, mimo_replay=str(bad))


# ------------------------------------------------------------------------------------------------
# The whole path through real mitmdump processes


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A session recorded with `launch.py record` against the strict fake MiMo."""
    tmp = tmp_path_factory.mktemp("rec")
    path = tmp / "session.mitm"
    with FakeMimo(keys=(KEY,)).start() as fake:
        for spec in REPLIES:
            fake.queue(spec)
        port = proxyproc.free_port()
        proc = cli_proc(["--base-url", fake.base_url, "record", str(path), "--port", str(port)],
                        clean_env(MIMO_API_KEY=KEY), tmp / "record.log")
        try:
            proxyproc.wait_port(port, proc)
            run = run_session(port, variant=1)
        finally:
            rc = stop(proc)
        upstream_requests = [r.raw for r in fake.chat_requests]  # the Chat requests as the provider got them
    assert rc == 0, (tmp / "record.log").read_text()
    return path, run, upstream_requests, tmp


@pytest.mark.e2e
def test_recorded_file_is_complete_and_secret_free(recording):
    path, run, upstream_requests, _ = recording
    assert len(upstream_requests) == 4
    assert [status for status, _ in run.answers][:3] == [200, 200, 200]
    assert b"messages too long" in run.answers[3][1]  # the provider's 400, as the translator reports it
    assert_no_secret(path)
    flows = flowfile.read_flows(path)
    assert [f.request.path for f in flows][:1] == ["/v1/models"]
    translated = [f for f in flows if "m2c.chat_request" in f.metadata]
    assert len(translated) == 4
    for f in translated[:3]:  # streamed answers: the body mitmproxy would not keep is there
        assert f.response.content.startswith(b"data: ") and f.metadata["m2c.upstream_status"] == 200
        assert f.request.headers["authorization"] == secrets.REDACTED
    assert b"[DONE]" not in translated[2].response.content  # the cut-off stream, as received
    assert translated[2].error is not None and translated[2].marked == ":x:"
    assert translated[3].metadata["m2c.upstream_status"] == 400 and translated[3].marked == ":x:"
    assert "exec_command" in translated[0].comment and "in=" in translated[0].comment
    # The flow's body is the Chat request as sent (held back from the relay hop, put back on the flow).
    assert [f.request.content for f in translated] == upstream_requests
    exchanges = [e for e in flowfile.load(path) if e.translated]
    assert [e.client_body for e in exchanges] == [answer for _, answer in run.answers]  # what Codex got, byte for byte


@pytest.mark.e2e
def test_replay_is_offline_and_gives_the_same_translated_events(recording, tmp_path):
    path, recorded_run, _, _ = recording
    replayed_file = tmp_path / "replayed.mitm"
    port = proxyproc.free_port()
    # No key in the environment and no provider running: everything must come from the recording.
    proc = cli_proc(["replay", str(path), "--port", str(port), "--save", str(replayed_file)], clean_env(),
                    tmp_path / "replay.log")
    try:
        proxyproc.wait_port(port, proc)
        run = run_session(port, variant=2)
        # Every recording is used now: a request matching none is refused in the form its client reads,
        # a streaming client (Codex) gets response.failed, a non-streaming one an HTTP 400 (README says so).
        beyond = _body("beyond", 9, [_msg("user", "A question the recording never saw.")])
        status, streamed = run.post(beyond)
        assert status == 200 and b"response.failed" in streamed and b"no recorded answer" in streamed, streamed
        status, plain = run.post({**beyond, "stream": False})
        assert status == 400 and b"no recorded answer" in plain, plain
    finally:
        assert stop(proc) == 0, (tmp_path / "replay.log").read_text()
    run.answers = run.answers[:len(recorded_run.answers)]
    assert [s for s, _ in run.answers] == [s for s, _ in recorded_run.answers]
    for (_, got), (_, want) in zip(run.answers, recorded_run.answers):
        assert comparable_events(got) == comparable_events(want)
    replayed = [e for e in flowfile.load(replayed_file) if e.translated]
    assert [e.replay.split()[-1] for e in replayed] == ["exact"] * 4 + ["left"] * 2  # "no recorded answer left"
    assert replayed[2].upstream_broken and "response.failed" in replayed[2].client_body.decode()


@pytest.mark.e2e
def test_replay_goes_on_across_a_script_reload(recording, monkeypatch):
    path = str(recording[0])
    monkeypatch.setenv("MIMO_API_KEY", "sk-restored-afterwards")  # configure() puts the replay placeholder there
    first = Replay()
    with taddons.context(MimoTranslate(), first) as tctx:  # the translator owns mimo_base_url
        tctx.configure(first, mimo_replay=path)
        server, matcher = first.playing.server, first.playing.matcher
        base_url = tctx.options.mimo_base_url
        first.done()  # mitmproxy reloading addon/mimo.py: the old instance's done(), not the end
        reloaded = Replay()
        reloaded.configure(set(tctx.options.keys()))  # the new instance sees every option at once
        assert (reloaded.playing.server, reloaded.playing.matcher) == (server, matcher)
        port = int(base_url.rsplit(":", 1)[1].split("/")[0])
        assert tctx.options.mimo_base_url == base_url
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # still serving
        tctx.master.should_exit.set()
        reloaded.done()  # the end of the process: the stand-in provider stops
        assert reloaded.playing.server is None
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.mark.e2e
def test_show_prints_the_session_as_a_transcript(recording):
    path, *_ = recording
    out = subprocess.run([sys.executable, "-c", "import sys; from mimo2codex.cli import commands as cli; sys.exit(cli.main(sys.argv[1:]))",
                          "show", str(path)], cwd=ROOT, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for expected in ("4 model requests to mimo", "user> What files are here?", "thinking> The user wants the files listed",
                     '→ exec_command', '{"cmd": "ls"}', "← output", "README.md", "assistant> There are two files",
                     "[context] cwd /tmp/work", "GET /v1/models → 200", "✗ failed: server_error", "messages too long"):
        assert expected in text, f"{expected!r} missing from:\n{text}"


@pytest.mark.e2e
def test_compare_finds_no_change_then_a_rule_change(recording, tmp_path):
    path, *_ = recording
    out = io.StringIO()
    assert compare.run(str(path), out=out) == 0, out.getvalue()
    assert "no differences" in out.getvalue()
    changed = tmp_path / "mimo-changed.yaml"
    changed.write_text((ROOT / "rules" / "mimo.yaml").read_text() + "\nset: {top_p: 0.5}\n")
    out = io.StringIO()
    assert compare.run(str(path), rules_name=str(changed), out=out) == 1, out.getvalue()
    assert "chat request DIFFERS" in out.getvalue() and "top_p" in out.getvalue()


@pytest.mark.e2e
def test_compare_against_an_upstream_that_fails_is_not_a_success(recording, monkeypatch):
    path, *_ = recording
    monkeypatch.setenv("MIMO_API_KEY", "sk-not-the-fakes-key")
    with FakeMimo(keys=("sk-only-this-one",)).start() as fake:  # answers every request with 401
        out = io.StringIO()
        assert compare.run(str(path), upstream="url", base_url=fake.base_url, out=out) >= 1, out.getvalue()
    assert "answer FAILED" in out.getvalue()


@pytest.mark.e2e
def test_mitmdump_w_redacts_a_flow_still_waiting_at_shutdown(tmp_path):
    """The documented `mitmdump -s addon/mimo.py -w FILE`, stopped while a turn is in flight."""
    path = tmp_path / "cut.mitm"
    with FakeMimo(keys=(KEY,)).start() as fake:
        fake.queue({"text": "slow " * 40, "chunk_delay": 0.2})
        fake.queue({"text": "never sent", "header_delay": 30})
        proxy = proxyproc.start(fake.base_url, key=KEY, args=("-w", str(path)), log_path=tmp_path / "proxy.log")
        try:
            def post(turn: int) -> None:
                try:
                    Run(proxy.port, 0).post(_body("s", turn, [_msg("user", "hi")]))
                except Exception:  # the proxy goes away mid-answer: expected
                    pass

            for i in range(2):
                threading.Thread(target=post, args=(i,), daemon=True).start()
                fake.wait_for_requests(i + 1, timeout=10)
            time.sleep(0.5)  # the first is mid-stream, the second waits for headers
        finally:
            proxy.stop()
    assert_no_secret(path)
    flows = [f for f in flowfile.read_flows(path) if "m2c.chat_request" in f.metadata]
    assert len(flows) == 2, (tmp_path / "proxy.log").read_text()
    for f in flows:  # the second never got response headers: only the recorder's done() redacts it
        assert f.request.headers["authorization"] == secrets.REDACTED
        assert f.marked == ":x:" and "cut off" in f.comment
    streamed = [f for f in flows if f.response is not None]  # Save writes in-flight flows in no particular order
    assert len(streamed) == 1 and streamed[0].response.content.startswith(b"data: ")  # what arrived before the stop


@pytest.mark.e2e
def test_regular_mode_pass_through_keeps_client_cookies_but_not_in_the_file(tmp_path):
    """Redacting Set-Cookie before Save must not change what a pass-through client receives."""
    import http.server
    import urllib.request as ur

    class Origin(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("set-cookie", "sid=cookie-secret-91be44")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    path, port = tmp_path / "regular.mitm", proxyproc.free_port()
    proc = subprocess.Popen([sys.executable, "-c", proxyproc.MITMDUMP, "-q", "-s", str(proxyproc.ADDON),
                             "--mode", f"regular@127.0.0.1:{port}", "--set", f"confdir={proxyproc.CONFDIR}", "-w", str(path)],
                            env=clean_env(MIMO_API_KEY=KEY), cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proxyproc.wait_port(port, proc)
        opener = ur.build_opener(ur.ProxyHandler({"http": f"http://127.0.0.1:{port}"}))
        with opener.open(f"http://127.0.0.1:{origin.server_address[1]}/", timeout=10) as r:
            assert r.headers["set-cookie"] == "sid=cookie-secret-91be44"
    finally:
        stop(proc)
        origin.shutdown()
    assert [f.response.headers["set-cookie"] for f in flowfile.read_flows(path)] == [secrets.REDACTED]
    assert_no_secret(path)
