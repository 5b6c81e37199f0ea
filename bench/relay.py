"""Figures for the relay (addon/relay.py): streamed retries and slow prefills, through a real mitmdump.

    .venv/3.11/bin/python bench/relay.py              # 10 retried turns, 3 slow prefills of 5 s
    .venv/3.11/bin/python bench/relay.py --count 3 --prefill 3

retried   the provider answers 429, then (on the proxy's retry) sends one delta, waits 1 s, sends
          the rest. Figure: time from the provider writing that first delta to the client reading
          the matching `response.output_text.delta` (same clock: provider and client are threads
          of this process). A first attempt with the same script is measured beside it.
prefill   the provider is silent for --prefill seconds before its response headers, then (servers
          that answer at once and prefill behind their headers) after them. Figures: time to the
          client's first body byte, to `response.created`, keep-alive events received, and the
          turn's total time.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mimo2codex import proxyproc  # noqa: E402

KEY = "sk-bench-relay-0123456789"


def chunk(obj: dict | str) -> bytes:
    data = b"data: " + (obj if isinstance(obj, str) else json.dumps(obj)).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def delta(text: str, finish: str | None = None) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "mimo-v2.6-pro",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


class Provider:
    """A scripted Chat Completions provider: each request takes the next script from `queue`."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queue: list[tuple[str, float]] = []  # (kind, seconds) kinds: "429", "stream", "behind"
        self.sent_first: list[float] = []  # monotonic time the first delta was written
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")), 0)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                kind, wait = self.queue.pop(0)
                if kind == "429":
                    body = b'{"error":{"code":"429","message":"Too many requests"}}'
                    conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (len(body), body))
                    continue
                time.sleep(wait if kind == "stream" else 0)  # prefill before the headers
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                time.sleep(wait if kind == "behind" else 0)  # or behind them
                self.sent_first.append(time.monotonic())
                conn.sendall(chunk(delta("first")))
                time.sleep(1.0)
                conn.sendall(chunk(delta(" rest", "stop")) + chunk("[DONE]") + b"0\r\n\r\n")
        except OSError:
            return
        finally:
            conn.close()


def turn(port: int) -> dict:
    """One streamed /v1/responses turn; monotonic times of what the client read."""
    body = json.dumps({"model": "mimo-v2.6-pro", "input": "hi", "stream": True}).encode()
    t = {"start": time.monotonic(), "keepalives": 0}
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"content-length: %d\r\n\r\n%s" % (len(body), body))
        got = b""
        while b"response.completed" not in got and b"response.failed" not in got:
            data = s.recv(65536)
            if not data:
                break
            now = time.monotonic()
            if b"\r\n\r\n" in got + data and "first_byte" not in t and (got + data).split(b"\r\n\r\n", 1)[1]:
                t["first_byte"] = now
            got += data
            if b"response.created" in got:
                t.setdefault("created", now)
            if b"response.output_text.delta" in got:
                t.setdefault("delta", now)
        t["end"] = time.monotonic()
        t["keepalives"] = max(0, got.count(b'"type":"response.in_progress"') - 1)
    return t


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=10, help="retried turns (and first attempts) to measure")
    ap.add_argument("--prefill", type=float, default=5.0, help="seconds the provider is silent before its headers")
    ap.add_argument("--prefills", type=int, default=3, help="slow-prefill turns to measure")
    args = ap.parse_args(argv)
    provider = Provider()
    with proxyproc.start(f"http://127.0.0.1:{provider.port}/v1", key=KEY,
                         sets=("mimo_keepalive=1", "flow_detail=0")) as proxy:
        turn_port = proxy.port
        provider.queue.append(("stream", 0))
        turn(turn_port)  # warm-up
        first, retried = [], []
        for _ in range(args.count):
            provider.queue.append(("stream", 0))
            t = turn(turn_port)
            first.append(t["delta"] - provider.sent_first[-1])
            provider.queue += [("429", 0), ("stream", 0)]
            t = turn(turn_port)
            retried.append(t["delta"] - provider.sent_first[-1])
        print(f"retried: provider's first delta -> client's first output_text.delta, {args.count} turns each")
        for name, xs in (("first attempt", first), ("after a 429 retry", retried)):
            print(f"  {name:18} median {ms(statistics.median(xs))}  max {ms(max(xs))}")
        for kind, where in (("stream", "before"), ("behind", "after")):
            print(f"prefill: provider silent {args.prefill:g} s {where} its headers, {args.prefills} turns")
            for _ in range(args.prefills):
                provider.queue.append((kind, args.prefill))
                t = turn(turn_port)
                print(f"  first client byte {ms(t['first_byte'] - t['start'])}  response.created {ms(t['created'] - t['start'])}"
                      f"  keep-alive events {t['keepalives']}  first delta {ms(t['delta'] - t['start'])}  total {ms(t['end'] - t['start'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
