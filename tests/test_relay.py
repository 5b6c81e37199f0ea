"""The relay (addon/relay.py) through a real mitmdump: retried answers stream, a slow prefill gets
keep-alive events, hang-ups cancel the provider request, replays of retried turns stay right, and
the key never reaches a flow file. Timing bounds are generous: they check a behaviour (the answer
arrives while the provider still holds the rest), they are not benchmarks (bench/relay.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time

import openai
from mitmproxy import http
import pytest

from addon import flowfile, relay
from mimo2codex import proxyproc
from mimo2codex.fakes.mimo import FakeMimo
from tests.support import faults as F
from tests.support.codex_cli import require_codex, run_codex
from tests.support.session import clean_env, cli_proc, stop

pytestmark = pytest.mark.e2e

KEY = "sk-relay-test-key-8c1f2e99"
SETS = ("mimo_keepalive=1", "mimo_stats=true")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    log = tmp_path_factory.mktemp("relay") / "mitmdump.log"
    with FakeMimo(keys=(KEY,)).start() as fake, proxyproc.start(fake.base_url, key=KEY, sets=SETS, log_path=log) as px:
        yield fake, px


@pytest.fixture
def proxy(chain):
    return chain[1]


@pytest.fixture
def mimo(chain, proxy):
    fake = chain[0]
    fake.reset()
    yield fake
    assert fake.pending == 0, "a scripted upstream answer was never asked for"
    s = F.wait_idle(proxy.port)
    assert (s["turns"], s["streams"], s["watched"], s["relayed"]) == (0, 0, 0, 0), s
    log = proxy.log()
    assert "Traceback" not in log and KEY not in log, log[-3000:]


def sdk(proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key="codex-placeholder", max_retries=0, timeout=60)


def test_a_retried_request_streams(mimo, proxy):
    mimo.queue({"error": {"status": 429}}, {"text_chunks": 8, "chunk_text": "ab", "chunk_delay": 0.4})
    first_delta, still_sending, text = None, None, ""
    with sdk(proxy).responses.create(model="mimo-v2.6-pro", input="hi", stream=True) as events:
        for e in events:
            if e.type == "response.output_text.delta" and first_delta is None:
                first_delta = time.monotonic()
                still_sending = not mimo.chat_requests[-1].done
            if e.type == "response.output_text.delta":
                text += e.delta
    assert text == "ab" * 8
    assert [r.status for r in mimo.chat_requests] == [429, 200]
    assert still_sending, "the retried answer arrived in one piece after the provider finished"


@pytest.mark.parametrize("where", ["header_delay", "body_delay"])  # silent before its headers, or behind them
def test_slow_prefill_opens_the_stream_at_once_and_completes(mimo, proxy, where):
    mimo.queue({"text": "after the long prefill", where: 6})
    start = time.monotonic()
    seen: dict[str, float] = {}
    with sdk(proxy).responses.create(model="mimo-v2.6-pro", input="hi", stream=True) as events:
        for e in events:
            seen.setdefault(e.type, time.monotonic() - start)
            if e.type == "response.completed":
                final = e.response
    assert seen["response.created"] < 2.5, seen  # not after the provider's 6 s
    assert seen["response.output_text.delta"] > 5, seen
    assert final.output_text == "after the long prefill"


def test_keep_alive_events_are_counted_as_events_not_comments(mimo, proxy):
    mimo.queue({"text": "ok", "header_delay": 3.5})
    a = F.call(proxy.port, F.responses_body())
    types = [e["type"] for e in a.events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types.count("response.in_progress") >= 3, types  # one a second while the provider is silent
    assert [e["sequence_number"] for e in a.events] == list(range(len(a.events)))
    assert F.check_answer(a)[0] == "completed" and F.output_text(a) == "ok"


def test_a_429_storm_stays_an_http_429_though_the_retries_outlast_the_hold(mimo, proxy):
    # Decided once (codex-responses.md §4): the backoff (0.5 + 1 s) does not open the client stream.
    mimo.queue({"error": {"status": 429}, "repeat": 3})
    a = F.call(proxy.port, F.responses_body())
    assert F.check_answer(a)[:2] == ("http", "429") and len(mimo.chat_requests) == 3


def test_error_after_the_stream_opened_is_response_failed(mimo, proxy):
    mimo.queue({"error": {"status": 400, "message": "prompt rejected late"}, "header_delay": 2})
    a = F.call(proxy.port, F.responses_body())
    kind, code, message = F.check_answer(a)
    assert (a.status, kind, code) == (200, "failed", "invalid_prompt") and "prompt rejected late" in message


def _stream_opened(s: socket.socket) -> bool:
    got = b""
    while b"response.created" not in got:
        data = s.recv(65536)
        if not data:
            return False
        got += data
    return True


def _hang_up_after(port: int, body: dict, until) -> None:
    raw = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"content-length: %d\r\n\r\n%s" % (len(raw), raw))
        assert until(s)


def test_hang_up_during_prefill_cancels_the_provider_request(mimo, proxy):
    mimo.queue({"text": "never read", "header_delay": 8})
    _hang_up_after(proxy.port, F.responses_body(), _stream_opened)
    assert mimo.wait_until(lambda: mimo.chat_requests and mimo.chat_requests[-1].cancelled, 5)


def test_hang_up_during_the_retry_wait_sends_no_retry(mimo, proxy):
    mimo.queue({"error": {"status": 429, "retry_after": 2}}, {"text": "never asked for"})
    _hang_up_after(proxy.port, F.responses_body(), lambda s: mimo.wait_until(lambda: len(mimo.chat_requests) == 1, 5))
    time.sleep(3)
    assert len(mimo.chat_requests) == 1
    mimo.reset()  # the unused scripted answer


def test_hang_up_while_a_retry_prefills_cancels_it(mimo, proxy):
    mimo.queue({"error": {"status": 503}}, {"text": "never read", "header_delay": 8})
    _hang_up_after(proxy.port, F.responses_body(), lambda s: mimo.wait_until(lambda: len(mimo.chat_requests) == 2, 5))
    assert mimo.wait_until(lambda: mimo.chat_requests[-1].cancelled, 5)


@pytest.mark.parametrize("where", ["header_delay", "body_delay"])
def test_codex_survives_a_prefill_longer_than_its_idle_timeout(mimo, proxy, tmp_path, where):
    # Codex 0.169 times out only silence after the response headers (body_delay); both must pass.
    require_codex()
    mimo.queue({"text": "patience pays", where: 7})
    r = run_codex(proxy.base_url, "say something", workdir=tmp_path, stream_idle_timeout_ms=3000,
                  stream_max_retries=0, timeout=60)
    assert r.returncode == 0 and r.final_message == "patience pays", f"{r}\n{proxy.log()[-3000:]}"
    assert len(mimo.chat_requests) == 1  # no idle-timeout reconnect


def test_replaying_retried_turns_gives_each_its_own_answer(tmp_path):
    path = tmp_path / "retried.mitm"
    with FakeMimo(keys=(KEY,)).start() as fake:
        fake.queue({"text": "first answer"}, {"error": {"status": 429}, "repeat": 3},
                   {"error": {"status": 503}}, {"text": "third answer"})
        with proxyproc.start(fake.base_url, key=KEY, args=("-w", str(path)), log_path=tmp_path / "rec.log") as px:
            recorded = [F.call(px.port, F.responses_body(f"turn {i}")) for i in (1, 2, 3)]
        chat_url = fake.base_url + "/chat/completions"
    assert [F.check_answer(a)[:2] for a in recorded] == [("completed", ""), ("http", "429"), ("completed", "")]
    data = path.read_bytes()
    assert KEY.encode() not in data
    flows = [f for f in flowfile.read_flows(path) if "m2c.chat_request" in f.metadata]
    assert [f.metadata["m2c.upstream_url"] for f in flows] == [chat_url] * 3
    assert all("x-m2c-ticket" in f.request.headers and KEY not in str(f.request.headers) for f in flows)
    assert [f.metadata.get("m2c.upstream_status") for f in flows] == [200, 429, 200]

    port = proxyproc.free_port()
    proc = cli_proc(["replay", str(path), "--port", str(port)], clean_env(), tmp_path / "replay.log")
    try:
        proxyproc.wait_port(port, proc)
        replayed = [F.call(port, F.responses_body(f"turn {i}")) for i in (1, 2, 3)]
    finally:
        assert stop(proc) == 0, (tmp_path / "replay.log").read_text()
    assert [F.check_answer(a)[:2] for a in replayed] == [F.check_answer(a)[:2] for a in recorded]
    # Turn 2's retries carry its index too: matched by shape they used to get turn 1's answer.
    assert [F.output_text(a) for a in (replayed[0], replayed[2])] == ["first answer", "third answer"]


def test_a_whole_json_answer_after_the_stream_opened_is_translated(tmp_path):
    completion = json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "mimo-v2.6-pro",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "late and whole"},
                                          "finish_reason": "stop"}]}).encode()
    upstream = F.RawUpstream(default=F.whole(200, "application/json", completion)).start()
    try:
        with proxyproc.start(upstream.base_url, key=KEY, sets=SETS, log_path=tmp_path / "p.log") as px:
            upstream.queue([("sleep", 2.5)] + F.whole(200, "application/json", completion))
            a = F.call(px.port, F.responses_body())
            path = tmp_path / "p.log"
    finally:
        upstream.stop()
    types = [e["type"] for e in a.events]
    assert types.count("response.created") == 1 and types.count("response.in_progress") >= 2, types
    assert F.check_answer(a)[0] == "completed" and F.output_text(a) == "late and whole", path.read_text()[-2000:]


def _accept_queue(sock) -> int:
    """Connections the kernel has queued on a listening socket, not yet accepted (tcpi_unacked)."""
    return struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 24)[0]


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="Linux TCP_INFO")
def test_a_burst_of_connects_to_the_relay_is_queued_not_dropped():
    # Every flow in flight connects to the relay at once (bench/run.py: 1024 streams). With asyncio's
    # default backlog of 100 the kernel dropped the rest, and some reached mitmproxy as a reset
    # before any answer ("server closed connection"). The event loop does not run below: nothing
    # is accepted, so every connect must wait in the listen queue.
    async def burst() -> int:
        saved = relay.STATE.server, relay.STATE.port, relay.STATE.sock
        relay.STATE.server = None
        relay.Relay().running()  # synchronous (a script reload calls it so): the socket listens at once
        task, sock, clients = relay.STATE.server, relay.STATE.sock, []
        try:
            for _ in range(300):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", relay.STATE.port))
                clients.append(s)
            deadline = time.monotonic() + 5
            while (queued := _accept_queue(sock)) < len(clients) and time.monotonic() < deadline:
                time.sleep(0.05)
            return queued
        finally:
            for s in clients:
                s.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            sock.close()
            relay.STATE.server, relay.STATE.port, relay.STATE.sock = saved

    loop = asyncio.new_event_loop()  # not asyncio.run: it unsets the thread's loop that taddons tests use later
    try:
        assert loop.run_until_complete(burst()) == 300
    finally:
        loop.close()


def test_the_relay_refuses_a_request_without_a_ticket_before_reading_its_body():
    # Any local process can connect to the relay's port: without a ticket it must not make the proxy
    # read (and hold) a body of the size it announces, nor crash on a length that is not a number.
    async def ask(head: bytes) -> bytes:
        saved = relay.STATE.server, relay.STATE.port, relay.STATE.sock
        relay.STATE.server = None
        relay.Relay().running()
        task, sock = relay.STATE.server, relay.STATE.sock
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.STATE.port)
            writer.write(head)  # the announced body never comes
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return answer
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            sock.close()
            relay.STATE.server, relay.STATE.port, relay.STATE.sock = saved

    loop = asyncio.new_event_loop()
    try:
        for length in (b"10000000000", b"-5", b"abc"):
            head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: " + length + b"\r\n\r\n"
            answer = loop.run_until_complete(ask(head))
            assert answer.startswith(b"HTTP/1.1 403") and b"unknown or used ticket" in answer, answer
    finally:
        loop.close()



def test_the_body_is_held_back_from_mitmproxy_and_put_back_on_the_flow():
    # mitmproxy sends a translated request to the relay without its body (the relay would only read
    # back what the flow holds); picking up the ticket puts the body back on the flow, and a request
    # that announces a body is refused: it was not sent by mitmproxy for this ticket.
    from mitmproxy.test import taddons, tflow, tutils

    body = b'{"model":"m","messages":[]}'

    async def ask(length: bytes) -> tuple[bytes, http.HTTPFlow]:
        saved = relay.STATE.server, relay.STATE.port, relay.STATE.sock
        relay.STATE.server = None
        relay.Relay().running()
        task = relay.STATE.server
        flow = tflow.tflow(req=tutils.treq(content=body))
        flow.request.raw_content = b""
        relay.STATE.tickets["t1"] = relay.Ticket("http://127.0.0.1:1/v1/chat/completions", None, True, flow, body=body)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.STATE.port)
            flow.server_conn.sockname = writer.get_extra_info("sockname")  # the ticket is bound to its flow's connection
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-m2c-ticket: t1\r\ncontent-length: "
                         + length + b"\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return answer, flow
        finally:
            relay.STATE.tickets.pop("t1", None)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            relay.STATE.sock.close()
            relay.STATE.server, relay.STATE.port, relay.STATE.sock = saved

    loop = asyncio.new_event_loop()
    try:
        with taddons.context():
            for length in (b"27", b"5", b"abc"):
                answer, flow = loop.run_until_complete(ask(length))
                assert answer.startswith(b"HTTP/1.1 400") and b"bad content-length" in answer, answer
                assert flow.request.raw_content == body and flow.request.headers["content-length"] == "27"
    finally:
        loop.close()


def test_a_ticket_never_picked_up_gives_the_flow_its_body_back():
    from mitmproxy.test import taddons, tflow, tutils

    flow = tflow.tflow(req=tutils.treq(content=b""))
    flow.request.headers[relay.TICKET_HEADER] = "t2"
    relay.STATE.tickets["t2"] = relay.Ticket("http://127.0.0.1:1/v1/chat/completions", None, True, flow, body=b"{}")
    with taddons.context():
        relay.Relay().error(flow)  # e.g. the relay was unreachable
    assert "t2" not in relay.STATE.tickets and flow.request.raw_content == b"{}"


LATER_SCRIPT = '''
import logging

def request(flow):
    logging.getLogger("later").warning("later script sees %d bytes", len(flow.request.raw_content or b""))
'''


def test_a_script_loaded_after_ours_sees_the_chat_request_it_will_send(tmp_path):
    # The body is held back from the relay hop only when nothing can look at the request in between:
    # a script's request hook after ours (and mitmproxy's interception) sees the body that is sent.
    later = tmp_path / "later.py"
    later.write_text(LATER_SCRIPT)
    with FakeMimo(keys=("sk-test",)).start() as fake:
        with proxyproc.start(fake.base_url, args=("-s", str(later)), log_path=tmp_path / "px.log") as px:
            fake.queue({"text": "seen"})
            a = F.call(px.port, F.responses_body())
            assert F.check_answer(a)[0] == "completed" and F.output_text(a) == "seen"
            seen = [int(line.rsplit("sees ", 1)[1].split()[0]) for line in px.log().splitlines() if "later script sees" in line]
            assert seen == [len(fake.chat_requests[0].raw)] and seen[0] > 100, seen


@pytest.mark.parametrize("sets, scripts, held", [
    ({}, [], True),
    ({"intercept": "~q"}, [], False),
    ({"intercept": "~q", "then": {"intercept_active": False}}, [], True),  # the filter kept, switched off
    ({}, ["LAST"], True),
    ({}, ["LAST", "other.py"], False),
    ({}, ["other.py", "LAST"], True),
])
def test_the_body_is_held_back_only_when_nothing_can_see_the_request(sets, scripts, held):
    from collections.abc import Sequence

    from mitmproxy.addons.intercept import Intercept
    from mitmproxy.test import taddons

    with taddons.context(Intercept()) as tctx:
        # `scripts` is ScriptLoader's, which would load them: only its option here.
        tctx.options.add_option("scripts", Sequence[str], [], "")
        then = sets.pop("then", {})
        tctx.options.update(scripts=[str(relay.ENTRY) if s == "LAST" else s for s in scripts], **sets)
        tctx.options.update(**then)  # setting a filter switches interception on: switched off after it
        assert relay._unseen() is held


@pytest.mark.parametrize("keepalive", [0, 1])
def test_a_provider_silent_past_mimo_upstream_timeout_ends_the_turn_with_an_error_naming_it(tmp_path, keepalive):
    """A stream turn ends with `response.failed` naming the option, with keep-alives before it when
    they are on (the stream opened after the hold), and no second attempt is made."""
    sets = (f"mimo_keepalive={keepalive}", "mimo_upstream_timeout=3", "mimo_stats=true")
    with FakeMimo(keys=(KEY,)).start() as fake, proxyproc.start(fake.base_url, key=KEY, sets=sets, log_path=tmp_path / "log") as px:
        fake.queue({"text": "too late", "header_delay": 10})
        start = time.monotonic()
        a = F.call(px.port, F.responses_body(), timeout=15)
        took = time.monotonic() - start
        kind, _, message = F.check_answer(a)
        assert "mimo_upstream_timeout" in message and "no response headers within 3 s" in message, message
        assert 2.9 < took < 7, took
        assert len(fake.chat_requests) == 1
        assert kind == "failed"
        in_progress = [e["type"] for e in a.events].count("response.in_progress")
        assert in_progress >= 2 if keepalive else in_progress <= 1, [e["type"] for e in a.events]  # at 1 s, 2 s (3 s: races the limit)
