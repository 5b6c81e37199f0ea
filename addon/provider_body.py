"""The provider's chunked body on its way to mitmproxy (addon/provider_http.py): its data, read by
read, as one HTTP chunk per read, and the pipe that passes it on inside the socket's read callback."""

from __future__ import annotations

import asyncio

MID_BODY = "provider closed the connection mid-body"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def joined(pieces: list, end: bytes) -> bytes:
    """One chunk of all `pieces` followed by `end`, built in one copy (a burst is tens of KB a flow)."""
    return b"".join([b"%x\r\n" % sum(map(len, pieces)), *pieces, end])


class Dechunk:
    """A chunked body's framing, fed read by read.

    `feed` returns the data of every chunk one read brings as a single chunk (b"" if it brings none:
    an empty chunk would end the body). mitmproxy pays its per-chunk cost (h11 event, stream callable,
    one send) per chunk it receives, so a burst (a provider writing ahead, a loaded proxy) costs it
    once, not once per event; nothing waits for more bytes than the read held. The last data and the
    last chunk come in one piece (apart, they cost mitmproxy a read). Trailers are dropped.
    """

    __slots__ = ("carry", "need", "crlf", "trailer", "done", "clean")

    def __init__(self) -> None:
        self.carry = b""  # a size or trailer line cut by the read
        self.need = 0  # data bytes of the current chunk still to come
        self.crlf = 0  # bytes of the CRLF after a chunk's data still to skip
        self.trailer = False  # past the last chunk's size line
        self.done = False  # the blank line after the last chunk was read
        self.clean = False  # ...and nothing followed it in that read (the connection may be reused)

    def feed(self, data: bytes) -> bytes:
        # Paid per read, and at thousands of events a second by every event when reads are small.
        if self.carry:
            data, self.carry = self.carry + data, b""
        n = len(data)
        need = self.need
        if need >= n:  # all of it inside one chunk's data
            self.need = need = need - n
            if need == 0:
                self.crlf = 2
            return chunk(data)
        view = memoryview(data)  # slices of a burst's read without copying them before the join
        out: list = []
        pos, crlf = 0, self.crlf
        while pos < n:
            if need:
                end = pos + need
                if end > n:
                    out.append(view[pos:])
                    need = end - n
                    break
                out.append(view[pos:end])
                pos, need, crlf = end, 0, 2
                continue
            if crlf:  # the CRLF after a chunk's data, perhaps split by the reads
                skip = min(crlf, n - pos)
                pos += skip
                crlf -= skip
                continue
            eol = data.find(b"\n", pos)
            if eol < 0:
                self.carry = data[pos:]
                break
            if self.trailer:
                blank = not data[pos:eol].strip()
                pos = eol + 1
                if blank:
                    self.done, self.clean = True, pos == n
                    return joined(out, b"\r\n0\r\n\r\n") if out else b"0\r\n\r\n"
                continue
            try:
                size = int(data[pos:eol], 16)  # int() ignores the CR and blanks around the size
            except ValueError:  # a chunk extension (";name=value"), or garbage, which raises again
                size = int(data[pos:eol].split(b";", 1)[0], 16)
            pos = eol + 1
            if size == 0:
                self.trailer = True
            else:
                need = size
        self.need, self.crlf = need, crlf
        return joined(out, b"\r\n") if out else b""


class Pipe(asyncio.Protocol):
    """The provider connection's protocol while the rest of a chunked body streams to the relay's client.

    Each read is reframed and written inside the transport's read callback: no StreamReader buffer,
    task wakeup, extra event-loop turn or generator step per read, which a stream trickling one token
    per read paid on every event (bench/run.py paced). The provider is paused while the client's
    buffer is above its high-water mark. `done` ends with None after the last chunk (the connection's
    own protocol is back then, for the pool) or with the error that cut the body.
    """

    def __init__(self, src: asyncio.Transport, dest: asyncio.StreamWriter, dechunk: Dechunk) -> None:
        self.src, self.dest, self.dechunk = src, dest, dechunk
        self.out = dest.transport
        self.high = self.out.get_write_buffer_limits()[1]
        self.own = src.get_protocol()
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.drain: asyncio.Task | None = None

    def data_received(self, data: bytes) -> None:
        if self.done.done():  # bytes after the end, or after an error: never the client's
            return
        try:
            out = self.dechunk.feed(data)
        except ValueError as e:
            return self.end(e)
        if self.out.is_closing():  # mitmproxy closed the relay connection: _handle cancels the request
            return self.end(ConnectionResetError("the relay's client closed the connection"))
        if out:
            self.out.write(out)
        if self.dechunk.done:
            return self.end(None)
        if self.drain is None and self.out.get_write_buffer_size() > self.high:
            self.src.pause_reading()
            self.drain = asyncio.ensure_future(self._resume())

    async def _resume(self) -> None:
        try:
            await self.dest.drain()
        except Exception as e:  # drain() raises whatever ended the client's connection
            return self.end(e if isinstance(e, OSError) else ConnectionResetError(f"{type(e).__name__}: {e}"))
        self.drain = None
        if not self.done.done():
            self.src.resume_reading()

    def eof_received(self) -> None:
        self.end(ConnectionResetError(MID_BODY))

    def connection_lost(self, exc: Exception | None) -> None:
        self.end(ConnectionResetError(MID_BODY))

    def end(self, error: BaseException | None) -> None:
        if self.done.done():
            return
        if error is None:
            self.src.set_protocol(self.own)  # later bytes (a pooled connection's next answer) are its own
            self.done.set_result(None)
        else:
            self.done.set_exception(error)

    def stop(self) -> None:
        """The pipe is given up (the request was cancelled): it passes nothing on any more."""
        if not self.done.done():
            self.done.cancel()
        elif not self.done.cancelled():
            self.done.exception()  # ended with an error while the request was being cancelled: seen, not logged
        if self.drain is not None:
            self.drain.cancel()
