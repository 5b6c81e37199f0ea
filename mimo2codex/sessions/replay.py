"""A local stand-in for the provider that plays back recorded upstream answers (standard library only).

`launch.py replay FILE` runs the normal proxy with this server as its upstream, so a replay goes
through exactly the path a live session takes: request translation, the streamed
`flow.response.stream` translator fed chunk by chunk, the error hooks for a stream that broke.
(mitmproxy's own `--server-replay` would inject the recorded answer as one block, which skips
the streaming path, and it matches on a hash of the exact body, which a re-run of Codex never
reproduces.)

Which recorded answer to play: the proxy side (addon/replay.py) matches the *Responses* request
Codex sent - unaffected by rule changes - and names the exchange in the `x-m2c-replay` header.
Requests without that header (the proxy's own retries, or a plain HTTP client) are matched here
on the Chat body, with the same tolerant rules (mimo2codex.sessions.recording.Matcher).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from typing import Any

from mimo2codex.sessions.recording import Exchange, Matcher

HEADER = "x-m2c-replay"
PLACEHOLDER_KEY = "replay-needs-no-key"
_PASS_HEADERS = ("retry-after", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")


def frames(body: bytes) -> list[bytes]:
    """An SSE body cut after every blank line: one HTTP chunk per event, as a provider sends it."""
    out, start = [], 0
    body = body.replace(b"\r\n", b"\n")
    while True:
        end = body.find(b"\n\n", start)
        if end < 0:
            break
        out.append(body[start:end + 2])
        start = end + 2
    if start < len(body):
        out.append(body[start:])
    return out


def no_match_body(message: str) -> bytes:
    return json.dumps({"error": {"code": "400", "message": message, "param": "", "type": "replay"}}).encode()


class ReplayUpstream:
    """`ReplayUpstream(exchanges).start()`; `.base_url` is what the proxy uses as provider URL."""

    def __init__(self, exchanges: list[Exchange], *, pace: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.by_index = {e.index: e for e in exchanges if e.translated}
        self.matcher = Matcher(exchanges, side="chat")
        self.pace = pace
        self.requests: list[dict] = []  # what was asked and which exchange answered
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "ReplayUpstream":
        self._thread = threading.Thread(target=self._server.serve_forever, name="m2c-replay-upstream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ReplayUpstream":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------

    def pick(self, header: str | None, body: bytes) -> tuple[Exchange | None, str]:
        with self._lock:
            if header is not None:
                if header.isdigit() and int(header) in self.by_index:
                    return self.by_index[int(header)], "proxy"
                return None, "none"
            try:
                request = json.loads(body)
            except ValueError:
                return None, "none"
            return self.matcher.match(request)

    def _handler_class(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet: the proxy logs what matters
                pass

            def do_GET(self) -> None:
                self._send_json(404, no_match_body("replay: only POST .../chat/completions is recorded"))

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                exchange, rule = outer.pick(self.headers.get(HEADER), body)
                outer.requests.append({"path": self.path, "body": body, "index": exchange.index if exchange else None,
                                       "rule": rule})
                if exchange is None:
                    self._send_json(400, no_match_body("replay: no recorded answer matches this request "
                                                       "(the recording has fewer turns than this session)"))
                    return
                self._play(exchange)

            def _send_json(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _play(self, e: Exchange) -> None:
                if e.upstream_status is None:  # the provider never answered while recording
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if e.bodies:  # recorded with mimo_keep_bodies=never: an empty stream would only say "no output"
                    self._send_json(400, no_match_body(f"replay: #{e.index} was recorded without the answer's bodies "
                                                       f"({e.bodies}); record again without mimo_keep_bodies=never"))
                    return
                body = e.upstream_body or b""
                ctype = e.upstream_content_type or "application/json"
                self.send_response(e.upstream_status)
                self.send_header("content-type", ctype)
                for k, v in (e.upstream_headers or {}).items():
                    if k.lower() in _PASS_HEADERS:
                        self.send_header(k, str(v))
                if "event-stream" not in ctype and not e.upstream_broken:
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for piece in frames(body):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                    if outer.pace:
                        time.sleep(outer.pace)
                if e.upstream_broken:  # as recorded: the body stops without its terminating chunk
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(b"0\r\n\r\n")

        return Handler
