"""Upstream faults through a real mitmdump: every case ends in a well-formed Responses answer.

Refused connections, resets and clean closes before and during the stream, stalls (the idle
watchdog, set to 1 s here), malformed SSE, invalid JSON, error objects mid-stream, HTML and empty
bodies, 429/5xx storms with the proxy's retry path, and clients hanging up. After each case the
proxy must answer the next request, have nothing in flight and have logged no traceback.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest

from mimo2codex import proxyproc
from mimo2codex.fakes.mimo import FakeMimo
from tests.support import faults as F
from tests.support.faults import call, check_answer, responses_body

pytestmark = pytest.mark.e2e

SETS = ("mimo_stream_idle_timeout=1", "mimo_stats=true")
TEXT = "The quick brown fox jumps over the lazy dog."
COMPLETION = json.dumps({"id": "c" * 32, "object": "chat.completion", "created": 1, "model": "mimo-v2.6-pro",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()
HTML = b"<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"


class Proxied:
    def __init__(self, upstream, proxy, log_path):
        self.upstream, self.proxy, self.log_path = upstream, proxy, log_path
        self.port = proxy.port
        self.baseline_tasks: int | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assert_healthy(self) -> None:
        """Serves the next request, nothing stuck in flight, no traceback logged."""
        if isinstance(self.upstream, FakeMimo):
            assert self.upstream.pending == 0, "a scripted upstream answer was never asked for"
            self.upstream.queue({"text": "still here"})
            a = call(self.port, responses_body())
            assert check_answer(a)[0] == "completed" and F.output_text(a) == "still here"
        if isinstance(self.upstream, F.RawUpstream):  # every scripted answer was asked for: retries as expected
            pending, _ = self.upstream.pending, self.upstream.reset()
            assert pending == 0, f"{pending} scripted upstream answers left over"
        s = F.wait_idle(self.port, tasks=self.baseline_tasks)
        assert (s["turns"], s["streams"], s["watched"], s["relayed"]) == (0, 0, 0, 0), s
        if self.baseline_tasks is not None:
            assert s["tasks"] <= self.baseline_tasks, f"asyncio tasks leaked: {s} (baseline {self.baseline_tasks})"
        log = self.log()
        assert "Traceback" not in log and "crashed" not in log, log[-3000:]


@contextlib.contextmanager
def _proxied(upstream_url: str, upstream, tmp_path_factory, name: str) -> Iterator[Proxied]:
    """A proxy in front of `upstream` for one module; both are stopped when the fixture ends."""
    log_path = tmp_path_factory.mktemp("faults") / f"{name}.log"
    p = Proxied(upstream, proxyproc.start(upstream_url, sets=SETS, log_path=log_path), log_path)
    try:
        yield p
    finally:
        p.proxy.stop()
        if upstream is not None:
            upstream.stop()


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    upstream = FakeMimo(keys=("sk-test",)).start()
    with _proxied(upstream.base_url, upstream, tmp_path_factory, "fake") as p:
        upstream.queue({"text": "warm"})
        check_answer(call(p.port, responses_body()))
        p.baseline_tasks = F.wait_idle(p.port)["tasks"]
        yield p


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    upstream = F.RawUpstream(default=F.whole(200, "application/json", COMPLETION)).start()
    with _proxied(upstream.base_url, upstream, tmp_path_factory, "raw") as p:
        yield p


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    with _proxied(f"http://127.0.0.1:{F.refused_port()}/v1", None, tmp_path_factory, "refused") as p:
        yield p


def _cancelled(fake_mimo: FakeMimo, timeout: float = 5.0) -> bool:
    rec = fake_mimo.chat_requests[-1]
    return fake_mimo.wait_until(lambda: rec.cancelled, timeout)


# ----------------------------------------------------------------------------------------------
# Connection failures


@pytest.mark.parametrize("stream", [True, False])
def test_refused_connection_is_a_responses_error_not_mitmproxys_html(refused, stream):
    a = call(refused.port, responses_body(stream=stream))
    kind, code, message = check_answer(a)
    if stream:
        assert (a.status, kind, code) == (200, "failed", "server_error")
    else:
        assert (kind, code, a.json()["error"]["code"]) == ("http", "502", "server_error")
    assert "got no answer" in message and "Connect call failed" in message
    # and again, on a new connection: the proxy keeps serving
    assert check_answer(call(refused.port, responses_body(stream=stream)))[0] == kind
    assert call(refused.port, path="/healthz", method="GET").json()["ok"] is True
    refused.assert_healthy()


@pytest.mark.parametrize("mode", ["fin", "rst"])
def test_upstream_gone_before_headers(raw, mode):
    raw.upstream.queue([(mode,)])
    kind, code, message = check_answer(call(raw.port, responses_body()))
    assert (kind, code) == ("failed", "server_error") and "no answer" in message
    raw.upstream.queue([(mode,)])
    a = call(raw.port, responses_body(stream=False))
    assert check_answer(a)[0] == "http" and a.status == 502
    raw.assert_healthy()


@pytest.mark.parametrize("mode", ["fin", "rst"])
def test_upstream_cut_mid_stream(fake, mode):
    fake.upstream.queue({"text": TEXT, "cut_after": 4, "cut_mode": mode})
    a = call(fake.port, responses_body())
    kind, code, message = check_answer(a)
    assert (kind, code) == ("failed", "server_error") and "mid-stream" in message
    assert any(e["type"] == "response.output_text.delta" for e in a.events)  # what arrived was streamed
    fake.assert_healthy()


@pytest.mark.parametrize("mode", ["fin", "rst"])
def test_headers_then_close_without_any_event(raw, mode):
    raw.upstream.queue([("send", F.head()), (mode,)])
    kind, code, message = check_answer(call(raw.port, responses_body()))
    assert (kind, code) == ("failed", "server_error")
    # the provider's cut, not mitmproxy's word for the relay hanging up without an answer
    assert "provider closed the connection" in message and "server closed connection" not in message, message
    raw.assert_healthy()


# ----------------------------------------------------------------------------------------------
# Stalls: the idle watchdog (1 s here, 300 s by default)


def test_stall_before_headers_ends_in_failed_and_closes_upstream(fake):
    fake.upstream.queue({"text": TEXT, "header_delay": 60})
    a = call(fake.port, responses_body(), timeout=10)
    kind, code, message = check_answer(a)
    assert (kind, code) == ("failed", "server_error") and "mimo_stream_idle_timeout" in message
    assert a.seconds < 8
    assert _cancelled(fake.upstream), "the upstream request was not closed"
    fake.assert_healthy()


def test_stall_mid_stream_ends_in_failed_and_closes_upstream(fake):
    fake.upstream.queue({"text": TEXT, "stall_after": 4})
    a = call(fake.port, responses_body(), timeout=10)
    kind, code, message = check_answer(a)
    assert (kind, code) == ("failed", "server_error") and "mid-stream" in message and "mimo_stream_idle_timeout" in message
    assert any(e["type"] == "response.output_text.delta" for e in a.events)
    assert _cancelled(fake.upstream)
    fake.assert_healthy()


def test_stall_non_stream_request(fake):
    fake.upstream.queue({"text": TEXT, "header_delay": 60})
    a = call(fake.port, responses_body(stream=False), timeout=10)
    kind, code, message = check_answer(a)
    assert kind == "http" and a.status == 504 and "mimo_stream_idle_timeout" in message
    assert _cancelled(fake.upstream)
    fake.assert_healthy()


def test_slow_but_alive_stream_is_not_cut(fake):
    # 0.35 s between events, 1 s idle limit, over 2 s in total: progress keeps it alive.
    fake.upstream.queue({"text_chunks": 3, "chunk_text": "ab", "chunk_delay": 0.35})
    a = call(fake.port, responses_body(), timeout=20)
    assert check_answer(a)[0] == "completed" and F.output_text(a) == "ababab" and a.seconds > 1.5
    fake.assert_healthy()


# ----------------------------------------------------------------------------------------------
# Bad upstream bodies


def test_error_object_mid_stream(fake):
    fake.upstream.queue({"text": TEXT, "mid_error": {"after": 4, "status": 500, "message": "engine overloaded"}})
    kind, code, message = check_answer(call(fake.port, responses_body()))
    assert (kind, code) == ("failed", "server_error") and "engine overloaded" in message
    fake.upstream.queue({"text": TEXT, "mid_error": {"after": 4, "status": 500, "message": "engine overloaded"}})
    a = call(fake.port, responses_body(stream=False))  # a client that did not stream gets an HTTP error
    kind, status, message = check_answer(a)
    assert (kind, status, a.json()["error"]["code"]) == ("http", "502", "server_error") and "engine overloaded" in message
    fake.upstream.queue({"text": TEXT, "mid_error": {"after": 3, "status": 429}})
    kind, code, _ = check_answer(call(fake.port, responses_body()))
    assert (kind, code) == ("failed", "rate_limit_exceeded")
    fake.upstream.queue({"text": TEXT, "mid_error": {"after": 3, "status": 429}})
    a = call(fake.port, responses_body(stream=False))
    assert (check_answer(a)[:2], a.json()["error"]["code"]) == (("http", "429"), "rate_limit_exceeded")
    fake.assert_healthy()


def test_malformed_sse_lines_are_skipped(raw):
    body = (F.head() + F.chunk(b"data: {garbage\n\n") + F.chunk(F.chat_chunk("Hel")) + F.chunk(b"\x00\xff\xfe\n\n")
            + F.chunk(b"event: nonsense\n: comment\nretry: x\n\n") + F.chunk(b"data: [1, 2]\n\n")
            + F.chunk(F.chat_chunk("lo")) + F.chunk(F.chat_chunk(None, "stop")) + F.chunk(b"data: [DONE]\n\n") + F.END)
    raw.upstream.queue([("send", body)])
    a = call(raw.port, responses_body())
    assert check_answer(a)[0] == "completed" and F.output_text(a) == "Hello"
    raw.assert_healthy()


def test_invalid_json_event_then_eof_fails(raw):
    raw.upstream.queue([("send", F.head() + F.chunk(F.chat_chunk("Hel")) + F.chunk(b'data: {"choices": [{"delta": {"con\n\n') + F.END)])
    kind, code, _ = check_answer(call(raw.port, responses_body()))
    assert (kind, code) == ("failed", "server_error")
    raw.assert_healthy()


def _failed(a, stream: bool) -> tuple[str, str]:
    """(code, message) of a failed answer: response.failed for a stream, an HTTP 502 JSON error otherwise."""
    kind, code, message = check_answer(a)  # also asserts no "<html" reached the client
    if stream:
        assert kind == "failed", (kind, code)
        return code, message
    assert (kind, code) == ("http", "502"), (kind, code, message)
    return a.json()["error"]["code"], message


@pytest.mark.parametrize("stream", [True, False])
def test_invalid_json_body(raw, stream):
    raw.upstream.queue(F.whole(200, "application/json", b'{"choices": [{"message": '))
    assert _failed(call(raw.port, responses_body(stream=stream)), stream)[0] == "server_error"
    raw.assert_healthy()


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("status", [200, 502])
def test_html_answer(raw, status, stream):
    raw.upstream.queue(*[F.whole(status, "text/html", HTML)] * (3 if status == 502 else 1))  # 502: two retries
    code, message = _failed(call(raw.port, responses_body(stream=stream)), stream)
    assert code == "server_error"
    if status == 502:
        assert "502 Bad Gateway" in message
    raw.assert_healthy()


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("status,ctype", [(200, "application/json"), (200, "text/event-stream"), (500, "application/json")])
def test_empty_body(raw, status, ctype, stream):
    raw.upstream.queue(*[F.whole(status, ctype, b"")] * (3 if status == 500 else 1))
    code, message = _failed(call(raw.port, responses_body(stream=stream)), stream)
    assert code == "server_error"
    if status == 500:
        assert "no error details" in message
    raw.upstream.queue([("send", F.head() + F.END)])  # chunked SSE without a single event
    assert _failed(call(raw.port, responses_body(stream=stream)), stream)[0] == "server_error"
    raw.assert_healthy()


@pytest.mark.parametrize("ctype,body", [("application/json", b"[1, 2, 3]"), ("application/json", b'"just a string"'),
                                        ("application/json", b"null"), ("application/json", b'{"unexpected": true}'),
                                        ("text/event-stream", b'data: {"unexpected": true}\n\ndata: [DONE]\n\n')])
def test_json_that_is_not_a_completion(raw, ctype, body):
    for stream in (True, False):
        raw.upstream.queue(F.whole(200, ctype, body))
        assert _failed(call(raw.port, responses_body(stream=stream)), stream)[0] == "server_error"
    raw.assert_healthy()


# ----------------------------------------------------------------------------------------------
# 429 / 5xx: the proxy's retry path (MimoTranslate.retry), then what Codex acts on


def test_429_then_success_is_retried(fake):
    n = len(fake.upstream.chat_requests)
    fake.upstream.queue({"error": {"status": 429}}, {"text": TEXT})
    a = call(fake.port, responses_body())
    assert check_answer(a)[0] == "completed" and F.output_text(a) == TEXT
    assert len(fake.upstream.chat_requests) - n == 2
    fake.assert_healthy()


def test_retry_after_is_honoured(fake):
    fake.upstream.queue({"error": {"status": 503, "retry_after": 0.2}}, {"text": TEXT})
    a = call(fake.port, responses_body(stream=False))
    assert check_answer(a)[0] == "completed" and F.output_text(a) == TEXT
    fake.assert_healthy()


def test_429_storm_is_rate_limit_exceeded_with_try_again(fake):
    # Decided once (codex-responses.md §4): after the proxy's own bounded retries, an HTTP 429 without
    # Retry-After, stream or not, so Codex fails at once instead of multiplying the requests.
    for stream in (True, False):
        n = len(fake.upstream.chat_requests)
        fake.upstream.queue({"error": {"status": 429, "retry_after": 0.3}, "repeat": 3})
        a = call(fake.port, responses_body(stream=stream))
        kind, status, message = check_answer(a)
        assert (kind, status, a.json()["error"]["code"]) == ("http", "429", "rate_limit_exceeded")
        assert "try again in 0.3s" in message.lower()
        assert "retry-after" not in a.headers
        assert len(fake.upstream.chat_requests) - n == 3  # the first attempt and two retries, then it gives up
    fake.assert_healthy()


@pytest.mark.parametrize("status,code", [(500, "server_error"), (502, "server_error"), (503, "server_is_overloaded"), (504, "server_error")])
def test_5xx_storm(fake, status, code):
    fake.upstream.queue({"error": {"status": status}, "repeat": 3})
    assert check_answer(call(fake.port, responses_body()))[:2] == ("failed", code)
    fake.assert_healthy()


def test_concurrent_storm_then_recovery(fake):
    fake.upstream.reset()
    fake.upstream.queue({"error": {"status": 503}, "repeat": -1})
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: call(fake.port, responses_body(f"n{i}", stream=bool(i % 2)), timeout=30), range(32)))
    outcomes = {check_answer(a)[:2] for a in answers}
    assert outcomes <= {("failed", "server_is_overloaded"), ("http", "503")}, outcomes
    fake.upstream.reset()
    fake.assert_healthy()


# ----------------------------------------------------------------------------------------------
# The client hangs up


def _send_and_hang_up(port: int, body: dict, read_bytes: int, until=None) -> None:
    raw = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"content-length: %d\r\n\r\n%s" % (len(raw), raw))
        if until is not None:
            assert until(), "the request never reached the upstream"
        got = b""
        while len(got) < read_bytes:
            data = s.recv(65536)
            assert data, "proxy closed first"
            got += data


def _exchange(s: socket.socket, body: dict, connection: str | None) -> tuple[bytes, bytes]:
    """One request on an open connection; (head, body) of the answer, read by its own framing."""
    raw = json.dumps(body).encode()
    extra = b"connection: %s\r\n" % connection.encode() if connection else b""
    s.sendall(b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n%s"
              b"content-length: %d\r\n\r\n%s" % (extra, len(raw), raw))
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(65536) or pytest.fail(f"closed before the answer's head: {got!r}")
    head, _, rest = got.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")), None)
    while (len(rest) < length) if length is not None else not rest.endswith(b"\r\n0\r\n\r\n"):
        rest += s.recv(65536) or pytest.fail(f"closed before the answer's end: {rest[-200:]!r}")
    return head, rest


@pytest.mark.parametrize("stream", [True, False])
def test_client_connection_close_is_honoured(fake, stream):
    # The translator sends the provider fresh headers; the client's `Connection: close` must survive
    # it, or a client that reads until EOF hangs on a connection the proxy keeps open.
    fake.upstream.queue({"text": TEXT})
    with socket.create_connection(("127.0.0.1", fake.port), timeout=10) as s:
        head, body = _exchange(s, responses_body(stream=stream), "close")
        assert head.startswith(b"HTTP/1.1 200") and b"lazy dog" in body
        s.settimeout(5)
        try:
            rest = s.recv(65536)
        except socket.timeout:
            pytest.fail("the proxy kept the connection open after the client asked to close it")
        assert rest == b"", rest[:200]
    fake.assert_healthy()


def test_keep_alive_serves_several_requests_on_one_connection(fake):
    with socket.create_connection(("127.0.0.1", fake.port), timeout=10) as s:
        for text in ("first answer", "second answer"):
            fake.upstream.queue({"text": text})
            head, body = _exchange(s, responses_body(stream=False), None)
            assert head.startswith(b"HTTP/1.1 200") and json.loads(body)["output"][-1]["content"][0]["text"] == text
    fake.assert_healthy()


def test_client_disconnect_mid_stream_cancels_upstream(fake):
    fake.upstream.queue({"text_chunks": 400, "chunk_delay": 0.02})
    _send_and_hang_up(fake.port, responses_body(), read_bytes=3000)
    assert _cancelled(fake.upstream), "upstream still generating after the client left"
    fake.assert_healthy()


def test_client_disconnect_before_headers_cancels_upstream(fake):
    n = len(fake.upstream.chat_requests)
    fake.upstream.queue({"text": TEXT, "header_delay": 5})
    _send_and_hang_up(fake.port, responses_body(), read_bytes=0,
                      until=lambda: fake.upstream.wait_until(lambda: len(fake.upstream.chat_requests) > n))
    assert _cancelled(fake.upstream)
    fake.assert_healthy()


def test_many_hang_ups_leak_nothing(fake):
    fake.upstream.queue({"text_chunks": 200, "chunk_delay": 0.01, "repeat": 12})
    threads = [threading.Thread(target=_send_and_hang_up, args=(fake.port, responses_body(f"h{i}"), 1500)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert fake.upstream.wait_until(lambda: all(r.done for r in fake.upstream.chat_requests), 10)
    fake.assert_healthy()


# ----------------------------------------------------------------------------------------------
# Private mitmproxy API the guard relies on, pinned here for 11 and 12


def test_private_api_pins():
    from mitmproxy import flow, http
    from mitmproxy.addons import proxyserver
    from mitmproxy.proxy import server

    assert "connections" in proxyserver.Proxyserver().__dict__
    assert "transports" in server.ConnectionHandler.__annotations__
    assert flow.Error.KILLED_MESSAGE
    from mitmproxy.net.http.http1 import assemble

    req = http.Request.make("POST", "http://x/", b"", {"a": "1"})
    from addon.guard import WireOnlyHeaders

    req.headers = WireOnlyHeaders(req.headers.fields, {b"a": b"secret"})
    assert b"a: secret" in assemble.assemble_request_head(req) and "secret" not in str(req.headers)
