"""The relay's provider client: a chunked body's data passes through as it is read, one chunk per
read, and its end is found wherever the reads cut it (addon/provider_http.py, Exchange.framed)."""

from __future__ import annotations

import asyncio
import random

import pytest

from addon.provider_http import Exchange, chunk
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


async def _framed(wire: bytes, cuts: list[int], headers: dict | None = None) -> tuple[bytes, bool]:
    reader = asyncio.StreamReader()

    async def feed() -> None:
        last = 0
        for cut in [*cuts, len(wire)]:
            reader.feed_data(wire[last:cut])
            last = cut
            await asyncio.sleep(0)
        reader.feed_eof()

    ex = Exchange(("http", "x", 80), reader, None, 200, {"transfer-encoding": "chunked", **(headers or {})})
    producer = asyncio.create_task(feed())
    try:
        out = b"".join([d async for d in ex.framed()])
    finally:
        await producer
    return out, ex.reusable


@pytest.mark.parametrize("seed", range(60))
def test_a_chunked_body_passes_through_as_read_and_ends_where_it_ends(seed):
    rng = random.Random(seed)
    body, data = _body(rng, trailers=seed % 3 == 0)
    cuts = sorted(rng.sample(range(1, len(body)), min(len(body) - 1, rng.randrange(0, 30 if seed % 2 else len(body)))))
    out, reusable = asyncio.run(_framed(body, cuts))
    assert out.endswith(b"\r\n0\r\n\r\n") or out == b"0\r\n\r\n"
    pieces = dechunk(out)
    assert b"".join(pieces) == data and all(pieces)  # never an empty chunk before the end
    assert len(pieces) <= len(cuts) + 1  # at most one chunk per read
    assert reusable


def test_a_read_of_many_events_is_one_chunk_and_a_cut_one_is_not_held_back():
    events = [b"data: {\"n\": %d}\n\n" % i for i in range(50)]
    wire = b"".join(chunk(e) for e in events) + b"0\r\n\r\n"
    out, _ = asyncio.run(_framed(wire, []))
    assert dechunk(out) == [b"".join(events)]
    cut = len(chunk(events[0])) + 9  # inside the second event's data
    out, _ = asyncio.run(_framed(wire, [cut]))
    assert dechunk(out)[0] == events[0] + events[1][:9 - len(b"%x\r\n" % len(events[1]))]


def test_bytes_after_the_last_chunk_make_the_connection_not_reusable():
    body = chunk(b"data: x\n\n") + b"0\r\n\r\n"
    out, reusable = asyncio.run(_framed(body + b"HTTP/1.1 200 OK\r\n", []))
    assert out == body
    assert not reusable


def test_connection_close_is_not_reused():
    body = chunk(b"data: x\n\n") + b"0\r\n\r\n"
    out, reusable = asyncio.run(_framed(body, [3], {"connection": "close"}))
    assert out == body
    assert not reusable


@pytest.mark.parametrize("cut", [0, 1, 5, 12, 17])
def test_a_body_cut_short_raises_after_passing_on_what_arrived(cut):
    body = chunk(b"data: hello\n\n") + chunk(b"data: world\n\n")
    wire = body[: len(body) - cut]

    async def run() -> bytes:
        got = []
        with pytest.raises(ConnectionResetError):
            reader = asyncio.StreamReader()
            reader.feed_data(wire)
            reader.feed_eof()
            async for d in Exchange(("http", "x", 80), reader, None, 200, {"transfer-encoding": "chunked"}).framed():
                got.append(d)
        return b"".join(got)

    got = asyncio.run(run())
    arrived = wire[3:16] + wire[21:34]  # the data bytes of the two chunks that made it (size lines "d\r\n")
    assert b"".join(dechunk(got + b"0\r\n\r\n")) == arrived


def test_a_bad_size_line_is_an_error():
    async def run() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"zz\r\nabc\r\n0\r\n\r\n")
        reader.feed_eof()
        async for _ in Exchange(("http", "x", 80), reader, None, 200, {"transfer-encoding": "chunked"}).framed():
            pass

    with pytest.raises(ValueError):
        asyncio.run(run())
