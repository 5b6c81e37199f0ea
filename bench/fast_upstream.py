"""A fast fake Chat Completions upstream for the benchmarks (asyncio, standard library only).

Unlike the strict fake (mimo2codex.fakes.mimo) it validates nothing and pre-renders its answers,
so it costs next to nothing next to the proxy being measured. The last `bench:<shape>` marker
in the request body picks the answer:

    bench:tiny            role chunk, 3 content chunks, finish, usage, [DONE]
    bench:long:<n>        role chunk, n content chunks, finish, usage, [DONE]
    bench:paced:<n>       the same, one HTTP chunk every PACE seconds, as a provider generating
                          tokens sends them: each read of a proxy in between then holds one chunk

Every SSE event is its own HTTP/1.1 chunk (as MiMo sends them), the whole answer is written at
once (the upstream is never the bottleneck), and connections are kept alive.

`--framing other` answers the way other providers' servers do (OpenAI, vLLM, DeepSeek...): the
delta holds only what is set (no explicit nulls), `index` first and `logprobs` in the choice,
more envelope fields (`system_fingerprint`, `service_tier`), `data:` without a space, and HTTP
chunks cut every 1.5 events, so events arrive split across reads.

    python bench/fast_upstream.py --port 0      # prints "listening on http://127.0.0.1:<port>/v1"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys

_MARK = re.compile(rb"bench:(tiny|(?:long|paced):(\d+))")
PACE = 0.001
_CACHE: dict[bytes, bytes] = {}


FRAMING = "mimo"
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
         "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}


def _event(delta: dict | None = None, finish: str | None = None, usage: bool = False, framing: str = "mimo") -> bytes:
    """One SSE event (not yet an HTTP chunk)."""
    if framing == "other":
        obj = {"id": "chatcmpl-" + "b" * 29, "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
               "system_fingerprint": "fp_bench", "service_tier": "default",
               "choices": [] if usage else [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]}
        if usage:
            obj["usage"] = USAGE
        return b"data:" + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    if usage:
        obj = {"id": "b" * 32, "choices": [], "created": 1, "model": "mimo-v2.6-pro", "object": "chat.completion.chunk",
               "usage": USAGE}
    else:
        d = {"content": None, "role": None, "tool_calls": None, "reasoning_content": None, **(delta or {})}
        obj = {"id": "b" * 32, "choices": [{"delta": d, "finish_reason": finish, "index": 0}], "created": 1,
               "model": "mimo-v2.6-pro", "object": "chat.completion.chunk"}
        if finish:
            obj["usage"] = None
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def answer(shape: bytes, n: int, framing: str | None = None) -> bytes:
    framing = framing or FRAMING
    if (shape, framing) in _CACHE:
        return _CACHE[shape, framing]
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
    one = _event({"content": "tok "}, framing=framing)
    events = ([_event({"role": "assistant", "content": ""}, framing=framing)] + [one] * n
              + [_event({"content": ""}, "stop", framing=framing), _event(usage=True, framing=framing),
                 b"data: [DONE]\n\n" if framing == "mimo" else b"data:[DONE]\n\n"])
    if framing == "mimo":  # one HTTP chunk per event, as MiMo sends them
        body = b"".join(_http_chunk(e) for e in events)
    else:  # reads cut every 1.5 events: most events arrive in two pieces
        sse = b"".join(events)
        step = len(one) * 3 // 2
        body = b"".join(_http_chunk(sse[i : i + step]) for i in range(0, len(sse), step))
    _CACHE[shape, framing] = head + body + b"0\r\n\r\n"
    return _CACHE[shape, framing]


def http_chunks(n: int, framing: str | None = None) -> list[bytes]:
    """The data of each HTTP chunk of a `bench:long:<n>` answer, as mitmproxy hands them to a
    stream callable (for measurements out of the proxy)."""
    return dechunk(answer(b"long:%d" % n, n, framing).split(b"\r\n\r\n", 1)[1])


def dechunk(body: bytes) -> list[bytes]:
    """The data of each chunk of a whole HTTP/1.1 chunked body (no extensions, no trailers)."""
    pieces = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return pieces
        pieces.append(body[:size])
        body = body[size + 2 :]


async def paced(writer: asyncio.StreamWriter, n: int) -> None:
    """A `bench:long:<n>` answer written one HTTP chunk at a time, PACE seconds apart."""
    whole = answer(b"long:%d" % n, n)
    head, body = whole.split(b"\r\n\r\n", 1)
    writer.write(head + b"\r\n\r\n")
    for data in dechunk(body):
        writer.write(_http_chunk(data))
        await writer.drain()
        await asyncio.sleep(PACE)
    writer.write(b"0\r\n\r\n")
    await writer.drain()


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
            if shape.startswith(b"paced:"):
                await paced(writer, int(count))
            else:
                writer.write(answer(shape, int(count) if count else 3))
                await writer.drain()
            if re.search(rb"(?i)\r\nconnection:\s*close", head):
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    global FRAMING
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--framing", choices=("mimo", "other"), default="mimo")
    args = ap.parse_args(argv)
    FRAMING = args.framing
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
