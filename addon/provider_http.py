"""The relay's HTTP/1.1 client for the provider (addon/relay.py): pooled asyncio connections, the
body passed on as it arrives (one chunk per read: addon/provider_body.py), a reset never hiding
what arrived before it."""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import zlib
from urllib.parse import urlsplit

import certifi
from mitmproxy import ctx

from addon.provider_body import MID_BODY, Dechunk, Pipe, chunk
from mimo2codex import __version__

POOL_MAX = 8  # idle provider connections kept per host
# Module level: a reload of addon/mimo.py keeps the idle connections.
POOL: dict[tuple, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}


def hostport(scheme: str, host: str, port: int) -> str:
    """The authority of a URL and a Host header: an IPv6 literal in brackets, the default port left out.

    mitmproxy's own (`Request.url`, its Host header update) leaves `::1` bare, which no parser reads back.
    """
    host = f"[{host}]" if ":" in host else host
    return host if port == {"http": 80, "https": 443}.get(scheme) else f"{host}:{port}"


@functools.lru_cache(64)  # asked on every translated request, for the few URLs the routes name
def parts(url: str) -> tuple[str, str, int, str, str]:
    """scheme, host, port, path with query, and the authority (`hostport`) of an http(s) URL."""
    u = urlsplit(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    host = u.hostname or ""
    return u.scheme, host, port, (u.path or "/") + (f"?{u.query}" if u.query else ""), hostport(u.scheme, host, port)


def trust(host: str) -> tuple:
    """The options mitmproxy connects to its own upstreams with (addons/tlsconfig.py tls_start_server):
    ssl_insecure, the trusted CAs, the client certificate for `host` (client_certs: a file, or a
    folder of <host>.pem), the TLS versions and ciphers allowed."""
    o = ctx.options
    cert = None
    if o.client_certs:
        certs = os.path.expanduser(o.client_certs)
        cert = certs if os.path.isfile(certs) else os.path.join(certs, f"{host}.pem")
        cert = cert if os.path.isfile(cert) else None
    return (bool(o.ssl_insecure), o.ssl_verify_upstream_trusted_ca, o.ssl_verify_upstream_trusted_confdir, cert,
            o.tls_version_server_min, o.tls_version_server_max, o.ciphers_server)


# mitmproxy's net/tls.Version names; UNBOUNDED leaves the bound to OpenSSL.
TLS_VERSIONS = {"SSL3": ssl.TLSVersion.SSLv3, "TLS1": ssl.TLSVersion.TLSv1, "TLS1_1": ssl.TLSVersion.TLSv1_1,
                "TLS1_2": ssl.TLSVersion.TLSv1_2, "TLS1_3": ssl.TLSVersion.TLSv1_3}


@functools.lru_cache(16)  # one per option set: building a context and loading a CA bundle takes milliseconds
def tls_context(insecure: bool, ca_file: str | None, ca_dir: str | None, cert: str | None = None,
                min_version: str = "UNBOUNDED", max_version: str = "UNBOUNDED", ciphers: str | None = None) -> ssl.SSLContext:
    """The relay's TLS client, trusting what mitmproxy trusts (net/tls.py create_proxy_server_context):
    certifi's bundle unless ssl_verify_upstream_trusted_ca/_confdir name others, nothing checked with
    ssl_insecure. Not the system store: a provider mitmproxy accepts must be accepted here too, and a
    CA added only for mitmproxy (a local gateway's) too. tls_version_server_min/max and ciphers_server
    bound the handshake as they bound mitmproxy's. Errors are OSErrors: the relay answers 502 with
    their message."""
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if min_version in TLS_VERSIONS:
            c.minimum_version = TLS_VERSIONS[min_version]
        if max_version in TLS_VERSIONS:
            c.maximum_version = TLS_VERSIONS[max_version]
        if ciphers:
            c.set_ciphers(ciphers)
    except (ValueError, ssl.SSLError) as e:
        raise OSError(f"cannot use tls_version_server_min={min_version}, tls_version_server_max={max_version}, "
                      f"ciphers_server={ciphers} for the provider connection: {e}") from None
    if cert:
        try:
            c.load_cert_chain(cert)  # key and chain in one file, as mitmproxy reads it
        except (OSError, ssl.SSLError) as e:
            raise OSError(f"cannot load TLS client certificate {cert} (client_certs): {e}") from None
    if insecure:
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
        return c
    if ca_file is None and ca_dir is None:
        ca_file = certifi.where()
    try:
        c.load_verify_locations(ca_file, ca_dir)
    except (OSError, ssl.SSLError) as e:
        raise OSError(f"cannot load trusted certificates (ssl_verify_upstream_trusted_ca={ca_file}, "
                      f"ssl_verify_upstream_trusted_confdir={ca_dir}): {e}") from None
    return c


class _Reader(asyncio.StreamReader):
    """A StreamReader that keeps what arrived before a connection reset readable.

    asyncio's raises the reset on the next read and drops the buffered bytes; mitmproxy forwarded
    them, and the client should see the provider's last words before the cut (then EOF mid-body).
    """

    def set_exception(self, exc: BaseException) -> None:
        self.feed_eof()

    def take(self) -> bytes:
        """What arrived and was not read yet: the pipe (provider_body.Pipe) takes the connection over."""
        data = bytes(self._buffer)  # StreamReader's buffer: no public way to empty it without a wait
        self._buffer.clear()
        if self._paused:  # it paused the socket over 2 MiB buffered and would resume it only on a read of its own
            self._paused = False
            self._transport.resume_reading()
        return data

    def buffered(self) -> bool:
        return bool(self._buffer)


class Exchange:
    """One HTTP/1.1 exchange with the provider over a pooled asyncio connection."""

    def __init__(self, key, reader, writer, status: int, headers: dict[str, str]) -> None:
        self.key, self.reader, self.writer = key, reader, writer
        self.status, self.headers = status, headers
        self.reusable = False
        self.dechunk: Dechunk | None = None  # a chunked body's framing, once `first` read into it
        self.others = None  # any other body, as chunks (`first` takes the first one)

    @classmethod
    async def open(cls, url: str, headers: list[tuple[str, str]], body: bytes) -> "Exchange":
        scheme, host, port, target, authority = parts(url)
        https = scheme == "https"
        # The trust options in the key: a connection verified under other ones is not reused.
        key = (scheme, host, port, trust(host) if https else None)
        lines = [f"POST {target} HTTP/1.1", f"host: {authority}", f"content-length: {len(body)}"]
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
        ssl_ctx = tls_context(*key[3]) if https else None
        loop = asyncio.get_running_loop()
        reader = _Reader(limit=2**20, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.create_connection(lambda: protocol, host, port, ssl=ssl_ctx)
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
        status = 100
        while 100 <= status < 200 and status != 101:  # interim answers (100 Continue, 103 Early Hints) precede the real one
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
                    raise ConnectionResetError(MID_BODY)
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
                    raise ConnectionResetError(MID_BODY)
                left -= len(data)
                yield data
        else:
            while data := await r.read(65536):
                yield data
            return
        self.reusable = h.get("connection", "").lower() != "close"

    async def decoded(self):
        """The body without its content-encoding: the relay asks for `identity` (the translated request's
        accept-encoding), but a server may compress anyway, and the relay's own head to mitmproxy names none."""
        enc = self.headers.get("content-encoding", "identity").strip().lower()
        if enc == "identity":
            async for data in self.body():
                yield data
            return
        if enc not in ("gzip", "x-gzip", "deflate"):
            raise ValueError(f"the provider answered with content-encoding {enc!r}, which mimo2codex does not decode")
        d = zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header, told apart by the data
        try:
            async for data in self.body():
                if out := d.decompress(data):  # never b"": as a chunk it would end the body
                    yield out
            if out := d.flush():
                yield out
        except zlib.error as e:
            raise ValueError(f"the provider's {enc} body does not decode: {e}") from None

    async def first(self) -> bytes:
        """The body's first bytes as HTTP/1.1 chunked framing: the data of the first read that brings
        any, as one chunk (with the last chunk if the body ends there). `rest` passes on the others."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower() and "content-encoding" not in self.headers:
            d = self.dechunk = Dechunk()
            while True:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionResetError(MID_BODY)
                out = d.feed(data)
                if d.done:
                    self._ended()
                    return out
                if out:
                    return out
        # Other bodies, and compressed ones (decoded first): one chunk per piece, through a generator.
        self.others = self._others()
        return await self.others.__anext__()

    async def rest(self, dest: asyncio.StreamWriter) -> None:
        """Writes the rest of the body to `dest` as it arrives, ending with the last chunk."""
        if self.dechunk is None:
            transport = dest.transport
            high = transport.get_write_buffer_limits()[1]
            async for data in self.others:
                dest.write(data)
                # drain() only waits while the transport is paused (its buffer above the high-water
                # mark) or closing; asking the transport directly saves a coroutine chain per piece.
                if transport.get_write_buffer_size() > high or transport.is_closing():
                    await dest.drain()
            return
        if self.dechunk.done:
            return
        pipe = Pipe(self.writer.transport, dest, self.dechunk)
        self.writer.transport.set_protocol(pipe)
        try:
            if leftover := self.reader.take():  # read with the head or the first data, not yet passed on
                pipe.data_received(leftover)
            if self.reader.at_eof():  # the connection had ended before the pipe took over
                pipe.eof_received()
            await pipe.done
        finally:
            pipe.stop()
        self._ended()

    def _ended(self) -> None:
        # Bytes after the last chunk (in its read, or read with it and still buffered) are no answer to a next request.
        clean = self.dechunk.clean and not self.reader.buffered()
        self.reusable = clean and self.headers.get("connection", "").lower() != "close"

    async def _others(self):
        async for data in self.decoded():
            yield chunk(data)
        yield b"0\r\n\r\n"

    def release(self) -> None:
        pool = POOL.setdefault(self.key, [])
        if self.reusable and len(pool) < POOL_MAX and not self.writer.is_closing():
            pool.append((self.reader, self.writer))
        else:
            self.writer.close()
