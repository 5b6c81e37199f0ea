"""A fast fake Chat Completions upstream for the benchmarks (asyncio, standard library only).

Unlike the strict fake (mimo2codex.fakes.mimo) it validates nothing and pre-renders its answers,
so it costs next to nothing next to the proxy being measured. The last `bench:<shape>` marker
in the request body picks the answer:

    bench:tiny            role chunk, 3 content chunks, finish, usage, [DONE]
    bench:long:<n>        role chunk, n content chunks, finish, usage, [DONE]

Every SSE event is its own HTTP/1.1 chunk (as MiMo sends them), the whole answer is written at
once (the upstream is never the bottleneck), and connections are kept alive.

    python bench/fast_upstream.py --port 0      # prints "listening on http://127.0.0.1:<port>/v1"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys

_MARK = re.compile(rb"bench:(tiny|long:(\d+))")
_CACHE: dict[bytes, bytes] = {}


def _event(delta: dict | None = None, finish: str | None = None, usage: bool = False) -> bytes:
    if usage:
        obj = {"id": "b" * 32, "choices": [], "created": 1, "model": "mimo-v2.6-pro", "object": "chat.completion.chunk",
               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                         "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}}
    else:
        d = {"content": None, "role": None, "tool_calls": None, "reasoning_content": None, **(delta or {})}
        obj = {"id": "b" * 32, "choices": [{"delta": d, "finish_reason": finish, "index": 0}], "created": 1,
               "model": "mimo-v2.6-pro", "object": "chat.completion.chunk"}
        if finish:
            obj["usage"] = None
    data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def answer(shape: bytes, n: int) -> bytes:
    if shape in _CACHE:
        return _CACHE[shape]
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
    one = _event({"content": "tok "})
    done = b"data: [DONE]\n\n"
    body = (_event({"role": "assistant", "content": ""}) + one * n + _event({"content": ""}, "stop") + _event(usage=True)
            + b"%x\r\n%s\r\n" % (len(done), done) + b"0\r\n\r\n")
    _CACHE[shape] = head + body
    return _CACHE[shape]


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            body = await reader.readexactly(int(m.group(1))) if m else b""
            marks = _MARK.findall(body)
            shape, count = marks[-1] if marks else (b"tiny", b"")
            writer.write(answer(shape, int(count) if count else 3))
            await writer.drain()
            if re.search(rb"(?i)\r\nconnection:\s*close", head):
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    asyncio.run(serve(ap.parse_args(argv).port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
