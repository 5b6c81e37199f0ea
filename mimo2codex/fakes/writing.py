"""Writing an answer on the wire, with the failure knobs a reply spec asks for: delays, stalls, cuts.

A mixin of `FakeChatServer`: gets the handler, the recorded request and the rendered reply; decides
nothing about what the answer says (that is the profile's render.py).
"""

from __future__ import annotations

import io
import json
import re
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from .recorded import RecordedRequest
from .reply import Reply
from .turn import Turn
from .wire import dumps


class _ClientGone(Exception):
    pass


class Writing:
    # ---- low-level writing -----------------------------------------------------------------
    def _head(self, h: BaseHTTPRequestHandler, rec: RecordedRequest | None, status: int, headers: dict[str, str]) -> None:
        # Recorded state is updated before the bytes leave: a client that has read them sees it.
        if rec is not None:
            rec.status = status
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()

    @staticmethod
    def _write_chunk(h: BaseHTTPRequestHandler, data: bytes) -> None:
        h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _send_json(self, h: BaseHTTPRequestHandler, rec: RecordedRequest, status: int, obj: Any) -> None:
        data = dumps(obj)
        self._head(h, rec, status, {"Content-Type": "application/json", "Content-Length": str(len(data))})
        rec.completed = True
        h.wfile.write(data)

    def _plain(self, h: BaseHTTPRequestHandler, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        try:
            self._head(h, None, status, {"Content-Type": "application/json", "Content-Length": str(len(data))})
            h.wfile.write(data)
        except OSError:
            h.close_connection = True

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        try:
            prev = sock.gettimeout()
            sock.settimeout(0)
            try:
                data = sock.recv(1, socket.MSG_PEEK)
            finally:
                sock.settimeout(prev)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        return data == b""

    def _wait(self, h: BaseHTTPRequestHandler, rec: RecordedRequest, seconds: float) -> None:
        """Sleep, but notice a client hang-up (-> cancelled) or a server stop meanwhile."""
        end = time.monotonic() + seconds
        while True:
            if self._peer_closed(h.connection):
                raise _ClientGone()
            if self._stopping.is_set():
                raise _ClientGone()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.02, left))

    def _stall(self, h: BaseHTTPRequestHandler, rec: RecordedRequest) -> None:
        while not self._stopping.is_set():
            if self._peer_closed(h.connection):
                raise _ClientGone()
            time.sleep(0.02)
        h.close_connection = True

    def _cut(self, h: BaseHTTPRequestHandler, mode: str) -> None:
        h.close_connection = True
        sock = h.connection
        try:
            if mode == "rst":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # Drop the makefile() references so close() really closes now (and sends RST).
                h.rfile.close()
                h.wfile.close()
                h.rfile, h.wfile = io.BytesIO(), io.BytesIO()   # the handler still flushes/closes these
                sock.close()
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_stream(self, h: BaseHTTPRequestHandler, rec: RecordedRequest, turn: Turn, reply: Reply) -> None:
        events = self.profile.stream_events(turn, reply)
        if reply.mid_error is not None:
            at = min(reply.mid_error.get("after", 2), len(events))
            err = self.profile.reply_error(reply.mid_error)
            events = events[:at] + [self.profile.frame_stream_error(err.body)]
        split = reply.split_utf8 if reply.split_utf8 is not None else self.profile.split_utf8_default
        self._wait(h, rec, reply.header_delay)
        self._head(h, rec, 200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                 "Transfer-Encoding": "chunked"})
        self._wait(h, rec, reply.body_delay)
        for i, ev in enumerate(events):
            if reply.cut_after is not None and i >= reply.cut_after:
                self._cut(h, reply.cut_mode)
                return
            if reply.stall_after is not None and i >= reply.stall_after:
                self._stall(h, rec)
                return
            if reply.chunk_delay and i:
                self._wait(h, rec, reply.chunk_delay)
            elif self._peer_closed(h.connection) or self._stopping.is_set():
                raise _ClientGone()
            if split:
                pos = _first_multibyte(ev)
                if pos is not None:
                    split = False
                    # Same event, two HTTP chunks, cut inside one UTF-8 code point.
                    rec.events_sent += 1
                    self._write_chunk(h, ev[:pos + 1])
                    time.sleep(0.002)
                    self._write_chunk(h, ev[pos + 1:])
                    continue
            rec.events_sent += 1
            self._write_chunk(h, ev)
        self._end(h, rec, reply, b"0\r\n\r\n")

    def _send_completion(self, h: BaseHTTPRequestHandler, rec: RecordedRequest, turn: Turn, reply: Reply) -> None:
        data = dumps(self.profile.completion(turn, reply))
        self._wait(h, rec, reply.header_delay)
        self._head(h, rec, 200, {"Content-Type": "application/json", "Content-Length": str(len(data))})
        self._end(h, rec, reply, data, cut_partial=data[:len(data) // 2])

    def _end(self, h: BaseHTTPRequestHandler, rec: RecordedRequest, reply: Reply, last: bytes, cut_partial: bytes = b"") -> None:
        """The end of an answer: cut (after `cut_partial`), stall, or complete with `last`."""
        if reply.cut_after is not None:
            h.wfile.write(cut_partial)
            self._cut(h, reply.cut_mode)
            return
        if reply.stall_after is not None:
            self._stall(h, rec)
            return
        rec.completed = True
        h.wfile.write(last)


_LEAD_BYTE = re.compile(rb"[\xc0-\xff]")


def _first_multibyte(data: bytes) -> int | None:
    m = _LEAD_BYTE.search(data)
    return m.start() if m else None
