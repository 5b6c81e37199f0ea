"""The relay's provider client: a chunked body's data passes through as it is read, one chunk per
read, and its end is found wherever the reads cut it (addon/provider_http.py, Exchange.framed)."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from addon.provider_body import Dechunk, chunk
from addon.provider_http import Exchange
from bench.fast_upstream import dechunk


def _body(rng: random.Random, trailers: bool = False) -> tuple[bytes, bytes]:
    """A chunked body in the forms servers write (extensions, upper-case sizes, trailers), and its data."""
    parts, datas = [], []
    for _ in range(rng.randrange(0, 40)):
        data = bytes(rng.choice(b"ab\r\n0;:") for _ in range(rng.randrange(1, 300)))  # CR, LF and digits inside data too
        size = b"%x" % len(data)
        size = rng.choice([size, size.upper(), size + b";ext=1", size + b" "])
        parts.append(size + b"\r\n" + data + b"\r\n")
        datas.append(data)
    end = b"0\r\n" + (b"x-trailer: 1\r\nx-other: 2\r\n" if trailers else b"") + b"\r\n"
    return b"".join(parts) + end, b"".join(datas)


def _framed(wire: bytes, cuts: list[int]) -> tuple[bytes, bool, int]:
    """What Dechunk passes on for `wire` read in the pieces `cuts` makes: (bytes, reusable, reads)."""
    d, out, last, reads = Dechunk(), [], 0, 0
    for cut in [*cuts, len(wire)]:
        assert not d.done, "fed after its end"
        out.append(d.feed(wire[last:cut]))
        reads += 1
        last = cut
        if d.done:
            break
    assert d.done
    return b"".join(out), d.clean, reads


@pytest.mark.parametrize("seed", range(60))
def test_a_chunked_body_passes_through_as_read_and_ends_where_it_ends(seed):
    rng = random.Random(seed)
    body, data = _body(rng, trailers=seed % 3 == 0)
    cuts = sorted(rng.sample(range(1, len(body)), min(len(body) - 1, rng.randrange(0, 30 if seed % 2 else len(body)))))
    out, clean, reads = _framed(body, cuts)
    assert out.endswith(b"\r\n0\r\n\r\n") or out == b"0\r\n\r\n"
    pieces = dechunk(out)
    assert b"".join(pieces) == data and all(pieces)  # never an empty chunk before the end
    assert len(pieces) <= reads  # at most one chunk per read
    assert clean


def test_a_read_of_many_events_is_one_chunk_and_a_cut_one_is_not_held_back():
    events = [b"data: {\"n\": %d}\n\n" % i for i in range(50)]
    wire = b"".join(chunk(e) for e in events) + b"0\r\n\r\n"
    out, _, _ = _framed(wire, [])
    assert dechunk(out) == [b"".join(events)]
    cut = len(chunk(events[0])) + 9  # inside the second event's data
    out, _, _ = _framed(wire, [cut])
    assert dechunk(out)[0] == events[0] + events[1][:9 - len(b"%x\r\n" % len(events[1]))]


def test_bytes_after_the_last_chunk_make_the_connection_not_reusable():
    body = chunk(b"data: x\n\n") + b"0\r\n\r\n"
    out, clean, _ = _framed(body + b"HTTP/1.1 200 OK\r\n", [])
    assert out == body
    assert not clean


class _Provider:
    """A provider on a real socket: answers each request with `head` and then `wire`, written in the
    pieces `cuts` makes (one write each, a little apart: the relay reads them one by one), then closes
    the connection if `close`; counts the connections it accepts."""

    def __init__(self, wire: bytes, cuts: list[int] = (), close: bool = False, head: bytes | None = None) -> None:
        self.wire, self.cuts, self.close = wire, list(cuts), close
        self.head = head or b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        self.connections = 0
        self.paused = asyncio.Event()  # a write of the provider found the relay not reading

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/chat/completions"

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(self.head)
                last = 0
                for cut in [*self.cuts, len(self.wire)]:
                    writer.write(self.wire[last:cut])
                    if writer.transport.get_write_buffer_size():
                        self.paused.set()
                    await writer.drain()
                    await asyncio.sleep(0.002)
                    last = cut
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _client(small: bool = True) -> tuple[asyncio.StreamWriter, asyncio.StreamReader, asyncio.Server]:
    """The relay's client (mitmproxy) as a real socket: (the relay's writer to it, what it reads, its server)."""
    got: asyncio.Queue = asyncio.Queue()
    server = await asyncio.start_server(lambda r, w: got.put_nowait((r, w)), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    _, dest = await got.get()
    reader.writer = writer  # a StreamWriter nobody holds closes its connection when collected (3.11.5+)
    if small:  # small kernel buffers: a client that does not read stalls the relay after little data
        writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        dest.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    return dest, reader, server


async def _relay_once(url: str, dest: asyncio.StreamWriter) -> Exchange:
    ex = await Exchange.open(url, [], b"{}")
    try:
        dest.write(await ex.first())
        await ex.rest(dest)
    finally:
        ex.release()
    return ex


async def _read_body(reader: asyncio.StreamReader) -> bytes:
    got = b""
    while not got.endswith(b"\r\n0\r\n\r\n"):
        if not (data := await reader.read(65536)):
            raise ConnectionResetError(f"the relay's client got EOF after {len(got)} bytes")
        got += data
    return got


def test_the_rest_of_a_body_is_piped_read_by_read_and_the_connection_is_reused():
    events = [b"data: {\"n\": %d}\n\n" % i for i in range(40)]
    wire = b"".join(chunk(e) for e in events) + b"0\r\n\r\n"
    cuts = sorted({len(b"".join(chunk(e) for e in events[:i])) + j for i in range(1, 40, 3) for j in (0, 5)})

    provider = None

    async def main():
        nonlocal provider
        provider = _Provider(wire, cuts)
        async with provider as url:
            dest, reader, server = await _client()
            out = []
            for _ in range(3):
                ex = await asyncio.wait_for(_relay_once(url, dest), 10)
                assert ex.reusable
                out.append(await asyncio.wait_for(_read_body(reader), 10))
            dest.close()
            server.close()
            return out

    bodies = asyncio.run(main())
    for body in bodies:
        pieces = dechunk(body)
        assert b"".join(pieces) == b"".join(events) and all(pieces)
        assert 1 < len(pieces) <= len(cuts) + 1  # passed on read by read, never more chunks than reads
    assert provider.connections == 1  # the pipe gave the connection back to the pool each time


@pytest.mark.parametrize("cut", [0, 1, 5, 12, 17])
@pytest.mark.parametrize("split", [False, True])
def test_a_body_cut_short_raises_after_passing_on_what_arrived(cut, split):
    body = chunk(b"data: hello\n\n") + chunk(b"data: world\n\n")
    wire = body[: len(body) - cut]

    async def run() -> bytes:
        async with _Provider(wire, [16] if split else [], close=True) as url:
            dest, reader, server = await _client()
            with pytest.raises(ConnectionResetError):
                await _relay_once(url, dest)
            dest.close()
            got = await reader.read()
            server.close()
            return got

    got = asyncio.run(run())
    arrived = wire[3:16] + wire[21:34]  # the data bytes of the two chunks that made it (size lines "d\r\n")
    assert b"".join(dechunk(got + b"0\r\n\r\n")) == arrived


@pytest.mark.parametrize("cuts", [[], [4]])
def test_a_bad_size_line_is_an_error(cuts):
    async def run() -> None:
        async with _Provider(chunk(b"data: x\n\n") + b"zz\r\nabc\r\n0\r\n\r\n", cuts) as url:
            dest, _, server = await _client()
            try:
                await _relay_once(url, dest)
            finally:
                dest.close()
                server.close()

    with pytest.raises(ValueError):
        asyncio.run(run())


def test_a_client_that_does_not_read_pauses_the_provider_and_loses_nothing():
    """The relay holds at most about its transport's high-water mark for a client that reads nothing,
    however much the provider sends: the provider's own writes stall instead."""
    events = [chunk(b"data: " + b"x" * 4000 + b"\n\n") for _ in range(4000)]  # 16 MB: more than the kernel buffers
    wire = b"".join(events) + b"0\r\n\r\n"
    cuts = list(range(len(events[0]), len(wire) - 5, len(events[0]) * 16))

    async def run() -> tuple[int, bytes]:
        provider = _Provider(wire, cuts)
        async with provider as url:
            dest, reader, server = await _client()
            relay = asyncio.create_task(_relay_once(url, dest))
            await asyncio.wait_for(provider.paused.wait(), 10)
            held = dest.transport.get_write_buffer_size()
            got = await asyncio.wait_for(_read_body(reader), 30)
            await relay
            dest.close()
            server.close()
            return held, got

    held, got = asyncio.run(run())
    assert held <= 2 * 65536 + 16 * 4100
    assert b"".join(dechunk(got)) == b"".join(e[e.index(b"\r\n") + 2:-2] for e in events)


def test_a_connection_the_reader_had_paused_is_resumed_when_the_pipe_takes_it_over():
    """More than 2 MiB arrive between the first bytes and the pipe (the relay waits for a slow
    mitmproxy meanwhile): asyncio's StreamReader pauses the socket then, and only a read of its
    own would resume it."""
    big = b"".join(chunk(b"x" * 4000) for _ in range(800))  # 3.2 MB

    async def run() -> bytes:
        first = chunk(b"data: first\n\n")
        provider = _Provider(first + big + b"0\r\n\r\n", [len(first), len(first) + len(big)])  # the end comes apart
        async with provider as url:
            dest, reader, server = await _client(small=False)  # the pipe's own pausing would resume it by chance
            ex = await Exchange.open(url, [], b"{}")
            try:
                dest.write(await ex.first())
                read = asyncio.create_task(_read_body(reader))
                await asyncio.sleep(0.5)  # the rest arrives, the reader pauses the socket
                await asyncio.wait_for(ex.rest(dest), 10)
                got = await asyncio.wait_for(read, 10)
            finally:
                ex.release()
            dest.close()
            server.close()
            return got

    got = asyncio.run(run())
    assert b"".join(dechunk(got)) == b"data: first\n\n" + b"x" * 4000 * 800


def test_connection_close_is_not_reused():
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    wire = chunk(b"data: x\n\n") * 3 + b"0\r\n\r\n"

    async def run() -> tuple[list[bool], int]:
        provider = _Provider(wire, [14], close=True, head=head)
        async with provider as url:
            dest, reader, server = await _client()
            reused = []
            for _ in range(2):
                ex = await asyncio.wait_for(_relay_once(url, dest), 10)
                reused.append(ex.reusable)
                await asyncio.wait_for(_read_body(reader), 10)
            dest.close()
            server.close()
            return reused, provider.connections

    reused, connections = asyncio.run(run())
    assert reused == [False, False] and connections == 2
