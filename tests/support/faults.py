"""Fault injection helpers for the fault, bad-input, soak and secret tests.

`RawUpstream` is a byte-exact scripted upstream for the failures the strict fake MiMo does not
produce (HTML pages, empty or malformed bodies, garbage SSE): each accepted request runs the next
queued script, a list of steps. `call()` talks to the proxy over a raw socket with a hard deadline
and `check_answer()` says whether what came back is a well-formed Responses answer.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

# ----------------------------------------------------------------------------------------------
# A scripted upstream


def head(status: int = 200, ctype: str = "text/event-stream", *, chunked: bool = True, length: int | None = None,
         extra: dict | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"content-type: {ctype}"]
    if chunked:
        lines.append("transfer-encoding: chunked")
    elif length is not None:
        lines.append(f"content-length: {length}")
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


END = b"0\r\n\r\n"


def chat_chunk(content: str | None = None, finish: str | None = None, reasoning: str | None = None) -> bytes:
    delta = {"content": content, "role": None, "tool_calls": None, "reasoning_content": reasoning}
    obj = {"id": "f" * 32, "object": "chat.completion.chunk", "created": 1, "model": "mimo-v2.6-pro",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def completion(text: str) -> bytes:
    """A provider's whole (non-stream) Chat Completions answer saying `text`."""
    return json.dumps({"id": "c" * 32, "object": "chat.completion", "created": 1, "model": "mimo-v2.6-pro",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}).encode()


def whole(status: int, ctype: str, body: bytes) -> list:
    """Steps for a complete Content-Length answer."""
    return [("send", head(status, ctype, chunked=False, length=len(body)) + body)]


@dataclass
class Seen:
    head: bytes
    body: bytes
    closed_early: bool = False  # the proxy hung up while the script still ran


@dataclass
class RawUpstream:
    """Steps: ("send", bytes), ("sleep", s), ("stall", s) (like sleep, but notices a hang-up),
    ("fin",) clean close, ("rst",) abortive close. A script that ends without closing keeps the
    connection open for the next request (keep-alive)."""

    default: list = field(default_factory=lambda: whole(200, "application/json", b"{}"))
    requests: list[Seen] = field(default_factory=list)
    tls: ssl.SSLContext | None = None  # HTTPS with this server context (tests/support/tlsca.py)
    bind: str = "127.0.0.1"  # "::1": a provider on IPv6 loopback

    def __post_init__(self) -> None:
        self._scripts: list[list] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET6 if ":" in self.bind else socket.AF_INET)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.bind, 0))
        self._sock.listen(256)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.open_connections = 0
        self.accepted = 0  # connections ever accepted
        self.handshake_failures = 0

    @property
    def base_url(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/v1"

    def start(self) -> "RawUpstream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def queue(self, *scripts: list) -> None:
        with self._lock:
            self._scripts.extend(scripts)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._scripts)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests.clear()

    def _next(self) -> list:
        with self._lock:
            return self._scripts.pop(0) if self._scripts else self.default

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.open_connections += 1
            self.accepted += 1
        buf = b""
        try:
            conn.settimeout(30)
            if self.tls is not None:  # a refused handshake is an OSError: counted in `handshake_failures`
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except OSError:
                    self.handshake_failures += 1
                    raise
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                hdr, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in hdr.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                seen = Seen(hdr, buf[:length])
                buf = buf[length:]
                self.requests.append(seen)
                if not self._run(conn, self._next(), seen):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self.open_connections -= 1
            try:
                conn.close()
            except OSError:
                pass

    def _run(self, conn: socket.socket, script: list, seen: Seen) -> bool:
        """Run one script; False when the connection is finished."""
        for step in script:
            kind = step[0]
            if kind == "send":
                conn.sendall(step[1])
            elif kind == "sleep":
                time.sleep(step[1])
            elif kind == "stall":
                end = time.monotonic() + step[1]
                while time.monotonic() < end and not self._stop.is_set():
                    if _peer_closed(conn):
                        seen.closed_early = True
                        return False
                    time.sleep(0.02)
            elif kind == "fin":
                conn.shutdown(socket.SHUT_RDWR)
                return False
            elif kind == "rst":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return False
            else:
                raise ValueError(f"unknown step {step!r}")
        return True


def _peer_closed(sock: socket.socket) -> bool:
    try:
        sock.setblocking(False)
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        finally:
            sock.setblocking(True)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def refused_port() -> int:
    """A local port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# A strict client


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool  # the body ended as its framing says (not cut short)
    seconds: float

    @property
    def events(self) -> list[dict]:
        return sse_events(self.body)

    def json(self) -> Any:
        return json.loads(self.body)


def call(port: int, body: Any = None, *, path: str = "/v1/responses", method: str = "POST", headers: dict | None = None,
         raw: bytes | None = None, timeout: float = 20.0, chunked_body: bool = False) -> Answer:
    """One request on a fresh connection; never waits longer than `timeout` in total."""
    if raw is None:
        raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    hdrs = {"host": f"127.0.0.1:{port}", "content-type": "application/json", "authorization": "Bearer codex-local",
            "connection": "close", **(headers or {})}
    if chunked_body:
        hdrs["transfer-encoding"] = "chunked"
        payload = b"".join(chunk(raw[i:i + 65536]) for i in range(0, len(raw), 65536)) + END
    else:
        hdrs["content-length"] = str(len(raw))
        payload = raw
    request = f"{method} {path} HTTP/1.1\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()).encode() + b"\r\n"
    start = time.monotonic()
    deadline = start + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request + payload)
        data = b""
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                got = s.recv(65536)
            except socket.timeout:
                raise TimeoutError(f"no complete answer within {timeout}s; got {data[:300]!r}") from None
            except ConnectionResetError:
                got = b""
            if not got:
                break
            data += got
            if _looks_complete(data) and parse_response(data).complete:
                break  # framing says done: do not depend on the proxy closing the connection
    answer = parse_response(data, time.monotonic() - start)
    if not answer.complete and "content-length" not in answer.headers and "chunked" not in answer.headers.get("transfer-encoding", ""):
        answer.complete = True  # close-delimited body, read to EOF
    return answer


def _looks_complete(data: bytes) -> bool:
    """Cheap pre-check before a full parse (which is linear in the size read so far)."""
    head_, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    low = head_.lower()
    if b"transfer-encoding: chunked" in low:
        return rest.endswith(b"0\r\n\r\n")
    i = low.find(b"content-length:")
    if i >= 0:
        return len(rest) >= int(low[i + 15:].split(b"\r\n", 1)[0])
    return False


def parse_response(data: bytes, seconds: float = 0.0) -> Answer:
    head_, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"no HTTP response head: {data[:300]!r}")
    lines = head_.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body, complete = b"", False
        while True:
            size_line, sep, rest = rest.partition(b"\r\n")
            if not sep:
                break
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                complete = True
                break
            if len(rest) < size + 2:
                body += rest[:size]
                break
            body += rest[:size]
            rest = rest[size + 2:]
    elif "content-length" in headers:
        n = int(headers["content-length"])
        body, complete = rest[:n], len(rest) >= n
    else:
        body, complete = rest, False  # close-delimited: complete only at EOF (the caller knows)
    return Answer(status, headers, body, complete, seconds)


def sse_events(body: bytes) -> list[dict]:
    events = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].strip())
        obj = json.loads(b"\n".join(data))
        assert name is None or obj.get("type") == name, f"event name {name!r} != type {obj.get('type')!r}"
        events.append(obj)
    return events


TERMINAL = ("response.completed", "response.failed", "response.incomplete")


def check_answer(a: Answer) -> tuple[str, str, str]:
    """Assert `a` is a well-formed Responses answer; return (kind, code or status, message).

    kind is "completed" / "failed" / "incomplete" for event streams and "http" for JSON errors.
    """
    assert b"Traceback" not in a.body and b"<html" not in a.body.lower(), a.body[:500]
    assert a.complete, f"body cut short: {a.body[-300:]!r}"
    ctype = a.headers.get("content-type", "")
    if a.status == 200 and "text/event-stream" in ctype:
        events = a.events
        assert events, "empty event stream"
        assert events[0]["type"] == "response.created", events[0]["type"]
        seqs = [e["sequence_number"] for e in events]
        assert seqs == list(range(len(seqs))), f"sequence numbers {seqs[:20]}..."
        terminals = [e for e in events if e["type"] in TERMINAL]
        assert len(terminals) == 1 and terminals[0] is events[-1], [e["type"] for e in events][-5:]
        resp = terminals[0]["response"]
        kind = terminals[0]["type"].split(".", 1)[1]
        assert resp["status"] == kind
        if kind == "failed":
            err = resp["error"]
            assert err["code"] and err["message"], err
            return kind, err["code"], err["message"]
        if kind == "incomplete":
            return kind, resp["incomplete_details"]["reason"], ""
        return kind, "", ""
    assert "application/json" in ctype, (a.status, ctype, a.body[:300])
    obj = a.json()
    if a.status == 200:  # a non-stream answer: the final Response object
        assert obj.get("object") == "response" and obj.get("status") in ("completed", "failed", "incomplete"), obj
        if obj["status"] == "failed":
            assert obj["error"]["code"] and obj["error"]["message"], obj["error"]
            return "failed", obj["error"]["code"], obj["error"]["message"]
        if obj["status"] == "incomplete":
            return "incomplete", obj["incomplete_details"]["reason"], ""
        return "completed", "", ""
    err = obj.get("error")
    assert isinstance(err, dict), (a.status, a.body[:300])
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err.get("type"), str) and err["type"] and "code" in err, err
    assert a.status >= 400, a.status
    return "http", str(a.status), err["message"]


def output_text(a: Answer) -> str:
    resp = a.events[-1]["response"] if "text/event-stream" in a.headers.get("content-type", "") else a.json()
    return "".join(p.get("text", "") for item in resp["output"] if item["type"] == "message" for p in item["content"])


def responses_body(text: str = "hi", *, stream: bool = True, model: str = "mimo-v2.6-pro", **extra) -> dict:
    return {"model": model, "stream": stream, "store": False,
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}], **extra}


def stats(port: int) -> dict:
    return call(port, path="/_mimo2codex/stats", method="GET", timeout=5).json()


def wait_idle(port: int, timeout: float = 5.0, tasks: int | None = None) -> dict:
    """Wait until the proxy has no flow in flight (and, given a baseline, no extra asyncio tasks)."""
    end = time.monotonic() + timeout
    while True:
        s = stats(port)
        # The stats request itself is one flow in flight and holds one connection.
        idle = s["turns"] == 0 and s["streams"] == 0 and s["watched"] == 0 and s["relayed"] == 0
        if idle and (tasks is None or s["tasks"] <= tasks):
            return s
        if time.monotonic() > end:
            return s
        time.sleep(0.05)
