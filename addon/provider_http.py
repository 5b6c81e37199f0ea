"""The relay's HTTP/1.1 client for the provider (addon/relay.py): pooled asyncio connections, the
body as it arrives (a chunked body passed on in its own framing), a reset never hiding what
arrived before it."""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from mitmproxy import ctx

from mimo2codex import __version__

POOL_MAX = 8  # idle provider connections kept per host
# Module level: a reload of addon/mimo.py keeps the idle connections.
POOL: dict[tuple[str, str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Reader(asyncio.StreamReader):
    """A StreamReader that keeps what arrived before a connection reset readable.

    asyncio's raises the reset on the next read and drops the buffered bytes; mitmproxy forwarded
    them, and the client should see the provider's last words before the cut (then EOF mid-body).
    """

    def set_exception(self, exc: BaseException) -> None:
        self.feed_eof()


class Exchange:
    """One HTTP/1.1 exchange with the provider over a pooled asyncio connection."""

    def __init__(self, key, reader, writer, status: int, headers: dict[str, str]) -> None:
        self.key, self.reader, self.writer = key, reader, writer
        self.status, self.headers = status, headers
        self.reusable = False

    @classmethod
    async def open(cls, url: str, headers: list[tuple[str, str]], body: bytes) -> "Exchange":
        u = urlsplit(url)
        https = u.scheme == "https"
        port = u.port or (443 if https else 80)
        key = (u.scheme, u.hostname or "", port)
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        host = u.hostname if port == (443 if https else 80) else f"{u.hostname}:{port}"
        lines = [f"POST {target} HTTP/1.1", f"host: {host}", f"content-length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if not any(k.lower() == "user-agent" for k, _ in headers):
            lines.append(f"user-agent: mimo2codex/{__version__}")
        # Head and body written apart: joining them copied a 4 MB body once more per attempt.
        raw = (("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body)
        pool = POOL.setdefault(key, [])
        while pool:  # a pooled connection the provider closed meanwhile fails at once: take a fresh one
            reader, writer = pool.pop()
            if writer.is_closing() or reader.at_eof():
                writer.close()
                continue
            try:
                return await cls._exchange(key, reader, writer, raw)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                writer.close()
            except BaseException:  # cancelled (client gone, timeout): close it, or the provider keeps generating
                writer.close()
                raise
        ssl_ctx = None
        if https:
            ssl_ctx = ssl.create_default_context()
            if getattr(ctx.options, "ssl_insecure", False):
                ssl_ctx.check_hostname = False
                ssl_ctx.verify_mode = ssl.CERT_NONE
        loop = asyncio.get_running_loop()
        reader = _Reader(limit=2**20, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.create_connection(lambda: protocol, u.hostname, port, ssl=ssl_ctx)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        try:
            return await cls._exchange(key, reader, writer, raw)
        except asyncio.IncompleteReadError as e:
            writer.close()
            raise ConnectionResetError("connection closed before the response headers") from e
        except BaseException:
            writer.close()
            raise

    @classmethod
    async def _exchange(cls, key, reader, writer, raw: tuple[bytes, bytes]) -> "Exchange":
        for part in raw:
            writer.write(part)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return cls(key, reader, writer, status, headers)

    async def body(self):
        r, h = self.reader, self.headers
        if "chunked" in h.get("transfer-encoding", "").lower():
            while True:
                line = await r.readline()
                if not line:
                    raise ConnectionResetError("provider closed the connection mid-body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while (await r.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = await r.readexactly(size)
                await r.readexactly(2)
                yield data
        elif "content-length" in h:
            left = int(h["content-length"])
            while left > 0:
                data = await r.read(min(left, 65536))
                if not data:
                    raise ConnectionResetError("provider closed the connection mid-body")
                left -= len(data)
                yield data
        else:
            while data := await r.read(65536):
                yield data
            return
        self.reusable = h.get("connection", "").lower() != "close"

    async def framed(self):
        """The body as HTTP/1.1 chunked bytes, ending with the last chunk.

        A chunked provider's own framing passes through as read (one read may hold many events, and
        nothing is decoded and encoded again); the relay only follows it to find the end. Other
        bodies are wrapped in chunks.
        """
        if "chunked" not in self.headers.get("transfer-encoding", "").lower():
            async for data in self.body():
                yield chunk(data)
            yield b"0\r\n\r\n"
            return
        # One pass of this loop per chunk, skipping its data at once: at thousands of chunks a second
        # every bytecode here is paid per event (bench/proxy_instructions.py).
        reader, find = self.reader, bytes.find
        carry, skip, trailer = b"", 0, False
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionResetError("provider closed the connection mid-body")
            n = len(data)
            if skip >= n:  # all of it inside one chunk's data (and its CRLF)
                skip -= n
                yield data
                continue
            if carry:
                data, carry = carry + data, b""
                n = len(data)
            pos, skip = skip, 0
            while pos < n:
                eol = find(data, b"\n", pos)
                if eol < 0:  # a size line cut by the read: kept for the next one
                    data, carry = data[:pos], data[pos:]
                    break
                if trailer:
                    blank = not data[pos:eol].strip()
                    pos = eol + 1
                    if blank:  # the blank line after the last chunk (and any trailers)
                        self.reusable = pos == n and self.headers.get("connection", "").lower() != "close"
                        yield data[:pos]
                        return
                    continue
                try:
                    size = int(data[pos:eol], 16)  # int() ignores the CR and blanks around the size
                except ValueError:  # a chunk extension (";name=value"), or garbage, which raises again
                    size = int(data[pos:eol].split(b";", 1)[0], 16)
                if size == 0:
                    trailer = True
                    pos = eol + 1
                    continue
                pos = eol + size + 3  # the size line's LF, the data, its CRLF
                if pos > n:
                    skip = pos - n
                    break
            if data:
                yield data

    def release(self) -> None:
        pool = POOL.setdefault(self.key, [])
        if self.reusable and len(pool) < POOL_MAX and not self.writer.is_closing():
            pool.append((self.reader, self.writer))
        else:
            self.writer.close()
