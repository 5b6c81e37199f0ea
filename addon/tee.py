"""The `flow.response.stream` callable of a translated answer: the provider's Chat SSE in, Responses SSE out.

It keeps both sides for the flow (recording, replay, mitmweb's views) when something will read them
(addon/bodies.py decides, per stream) and is the only place that knows how the relay's keep-alive
prefix and a late provider failure reach the stream translator.
Per-flow state: `addon/reloading.py` holds the instances, so a script reload keeps them.
"""

from __future__ import annotations

import time

from mitmproxy import http

from mimo2codex.translate import errors, secrets
from mimo2codex.translate.stream import ResponsesStream

from addon import relay


class Tee:
    """The `flow.response.stream` callable: upstream Chat SSE in, Responses SSE out, both kept if `keep`.

    Behind the relay (addon/relay.py) the body may start with keep-alive bytes the relay wrote while
    the provider was silent (`ticket.prefix` of them): they become keep-alive events for the client
    and are not the provider's. A provider error after the stream opened ends it as `response.failed`;
    a whole (non-SSE) answer after the stream opened is held (`keep` or not) until it is translated at its end.
    """

    def __init__(self, sm: ResponsesStream, ticket: relay.Ticket | None = None, keep: bool = True) -> None:
        self.sm = sm
        self.keep = keep  # False: upstream_bytes and client_bytes are None, the flow's m2c.bodies says why
        self.seen = 0  # upstream reads so far, kept or not: the idle watchdog's sign of life (addon/guard.py)
        # Lists joined once at the end: appending to a growing bytearray cost ~0.2 µs per chunk each.
        self.raw: list[bytes] = []
        self.out: list[bytes] = []
        self.started = time.monotonic()
        self.ticket = ticket
        self.skipped = 0  # keep-alive bytes consumed
        self.prefix = ticket is not None  # still in the relay's keep-alive prefix
        self.whole = False  # the provider's answer is not SSE: translated once complete

    def __call__(self, data: bytes) -> list[bytes]:
        if self.prefix and data:
            n = min(len(data), self.ticket.prefix - self.skipped)
            if n < len(data):
                self.prefix = False
                self.whole = "event-stream" not in self.ticket.content_type.lower()
            if n > 0:
                self.skipped += n
                out = self.sm.keepalive()
                data = data[n:]
                if data:
                    self.seen += 1
                    if self.keep or self.whole:
                        self.raw.append(data)
                    if not self.whole:
                        out += self.sm.feed(data)
                if out:
                    self.sent(out)
                    return [out]
                return []
        if data:
            self.seen += 1
            if self.whole:
                self.raw.append(data)
                return []
            if self.keep:
                self.raw.append(data)
            out = self.sm.feed(data)
        elif self.ticket is not None and self.ticket.failure is not None:
            status, headers, body = self.ticket.failure
            if self.keep:
                self.raw = [body]  # what the provider said, for flow files and replays
            mapped = errors.map_upstream(self.sm.rules, status, body, headers)
            out = self.sm.fail(mapped.code, secrets.scrub(mapped.message))
        elif self.whole:
            out = self.sm.whole(b"".join(self.raw), self.ticket.content_type)
            if not self.keep:
                self.raw = []
        else:  # upstream body complete
            out = self.sm.finish()
        if out:
            self.sent(out)
            return [out]
        return []  # never b"" mid-stream: on HTTP/1 chunked it would end the body

    def sent(self, data: bytes) -> None:
        """Bytes the client got (here or written by a hook that ended the stream), for `client_bytes`."""
        if self.keep:
            self.out.append(data)

    # Joined once and kept joined: the chunk lists go as soon as the whole bodies exist. With many
    # streams ending together (256 at once in bench/run.py) the lists and the joined copies
    # coexisting for every flow set the RSS peak.
    def upstream_bytes(self) -> bytes | None:
        if not self.keep:
            return None
        if len(self.raw) != 1:
            self.raw = [b"".join(self.raw)]
        return self.raw[0]

    def client_bytes(self) -> bytes | None:
        if not self.keep:
            return None
        if len(self.out) != 1:
            self.out = [b"".join(self.out)]
        return self.out[0]


_REHEADED = (b"content-length", b"cache-control")
_REHEADED_H11 = (*_REHEADED, b"transfer-encoding")  # set to chunked; other versions keep what it said


def stream_head(resp: http.Response) -> None:
    """The head of a translated stream: no length (the translation has another), chunked on HTTP/1.1,
    not cached. The headers rebuilt in one go: each assignment to mitmproxy's Headers walks all of them."""
    h11 = resp.http_version == "HTTP/1.1"
    drop = _REHEADED_H11 if h11 else _REHEADED
    fields = [(k, v) for k, v in resp.headers.fields if k.lower() not in drop]
    if h11:
        fields.append((b"transfer-encoding", b"chunked"))
    fields.append((b"cache-control", b"no-cache"))
    resp.headers = http.Headers(fields)
