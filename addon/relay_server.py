"""The relay server (see addon/relay.py) and the tickets it honours.

For each request the relay:
- sends the provider exactly the request the flow shows (headers the other addons set, such as
  `x-m2c-replay`, included, on every attempt) plus the credential; the body never crosses the
  loopback hop: `Relay.request` holds it back in the ticket while mitmproxy sends the head, and
  picking the ticket up puts it back on the flow (`Ticket.restore`);
- holds the client's response headers until the provider answers or `HOLD` seconds pass, so fast
  errors stay HTTP errors (what Codex acts on, codex-responses.md §4);
- once `HOLD` passes with the provider still silent (prefill) on a stream turn, answers
  `200 text/event-stream` and writes a keep-alive chunk every `mimo_keepalive` seconds; the bytes
  written before the provider's first one are counted in `Ticket.prefix`, and the translator's
  Tee turns them into `response.created` then `response.in_progress` events (which Codex and the
  SDKs read, and which reset Codex's idle timer) instead of recording them as provider output;
- retries 429/5xx within the rules' budget while the client waits, and streams the retried
  answer as it arrives (one chunk per read: provider_body) like a first one; an error after the stream opened is handed to the Tee
  (`Ticket.failure`) which ends the answer with `response.failed`;
- cancels the provider request when mitmproxy closes the relay connection (client hung up, idle
  watchdog).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import ctx, hooks, http

from addon import provider_http
from addon.backlog import BACKLOG
from addon.provider_body import chunk
from mimo2codex.translate import errors, secrets, upstream

log = logging.getLogger("mimo2codex")

META = "m2c."
TICKET_HEADER = "x-m2c-ticket"
HOLD = 1.0  # seconds the client's headers wait for the provider's first answer
KEEPALIVE = b": keep-alive\n\n"
HOP = {"host", "connection", "content-length", "transfer-encoding", "keep-alive", "te", "upgrade",
       "proxy-connection", TICKET_HEADER}


@dataclass
class Ticket:
    """One translated request the relay will send: decided by the translator, never by the caller."""

    url: str
    rules: Any
    stream: bool
    flow: http.HTTPFlow = field(repr=False)
    credential: tuple[str, str] | None = field(default=None, repr=False)
    prefix: int = 0  # keep-alive bytes written before the provider's first byte
    opened: bool = False  # the client's response headers are out
    attempt: int = 0  # provider requests sent so far
    backoff: bool = False  # between a retryable error and the next attempt: not the provider's silence
    failure: tuple[int, dict, bytes] | None = None  # provider error after the stream opened
    content_type: str = ""  # of the provider's 200 answer
    body: bytes | None = field(default=None, repr=False)  # the flow's body, held back from mitmproxy's send

    def restore(self) -> bytes:
        """Puts the held-back body back on the flow and returns it (once; later calls: the flow's body)."""
        req = self.flow.request
        if self.body is not None:
            req.raw_content, self.body = self.body, None
            req.headers["content-length"] = str(len(req.raw_content))
            # mitmweb and the console show the flow as it is again. Only they (the `view` addon) keep flows
            # to show: elsewhere the hook went to every addon for nothing (~50 µs per request, mitmdump).
            if ctx.master is not None and ctx.master.addons.get("view") is not None:
                ctx.master.addons.trigger(hooks.UpdateHook([self.flow]))
        return req.raw_content or b""


class _State:
    """Module level: a reload of addon/mimo.py keeps the server and the requests in flight."""

    def __init__(self) -> None:
        self.server: asyncio.Task | None = None  # serve(), while the relay listens
        self.sock: socket.socket | None = None  # its listening socket
        self.port = 0
        self.tickets: dict[str, Ticket] = {}  # ticket -> request not yet picked up
        # flow id -> request picked up, until the flow ends (Relay.response/error): not when the relay
        # is done writing, since mitmproxy may read that head (and make the Tee, which needs the ticket's
        # prefix and failure) after the relay has finished.
        self.live: dict[str, Ticket] = {}


STATE = _State()


def ticket_for(flow_id: str) -> Ticket | None:
    return STATE.live.get(flow_id)


async def serve(sock: socket.socket) -> None:
    # asyncio listens again with its own default backlog (100) unless told: the socket's own would be lost.
    server = await asyncio.start_server(_handle, sock=sock, backlog=BACKLOG)
    try:
        await asyncio.Event().wait()  # until done() cancels it
    finally:
        server.close()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            headers: list[tuple[str, str]] = []
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers.append((k.strip(), v.strip()))
            low = {k.lower(): v for k, v in headers}
            # The ticket before the body: a local process without one must not make us read (and hold) anything.
            # And only from its own flow's connection: mitmweb shows an intercepted flow's ticket before
            # mitmproxy sends it, and whoever reads it there must not spend the key (nor use it up).
            name = low.get(TICKET_HEADER, "")
            ticket = STATE.tickets.get(name)
            if ticket is None or not _from_its_flow(ticket, writer):
                _answer(writer, 403, b'{"error":{"message":"mimo2codex relay: unknown or used ticket"}}', close=True)
                return
            del STATE.tickets[name]
            held = ticket.body is not None  # held back in Relay.request: mitmproxy sent the head alone
            body = ticket.restore()
            if low.get("content-length", "0") != ("0" if held else str(len(body))):
                _answer(writer, 400, b'{"error":{"message":"mimo2codex relay: bad content-length"}}', close=True)
                return
            if not held:  # the bytes mitmproxy sends are the flow's body: that very object goes on
                await _drop(reader, len(body))
            work = asyncio.create_task(_relay(ticket, headers, body, writer))
            gone = asyncio.create_task(reader.read(1))
            STATE.live[ticket.flow.id] = ticket
            try:
                await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
                await asyncio.gather(gone, return_exceptions=True)  # its read must end before the next one
                if not work.done():  # mitmproxy closed the connection: the client hung up or the watchdog fired
                    work.cancel()
                    await asyncio.gather(work, return_exceptions=True)
            if work.cancelled():
                log.info("relay: client gone, provider request cancelled (%s)", ticket.flow.metadata.get(META + "model"))
                return
            if (e := work.exception()) is not None:
                if not isinstance(e, (OSError, asyncio.IncompleteReadError, ValueError)):
                    log.warning("relay: %r", e)
                if not ticket.opened:  # a bare close would reach the client as mitmproxy's "server closed connection"
                    with contextlib.suppress(OSError):
                        await _fail(ticket, writer, 502, {}, _no_answer(ticket, e), [])
                return  # after the head, the broken-off stream tells mitmproxy (and the Tee) so
            if low.get("connection", "").lower() == "close":
                return
    finally:
        writer.close()


async def _drop(reader: asyncio.StreamReader, n: int) -> None:
    """Reads n bytes without keeping them (readexactly gathered a 4 MB body into one more buffer)."""
    while n:
        data = await reader.read(min(n, 1 << 20))
        if not data:
            raise asyncio.IncompleteReadError(b"", n)
        n -= len(data)


def _from_its_flow(ticket: Ticket, writer: asyncio.StreamWriter) -> bool:
    """The request comes over the connection mitmproxy opened for the ticket's flow (its local address
    is the relay's peer: no other socket can hold it while that connection is open)."""
    ours = ticket.flow.server_conn.sockname
    peer = writer.get_extra_info("peername")
    return bool(ours and peer) and tuple(ours[:2]) == tuple(peer[:2])


def _answer(writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str = "application/json",
            extra: dict | None = None, close: bool = False) -> None:
    head = [f"HTTP/1.1 {status} {http.status_codes.RESPONSES.get(status, '')}", f"content-type: {ctype}",
            f"content-length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    if close:
        head.append("connection: close")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def _stream_head(ctype: str) -> bytes:
    return f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ntransfer-encoding: chunked\r\n\r\n".encode("latin-1")


async def _relay(t: Ticket, headers: list[tuple[str, str]], body: bytes, writer: asyncio.StreamWriter) -> None:
    send = [(k, v) for k, v in headers if k.lower() not in HOP]
    if t.credential:
        name = t.credential[0].lower()
        send = [(k, v) for k, v in send if k.lower() != name] + [t.credential]
    rules_ = t.rules
    budget = float(rules_.retry["max_wait"])
    tries: list[str] = []
    flow = t.flow
    for attempt in range(1, int(rules_.retry["attempts"]) + 2):
        t.attempt = attempt
        # No task and wait per phase: a timer writes the keep-alives, the request is awaited as it is.
        alive = _KeepAlive(t, writer, _stream_head("text/event-stream")) if t.stream and ctx.options.mimo_keepalive else None
        limit = asyncio.timeout(ctx.options.mimo_upstream_timeout)
        try:
            async with limit:
                up = await provider_http.Exchange.open(t.url, send, body)
        except OSError as e:  # unreachable or gone before its headers: no retry, as before the relay
            if limit.expired():
                e = TimeoutError(f"no response headers within {ctx.options.mimo_upstream_timeout} s (mimo_upstream_timeout)")
            return await _fail(t, writer, 502, {}, _no_answer(t, e), tries)
        finally:
            if alive is not None:
                alive.cancel()
        try:
            if up.status == 200:
                if tries:
                    flow.metadata[META + "retries"] = "; ".join(tries)
                    log.info("retried %s: %s → 200", flow.metadata.get(META + "model"), "; ".join(tries))
                t.content_type = up.headers.get("content-type", "application/json")
                if t.opened:  # the head said event-stream: keep the provider's real type for replays
                    flow.metadata[META + "upstream_content_type"] = t.content_type
                writer.write(await _first_bytes(t, writer, up))  # with the head, if it is not out yet: one send
                t.opened = True
                await writer.drain()
                await up.rest(writer)
                return
            err = b"".join([d async for d in up.decoded()])
        finally:
            up.release()
        mapped = errors.map_upstream(rules_, up.status, err, up.headers)
        delay = upstream.retry_delay(attempt, float(rules_.retry["base_delay"]), mapped.retry_after)
        if not mapped.retry or attempt > int(rules_.retry["attempts"]) or delay > budget:
            return await _fail(t, writer, up.status, up.headers, err, tries)
        budget -= delay
        tries.append(f"{up.status} → retry in {delay:.1f}s")
        t.backoff = True
        try:
            await _backoff(t, writer, delay)
        finally:
            t.backoff = False


def _no_answer(t: Ticket, e: BaseException) -> bytes:
    """The 502 body for a provider request that failed before the client's response head."""
    where = "{0.scheme}://{0.netloc}".format(urlsplit(t.url))
    why = e if isinstance(e, OSError) else f"{type(e).__name__}: {e}"  # not an OSError: the relay's own failure
    msg = secrets.scrub(f"mimo2codex got no answer from {where}: {str(why) or type(e).__name__}", "")
    return json.dumps({"error": {"message": msg}}).encode()


class _KeepAlive:
    """Keep-alive chunks while the provider is silent, on a timer: after `HOLD` (or, once the
    client's stream is open, `mimo_keepalive` seconds) the stream `head` if not out yet, then a
    keep-alive every `mimo_keepalive` seconds until cancelled."""

    def __init__(self, t: Ticket, writer: asyncio.StreamWriter, head: bytes | None) -> None:
        self.t, self.writer, self.head = t, writer, head
        self.timer = asyncio.get_running_loop().call_later(ctx.options.mimo_keepalive if t.opened else HOLD, self.fire)

    def fire(self) -> None:
        if self.writer.transport.is_closing():  # the client is gone: _handle cancels the request
            return
        t = self.t
        head = b"" if t.opened else self.head or b""
        t.opened = True
        t.prefix += len(KEEPALIVE)
        self.writer.write(head + chunk(KEEPALIVE))
        self.timer = asyncio.get_running_loop().call_later(ctx.options.mimo_keepalive, self.fire)

    def cancel(self) -> None:
        self.timer.cancel()


async def _first_bytes(t: Ticket, writer: asyncio.StreamWriter, up: provider_http.Exchange) -> bytes:
    """The provider's first body bytes, after the stream head if it is not out yet. Many servers send
    their headers at once and prefill behind them: a stream turn gets keep-alives then too."""
    head = b"" if t.opened else _stream_head(t.content_type)
    alive = None
    if t.stream and ctx.options.mimo_keepalive and "event-stream" in t.content_type.lower():
        alive = _KeepAlive(t, writer, head)
    try:
        first = await up.first()
    finally:
        if alive is not None:
            alive.cancel()
    return first if t.opened else head + first


async def _backoff(t: Ticket, writer: asyncio.StreamWriter, delay: float) -> None:
    """Wait before the next attempt; an open client stream gets keep-alives meanwhile."""
    alive = _KeepAlive(t, writer, None) if t.opened and ctx.options.mimo_keepalive else None
    try:
        await asyncio.sleep(delay)
    finally:
        if alive is not None:
            alive.cancel()


async def _fail(t: Ticket, writer: asyncio.StreamWriter, status: int, headers: dict, body: bytes, tries: list[str]) -> None:
    """The provider's last answer was an error: passed on as is, or to the Tee if the stream is open."""
    flow = t.flow
    if tries:
        flow.metadata[META + "retries"] = "; ".join(tries)
        log.info("retried %s: %s → %s", flow.metadata.get(META + "model"), "; ".join(tries), status)
    if not t.opened:
        keep = {k: v for k, v in headers.items() if k in ("retry-after",)}
        _answer(writer, status, body, headers.get("content-type", "application/json"), keep)
    else:
        t.failure = (status, headers, body)
        flow.metadata[META + "error"] = f"provider HTTP {status} after the client's stream had opened"
        flow.metadata[META + "upstream_status"] = status
        flow.metadata[META + "upstream_content_type"] = headers.get("content-type", "application/json")
        writer.write(b"0\r\n\r\n")
    await writer.drain()
