"""What stands around the translator: who may use the proxy, how large a request may be, and what
the client gets when the upstream cannot be reached or goes quiet.

- `mimo_access_token` (or `$MIMO2CODEX_ACCESS_TOKEN`): when set, every request must carry it as
  `Authorization: Bearer <token>` (what Codex sends from auth.json or its env_key) or `x-api-key`;
  anything else gets a JSON 401. The client's credential is then removed from the flow, so flow
  files and mitmweb never hold it.
- `mimo_max_body`: a request body over the limit gets a JSON 413 that states the limit.
- The provider unreachable, or gone before its first body byte: the relay (addon/relay.py) answers
  that itself. mitmproxy's own connection to the relay closed before response headers: mitmproxy answers
  with its own 502 HTML page, and setting `flow.response` in the `error` hook does not replace it (notes §4). We
  write a Responses-shaped answer to the client connection ourselves and kill the flow: mitmproxy
  then closes the connection without its page (`check_killed` after the error hook sends nothing
  for a killed flow). Private API, pinned by tests on mitmproxy 11 and 12.
- `mimo_stream_idle_timeout`: an upstream that sends nothing for that long, before its headers or
  mid-stream, ends the answer with a clear `response.failed`; closing the client connection makes
  mitmproxy close the upstream one (MiMo stops generating). mitmproxy itself would wait 600 s.
- A listen address that is not loopback is logged as a warning.

`Guard` is registered before MimoTranslate in addon/mimo.py, so its `request` hook answers first
and its `error` hook still finds the translator's per-flow state. `WireSecrets` is registered
after it: it takes the upstream credential the translator has just set out of the visible
headers, so no later addon (mitmweb's view of the in-flight flow, intercept, Save, the dumper)
ever sees it; it only exists in the bytes sent upstream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import ipaddress
import json
import logging
import time
from dataclasses import dataclass

from mitmproxy import ctx, exceptions, http
from mitmproxy.utils import human

from addon import relay
from mimo2codex.translate import errors, secrets
from mimo2codex.translate.turn import Turn

log = logging.getLogger("mimo2codex")

META = "m2c."
STATS_PATH = "/_mimo2codex/stats"
RESPONSES_PATHS = ("/v1/responses", "/responses")
CLIENT_CREDENTIALS = ("authorization", "x-api-key", "api-key")


@dataclass
class _Watch:
    flow: http.HTTPFlow
    since: float  # monotonic time of the last sign of life from upstream
    progress: int = -1  # upstream chunks seen so far; -1 while waiting for response headers


# Module level: when mitmproxy hot-reloads addon/mimo.py (edited on disk) it builds a new Guard from
# this same, cached module, and the streams already in flight keep their watchdog.
_WATCHED: dict[str, _Watch] = {}


class Guard:
    def __init__(self) -> None:
        self.watched = _WATCHED
        self._ticker: asyncio.Task | None = None
        self.max_body: int | None = None
        self._fixed: tuple[str, bool] | None = None  # token() and mimo_stats for the current option set

    def load(self, loader) -> None:
        loader.add_option("mimo_access_token", str, "",
                          f"Local access token clients must send (Authorization: Bearer ...). Empty: ${secrets.TOKEN_ENV}, "
                          "and if that is unset too, no token is required.")
        loader.add_option("mimo_max_body", str, "64m",
                          "Largest request body accepted (e.g. 64m, 512k); larger ones get HTTP 413.")
        loader.add_option("mimo_stream_idle_timeout", int, 300,
                          "Seconds without any upstream byte (before or during the stream) after which the answer "
                          "ends in response.failed and the upstream connection is closed. 0: wait as long as mitmproxy does.")
        loader.add_option("mimo_stats", bool, False, f"Answer GET {STATS_PATH} with in-flight counters (tests, benchmarks).")

    def configure(self, updated: set[str]) -> None:
        self._fixed = None
        if "mimo_max_body" in updated:
            try:
                self.max_body = human.parse_size(ctx.options.mimo_max_body or None)
            except ValueError as e:
                raise exceptions.OptionsError(f"mimo_max_body: {e}") from None
        if "mimo_stream_idle_timeout" in updated and ctx.options.mimo_stream_idle_timeout < 0:
            raise exceptions.OptionsError("mimo_stream_idle_timeout must be >= 0")
        if "stream_large_bodies" in updated and ctx.options.stream_large_bodies:
            # mitmproxy would send a request over that size on as it arrives, headers first, before any hook
            # has its body (and it turns streaming back on mid-body): Codex's Responses request would reach
            # the provider untranslated. No per-flow switch exists. An error logged here stops the proxy at
            # start-up (mitmproxy's errorcheck); anywhere else the option is switched off.
            log.error("--set stream_large_bodies=%s cannot be used with mimo2codex: a streamed request would reach "
                      "the provider untranslated (the translator needs the whole body). Leave it unset; "
                      "mimo_max_body limits requests.", ctx.options.stream_large_bodies)
            ctx.options.update(stream_large_bodies=None)
        if "proxy_debug" in updated and getattr(ctx.options, "proxy_debug", False):
            log.warning("proxy_debug logs the raw bytes sent upstream, the provider's API key included: "
                        "do not share this log.")

    def running(self) -> None:
        try:
            addrs = ctx.master.addons.get("proxyserver").listen_addrs()
        except Exception:  # not a real proxy (tests)
            addrs = []
        for addr in addrs:
            host = addr[0]
            try:
                loopback = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                log.warning("mimo2codex is listening on %s, not loopback: anyone who can reach this port spends your "
                            "upstream quota%s.", host,
                            "" if self.token() else " (set mimo_access_token to require a local token)")
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._watch_loop())

    def done(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def token() -> str:
        return (ctx.options.mimo_access_token or secrets.getenv(secrets.TOKEN_ENV)).strip()

    @staticmethod
    def translator():
        return ctx.master.addons.get("mimotranslate")

    def scrub(self, text: str) -> str:
        t = self.translator()
        text = t.scrub(text) if t is not None else text
        return errors.redact(secrets.scrub(text, self.token()))

    @staticmethod
    def answer(flow: http.HTTPFlow, status: int, code: str, message: str, param: str | None = None) -> None:
        body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
        flow.response = http.Response.make(status, json.dumps(body).encode(),
                                           {"content-type": "application/json", "cache-control": "no-store"})
        flow.comment = f"✗ {code}: {message}"[:300]
        flow.marked = ":x:"

    # -- hooks ---------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        req = flow.request
        if self._fixed is None:  # two option lookups and an environment read per request otherwise
            self._fixed = (self.token(), ctx.options.mimo_stats)
        token, stats = self._fixed
        if token:
            sent = req.headers.get("authorization", "")
            sent = sent[7:].strip() if sent[:7].lower() == "bearer " else req.headers.get("x-api-key", "").strip()
            for name in CLIENT_CREDENTIALS:  # checked: keep it out of flow files and mitmweb
                if name in req.headers:
                    req.headers[name] = secrets.REDACTED
            if not hmac.compare_digest(sent.encode(), token.encode()):
                why = "no access token was sent" if not sent else "the access token is wrong"
                self.answer(flow, 401, "invalid_api_key",
                            f"mimo2codex requires its local access token and {why}: send it as the API key "
                            "(Codex: OPENAI_API_KEY in ~/.codex/auth.json, or the provider's env_key variable).")
                return
        size = req.headers.get("content-length", "")
        if self.max_body is not None and size.isdigit() and int(size) > self.max_body:
            self.too_large(flow, int(size))
            return
        if stats and req.method == "GET" and req.path.split("?", 1)[0] == STATS_PATH:
            flow.response = http.Response.make(200, json.dumps(self.stats()).encode(), {"content-type": "application/json"})

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        req = flow.request
        if self.max_body is not None and req.raw_content is not None:
            size = len(req.raw_content)
            if size <= self.max_body and "content-encoding" in req.headers:
                size = len(req.get_content(strict=False) or b"")  # what the translator will parse
            if size > self.max_body:
                self.too_large(flow, size)
                return
        if req.method == "POST" and req.path.split("?", 1)[0].rstrip("/") in RESPONSES_PATHS:
            self.watched[flow.id] = _Watch(flow, time.monotonic())

    def too_large(self, flow: http.HTTPFlow, size: int) -> None:
        limit = self.max_body
        self.answer(flow, 413, "request_too_large",
                    f"request body is {size} bytes ({size / 2**20:.2f} MiB), over mimo2codex's limit of {limit} bytes "
                    f"({limit / 2**20:.2f} MiB); raise it with --set mimo_max_body=<size>, e.g. 128m.")

    def response(self, flow: http.HTTPFlow) -> None:
        self.watched.pop(flow.id, None)

    def error(self, flow: http.HTTPFlow) -> None:
        self.watched.pop(flow.id, None)
        if META + "model" not in flow.metadata or flow.metadata.get(META + "answered"):
            return  # not a translated request, or the watchdog already answered it
        if flow.response is not None and flow.response.stream:
            return  # headers are out: the translator appends response.failed to the stream
        msg = flow.error.msg if flow.error else "connection failed"
        if msg.lower().startswith("client disconnected") or not flow.killable:
            return
        req = flow.request
        if relayed := flow.metadata.get(META + "upstream_url"):  # the relay answers the provider's failures itself
            text = f"mimo2codex's relay closed its connection before answering the request for {relayed}: {msg}"
        else:
            text = f"mimo2codex got no answer from {req.scheme}://{req.host}:{req.port}: {msg}"
        if self.fail_before_headers(flow, errors.MappedError("server_error", text, text, 502, True, None, "server_error")):
            flow.kill()  # mitmproxy then closes the connection instead of sending its HTML 502

    # -- answering a flow whose upstream failed before any response byte -----------------------

    def fail_before_headers(self, flow: http.HTTPFlow, mapped: errors.MappedError) -> bool:
        """Write a complete Responses-shaped answer straight to the client connection."""
        turn = self._turn(flow)
        message = self.scrub(mapped.message)
        mapped = dataclasses.replace(mapped, message=message, detail=message)
        if turn.stream:
            status, ctype, body = 200, "text/event-stream", errors.failed_stream(turn, mapped)
        else:
            status, ctype, body = mapped.status, "application/json", errors.error_body(mapped)
        head = (f"HTTP/1.1 {status} {http.status_codes.RESPONSES.get(status, '')}\r\ncontent-type: {ctype}\r\n"
                f"content-length: {len(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n").encode()
        if not write_to_client(flow, head + body):
            return False
        flow.metadata[META + "answered"] = True
        flow.metadata[META + "error"] = f"{mapped.code}: {message}"
        flow.metadata[META + "client_body"] = body.decode("utf-8", "replace")
        flow.comment = f"{turn.model} ✗ {mapped.code}: {message}"[:300]
        flow.marked = ":x:"
        return True

    def _turn(self, flow: http.HTTPFlow) -> Turn:
        t = self.translator()
        turn = t.turns.get(flow.id) if t is not None else None
        if turn is None:
            turn = Turn(model=str(flow.metadata.get(META + "model", "")), stream=bool(flow.metadata.get(META + "stream", True)))
        return turn

    # -- idle watchdog -------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        while True:
            timeout = ctx.options.mimo_stream_idle_timeout
            await asyncio.sleep(max(0.05, min(1.0, timeout / 4)) if timeout else 1.0)
            if timeout:
                try:
                    self.tick(time.monotonic(), timeout)
                except Exception:  # never let the watchdog die
                    log.exception("mimo2codex idle watchdog")

    def tick(self, now: float, timeout: float) -> None:
        for fid, w in list(self.watched.items()):
            flow = w.flow
            if not flow.live or flow.error:
                self.watched.pop(fid, None)
                continue
            relayed = relay.ticket_for(fid)
            if relayed is not None and relayed.backoff:  # the proxy's own retry wait, not the provider's silence
                w.since = now
                continue
            resp = flow.response
            if resp is None:
                progress = -1 - (relayed.attempt if relayed is not None else 0)  # each retry is a fresh wait
            else:
                progress = getattr(resp.stream, "seen", None)  # Tee: the upstream reads so far
                if progress is None:  # answered locally, or an error body mitmproxy buffers: not ours to time
                    continue
            if progress != w.progress:
                w.progress, w.since = progress, now
            elif now - w.since >= timeout:
                self.watched.pop(fid, None)
                self.idle(flow, now - w.since)

    def idle(self, flow: http.HTTPFlow, waited: float) -> None:
        provider = getattr(getattr(self.translator(), "rules", None), "name", "") or "the upstream"
        resp = flow.response
        if resp is None:
            text = (f"{provider} sent no response for {waited:.0f} s (mimo_stream_idle_timeout); mimo2codex gave up "
                    "and closed the upstream connection.")
            self.fail_before_headers(flow, errors.MappedError("server_error", text, text, 504, True, None, "server_error"))
        else:
            text = (f"{provider} sent nothing for {waited:.0f} s mid-stream (mimo_stream_idle_timeout); mimo2codex ended "
                    "the answer and closed the upstream connection.")
            tee = resp.stream
            tail = tee.sm.fail("server_error", text)
            tee.sent(tail)
            flow.metadata[META + "answered"] = True
            if tail:
                chunked = resp.headers.get("transfer-encoding", "").lower() == "chunked"
                write_to_client(flow, b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail) if chunked else tail)
        log.warning("%s", text)
        close_client(flow)  # mitmproxy then closes the upstream connection too

    # -- stats (tests and benchmarks) ----------------------------------------------------------

    def stats(self) -> dict:
        t = self.translator()
        try:
            rss = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmRSS:")))
        except (OSError, StopIteration, ValueError):
            rss = -1
        tees = list(getattr(t, "tees", {}).values())
        return {"turns": len(getattr(t, "turns", ())), "streams": len(tees),
                "tee_bytes": sum(len(chunk) for tee in tees for chunk in (*tee.raw, *tee.out)),  # bodies kept in flight
                "watched": len(self.watched), "relayed": len(relay.STATE.tickets) + len(relay.STATE.live),
                "tasks": len(asyncio.all_tasks()),
                "connections": len(ctx.master.addons.get("proxyserver").connections), "rss_kb": rss}


def _client_io(flow: http.HTTPFlow):
    handler = ctx.master.addons.get("proxyserver").connections[flow.client_conn.id]
    return handler.transports[handler.client]


def write_to_client(flow: http.HTTPFlow, data: bytes) -> bool:
    """Bytes straight onto the client connection (private mitmproxy API; False if it moved)."""
    try:
        writer = _client_io(flow).writer
        if writer.is_closing():
            return False
        writer.write(data)
        return True
    except Exception as e:
        log.debug("mimo2codex could not write to the client: %r", e)
        return False


def close_client(flow: http.HTTPFlow) -> None:
    try:
        _client_io(flow).writer.close()
    except Exception as e:
        log.debug("mimo2codex could not close the client connection: %r", e)


class WireOnlyHeaders(http.Headers):
    """Headers where some values are shown as `<redacted>` and only written for real on the wire.

    mitmproxy writes an HTTP/1 request head with `bytes(request.headers)` (11 and 12, pinned by a
    test); everything else (mitmweb, flow files, the dumper, copies) reads `fields`. Over HTTP/2
    the placeholder would be sent and the upstream would answer 401: a failure, never a leak.
    """

    def __init__(self, fields, wire: dict[bytes, bytes]) -> None:
        super().__init__(fields)
        self.wire = wire

    def __bytes__(self) -> bytes:
        if not self.fields:
            return b""
        wire = self.wire
        return b"\r\n".join(k + b": " + wire.get(k.lower(), v) for k, v in self.fields) + b"\r\n"


class WireSecrets:
    """Moves the upstream credential of translated requests into WireOnlyHeaders."""

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or META + "model" not in flow.metadata:
            return
        fields = flow.request.headers.fields
        wire: dict[bytes, bytes] = {}
        for k, v in fields:  # one pass: a lookup by name walks every field, seven names per request
            low = k.lower()
            if low in secrets.SECRET_FIELDS and v != secrets.REDACTED_FIELD:
                wire[low] = wire[low] + b", " + v if low in wire else v  # repeated: joined, as Headers reads them
        if wire:
            shown = tuple((k, secrets.REDACTED_FIELD) if k.lower() in wire else (k, v) for k, v in fields)
            flow.request.headers = WireOnlyHeaders(shown, wire)

