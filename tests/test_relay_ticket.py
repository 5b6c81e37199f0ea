"""The relay's ticket stays readable until its flow ends: mitmproxy may read the relay's head (and
the translator make the Tee from the ticket) after the relay has finished writing the whole answer.
And a request mitmproxy takes before the `running` hooks still gets a ticket."""

from __future__ import annotations

import asyncio
import json

from mitmproxy import http
from mitmproxy.test import taddons, tflow

from addon import relay
from addon.mimo import MimoTranslate
from bench.fast_upstream import dechunk
from tests.support import faults as F
from tests.test_addon import KEY, codex_body, responses_flow

PROVIDER_SAYS = b'{"error":{"code":"400","message":"Param Incorrect: 9999999 tokens exceed the maximum context length"}}'


async def _relayed_to_the_end(translate: MimoTranslate, rel: relay.Relay, flow: http.HTTPFlow) -> bytes:
    """The flow through the relay server, read to the end: the relay's handler has returned."""
    translate.request(flow)
    rel.request(flow)
    req = flow.request
    head = [f"POST {req.path} HTTP/1.1"] + [f"{k}: {v}" for k, v in req.headers.items()
                                              if k.lower() not in ("content-length", "connection")]
    head += [f"content-length: {len(req.raw_content)}", "connection: close"]
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.STATE.port)
    flow.server_conn.sockname = writer.get_extra_info("sockname")  # as mitmproxy's own connection to the relay
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + req.raw_content)
    answer = await asyncio.wait_for(reader.read(), 20)  # EOF: the relay closed its side, its handler is done
    writer.close()
    return answer


def test_a_provider_error_after_the_stream_opened_reaches_a_tee_made_after_the_relay_finished(monkeypatch):
    monkeypatch.setenv("MIMO_API_KEY", KEY)
    # The provider is silent past the relay's hold (the client's stream opens), then refuses the request.
    provider = F.RawUpstream(default=[("sleep", relay.HOLD + 0.5)]
                             + F.whole(400, "application/json", PROVIDER_SAYS)).start()
    translate, rel = MimoTranslate(), relay.Relay()
    loop = asyncio.new_event_loop()  # not asyncio.run: it unsets the thread's loop that taddons tests use later
    saved = relay.STATE.server, relay.STATE.port, relay.STATE.sock
    try:
        with taddons.context(translate, rel) as tctx:
            tctx.configure(translate, mimo_base_url=provider.base_url)

            async def scenario() -> list[bytes]:
                relay.STATE.server = None
                rel.running()
                flow = responses_flow(codex_body())
                try:
                    answer = await _relayed_to_the_end(translate, rel, flow)
                    head, body = answer.split(b"\r\n\r\n", 1)
                    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, answer[:300]
                    # Only now does "mitmproxy" read the head: the Tee is made after the relay is done.
                    flow.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
                    translate.responseheaders(flow)
                    out = [b"".join(flow.response.stream(data)) for data in dechunk(body)]
                    out.append(b"".join(flow.response.stream(b"")))
                    await translate.response(flow)
                    rel.response(flow)
                    assert relay.ticket_for(flow.id) is None and not relay.STATE.live and not relay.STATE.tickets
                    return out
                finally:
                    relay.STATE.server.cancel()
                    await asyncio.gather(relay.STATE.server, return_exceptions=True)
                    relay.STATE.sock.close()

            out = loop.run_until_complete(scenario())
    finally:
        loop.close()
        provider.stop()
        relay.STATE.server, relay.STATE.port, relay.STATE.sock = saved
    events = F.sse_events(b"".join(out))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.failed", [e["type"] for e in events]
    error = events[-1]["response"]["error"]
    assert "9999999 tokens" in error["message"], error  # the provider's own words, mapped, not a generic failure
    assert error["code"] == "context_length_exceeded", error
    assert not any("keep-alive" in json.dumps(e) for e in events)  # the relay's prefix was not taken for provider output


def test_a_request_taken_before_the_running_hook_still_goes_through_the_relay(monkeypatch):
    # mitmproxy accepts connections before it runs the `running` hooks: a client waiting for the port
    # (a service's first request, a test) got its request sent to the provider by mitmproxy itself.
    monkeypatch.setenv("MIMO_API_KEY", KEY)
    translate, rel = MimoTranslate(), relay.Relay()
    loop = asyncio.new_event_loop()
    saved = relay.STATE.server, relay.STATE.port, relay.STATE.sock
    relay.STATE.server = None
    try:
        with taddons.context(translate, rel) as tctx:
            tctx.configure(translate, mimo_base_url="https://api.example.test/v1")

            async def before_running() -> http.HTTPFlow:
                flow = responses_flow(codex_body())
                translate.request(flow)
                rel.request(flow)  # no `running` hook yet
                return flow

            flow = loop.run_until_complete(before_running())
            assert relay.STATE.server is not None
            assert (flow.request.host, flow.request.port) == ("127.0.0.1", relay.STATE.port)
            assert flow.metadata["m2c.upstream_url"] == "https://api.example.test/v1/chat/completions"
            rel.error(flow)
            assert not relay.STATE.tickets
    finally:
        if relay.STATE.server is not None and relay.STATE.server is not saved[0]:
            relay.STATE.server.cancel()
            loop.run_until_complete(asyncio.gather(relay.STATE.server, return_exceptions=True))
            relay.STATE.sock.close()
        loop.close()
        relay.STATE.server, relay.STATE.port, relay.STATE.sock = saved


def test_a_held_back_body_put_back_is_announced_to_a_flow_store_only():
    # mitmweb and the console (their `view` addon) show the flow again with its body; in mitmdump
    # nothing keeps flows to show, and the hook, sent to every addon, cost ~50 µs per request.
    for store in (True, False):
        seen: list = []

        class Watcher:
            name = "view" if store else "watcher"

            def update(self, flows) -> None:
                seen.extend(flows)

        with taddons.context(Watcher()):
            flow = tflow.tflow()
            ticket = relay.Ticket("https://api.example.test/v1/chat/completions", None, True, flow, body=b"abc")
            flow.request.raw_content = b""
            assert ticket.restore() == b"abc"
            assert (flow.request.raw_content, flow.request.headers["content-length"]) == (b"abc", "3")
            assert seen == ([flow] if store else [])
