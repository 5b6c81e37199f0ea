"""The HTTP side of the fake: threads, HTTP/1.1 keep-alive, routing, request recording, the control API.

Writing the answer (chunked SSE, delays, stalls, cuts) is writing.py, a mixin of FakeChatServer.

Knows nothing about a particular provider: everything a provider decides comes from its `Profile`.
"""

from __future__ import annotations

import copy
import http.server
import json
import socket
import sys
import threading
import time
from collections import deque
from typing import Any, Callable
from urllib.parse import urlsplit

from .profile import Profile
from .recorded import Headers, RecordedRequest
from .turn import Turn
from .wire import FakeError, key_fingerprint
from .writing import Writing, _ClientGone


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    fake: "FakeChatServer"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-chat"
    sys_version = ""
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.fake._conn_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        self.server.fake._conn_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            sys.stderr.write(f"[fake {self.server.fake.profile.name}] {format % args}\n")

    def _dispatch(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch


class FakeChatServer(Writing):
    """Threaded HTTP/1.1 fake. Start with `.start()` (or use as a context manager)."""

    def __init__(self, profile: Profile, *, host: str = "127.0.0.1", port: int = 0,
                 default_reply: dict | None = None, verbose: bool = False):
        self.profile = profile
        self.host, self._port = host, port
        self.verbose = verbose
        if default_reply is not None:
            profile.make_reply(default_reply)
        self.default_reply = default_reply
        self._lock = threading.Lock()
        self._queue: deque[list] = deque()   # [spec, remaining uses (-1 = until reset)]
        self._records: list[RecordedRequest] = []
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "FakeChatServer":
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self._port), _Handler)
        self._httpd.fake = self
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},
                                        name=f"fake-{self.profile.name}:{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:   # wake keep-alive handlers blocked on the next request line
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeChatServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def base_url(self) -> str:
        return self.url + self.profile.base_path

    # ---- scripting & inspection ------------------------------------------------------------
    def queue(self, *specs: dict | list) -> "FakeChatServer":
        """Append reply specs (dicts, or lists of dicts) to the FIFO; validated immediately."""
        flat: list[dict] = []
        for s in specs:
            flat.extend(s if isinstance(s, list) else [s])
        prepared = []
        for s in flat:
            r = self.profile.make_reply(s)
            prepared.append([copy.deepcopy(s), r.repeat])
        with self._lock:
            self._queue.extend(prepared)
        return self

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        suffix = self.profile.base_path + "/chat/completions"
        return [r for r in self.requests if r.path.split("?")[0] == suffix]

    @property
    def last(self) -> RecordedRequest | None:
        reqs = self.chat_requests
        return reqs[-1] if reqs else None

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._records.clear()

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> bool:
        end = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(interval)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        self.wait_until(lambda: len(self.chat_requests) >= n, timeout)
        return self.chat_requests

    def _next_spec(self, turn: Turn) -> tuple[dict, bool]:
        with self._lock:
            if self._queue:
                entry = self._queue[0]
                if entry[1] > 0:
                    entry[1] -= 1
                    if entry[1] == 0:
                        self._queue.popleft()
                return copy.deepcopy(entry[0]), True
        if self.default_reply is not None:
            return copy.deepcopy(self.default_reply), False
        return self.profile.default_spec(turn), False

    # ---- connection bookkeeping ------------------------------------------------------------
    def _conn_opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.add(sock)

    def _conn_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.discard(sock)

    # ---- request handling ------------------------------------------------------------------
    def _handle(self, h: _Handler) -> None:
        path = urlsplit(h.path).path
        try:
            raw = self._read_body(h)
        except (ValueError, OSError):
            h.close_connection = True
            self._plain(h, 400, {"error": "unreadable request body"})
            return
        if path.startswith("/_fake/"):
            self._control(h, path, raw)
            return
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            body = None
        rec = RecordedRequest(h.command, h.path, self._record_headers(h), raw, body)
        with self._lock:
            self._records.append(rec)
        try:
            self._serve(h, rec, path, raw, body)
        except (_ClientGone, BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            rec.completed = False
            rec.cancelled = True
            h.close_connection = True
        except Exception as e:   # a bug in the fake: say so loudly rather than hang the client
            sys.stderr.write(f"[fake {self.profile.name}] internal error: {e!r}\n")
            h.close_connection = True
            if rec.status is None:
                self._plain(h, 500, {"error": {"message": f"fake internal error: {e!r}", "type": "fake_internal"}})
            raise
        finally:
            rec._done.set()

    @staticmethod
    def _read_body(h: _Handler) -> bytes:
        if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                line = h.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(h.rfile.read(size))
                h.rfile.readline(3)
        n = int(h.headers.get("Content-Length") or 0)
        if n < 0:
            raise ValueError("negative Content-Length")
        return h.rfile.read(n) if n else b""

    def _record_headers(self, h: _Handler) -> Headers:
        out = Headers()
        for k, v in h.headers.items():
            lk = k.lower()
            if lk in ("authorization", "api-key"):
                scheme, _, val = v.partition(" ") if lk == "authorization" else ("", "", v)
                key = val.strip() if lk == "authorization" else v.strip()
                if key and not self.profile.is_test_key(key):
                    # Never keep a key the fake did not issue: it may be a real secret leaked by a bug.
                    v = (scheme + " " if scheme else "") + f"<redacted sha256:{key_fingerprint(key)}>"
            out[lk] = v
        return out

    def _serve(self, h: _Handler, rec: RecordedRequest, path: str, raw: bytes, body: Any) -> None:
        p = self.profile
        base = p.base_path
        try:
            if path == base + "/chat/completions":
                if h.command != "POST":
                    raise FakeError(405, p.status_error_body(405))
                p.authenticate(h.headers)
                if body is None:
                    try:
                        json.loads(raw)
                        detail = "empty body"
                    except (ValueError, UnicodeDecodeError) as e:
                        detail = str(e)
                    raise p.invalid_json(detail)
                turn = p.validate(body, len(raw))
                rec.model, rec.thinking, rec.effective = turn.model, turn.thinking, turn.effective
                spec, rec.scripted = self._next_spec(turn)
                rec.spec = spec
                reply = p.make_reply(spec)
                p.check_reply(turn, reply)
                if reply.error is not None:
                    self._wait(h, rec, reply.header_delay)
                    raise p.reply_error(reply.error)
                if turn.stream:
                    self._send_stream(h, rec, turn, reply)
                else:
                    self._send_completion(h, rec, turn, reply)
            elif path == base + "/models":
                p.authenticate(h.headers)
                self._send_json(h, rec, 200, p.models_list())
            elif path.startswith(base + "/models/") and h.command == "GET":
                p.authenticate(h.headers)
                mid = path[len(base + "/models/"):]
                if mid not in p.models:
                    raise p.not_found()
                self._send_json(h, rec, 200, p.model_object(mid))
            else:
                raise p.not_found()
        except FakeError as e:
            rec.error = e.body
            data, ctype = p.frame_error(e.body, rec.stream)
            if rec.stream:
                self._head(h, rec, e.status, {"Content-Type": ctype, "Transfer-Encoding": "chunked", **e.headers})
                rec.completed = True
                self._write_chunk(h, data)
                h.wfile.write(b"0\r\n\r\n")
            else:
                self._head(h, rec, e.status, {"Content-Type": ctype, "Content-Length": str(len(data)), **e.headers})
                rec.completed = True
                h.wfile.write(data)

    # ---- control API -----------------------------------------------------------------------
    def _control(self, h: _Handler, path: str, raw: bytes) -> None:
        try:
            if path == "/_fake/queue" and h.command == "POST":
                specs = json.loads(raw or b"[]")
                self.queue(*(specs if isinstance(specs, list) else [specs]))
                self._plain(h, 200, {"queued": len(specs) if isinstance(specs, list) else 1, "pending": self.pending})
            elif path == "/_fake/requests" and h.command == "GET":
                self._plain(h, 200, [r.to_dict() for r in self.requests])
            elif path == "/_fake/reset" and h.command == "POST":
                self.reset()
                self._plain(h, 200, {"ok": True})
            elif path == "/_fake/config" and h.command == "POST":
                self.profile.configure(**json.loads(raw or b"{}"))
                self._plain(h, 200, {"ok": True})
            elif path == "/_fake/health" and h.command == "GET":
                self._plain(h, 200, {"ok": True, "profile": self.profile.name, "pending": self.pending})
            else:
                self._plain(h, 404, {"error": f"no control endpoint {h.command} {path}"})
        except (ValueError, TypeError) as e:
            self._plain(h, 400, {"error": str(e)})


def serve_until_signal(fake: "FakeChatServer") -> int:
    """The fakes' command-line mode: announce the URL, serve until SIGINT/SIGTERM."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fake.start()
    print(f"listening on {fake.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0

