"""The proxy's own upstream client: translated requests reach the provider through a loopback relay.

mitmproxy can send nothing to the client before the upstream's response headers, so with a plain
reverse proxy a provider that prefills a huge prompt for a minute leaves Codex with an open socket
and no byte, and a request retried after a 429/5xx could only be answered whole at the end. The
relay is an asyncio server in this process on a random loopback port. `Relay.request` (after the
translator) points each translated flow at it with a single-use random ticket and takes the
provider's URL and credential out of the flow into that ticket: a local process that reaches the
relay port cannot choose a target or spend the key, and the key is never in a flow at all.

The server, the tickets and what the relay does with each request: addon/relay_server.py.

The flow keeps both sides for mitmweb and flow files: the Chat request as sent (its real provider
URL in metadata `m2c.upstream_url`), the provider's raw answer as the response body.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets as pysecrets
import socket
from pathlib import Path

from mitmproxy import ctx, exceptions, http

from addon import provider_http, reloading
from addon.relay_server import BACKLOG, HOLD, META, STATE, TICKET_HEADER, Ticket, serve, ticket_for  # noqa: F401  (the relay's names)
from mimo2codex.translate import secrets


ENTRY = Path(__file__).resolve().parent / "mimo.py"  # the script mitmproxy loads


class Relay:
    """Points translated flows at the relay server (after the translator, before WireSecrets/Replay)."""

    def load(self, loader) -> None:
        loader.add_option("mimo_keepalive", int, 5,
                          f"Seconds between keep-alive events while the provider is silent before its first byte "
                          f"(the stream opens after {HOLD:g} s of silence). 0: never open early.")

    hold: bool | None = None  # _unseen() for the current option set: read on every translated request

    def configure(self, updated: set[str]) -> None:
        if "mimo_keepalive" in updated and ctx.options.mimo_keepalive < 0:  # it would send keep-alives in a tight loop
            raise exceptions.OptionsError("mimo_keepalive must be >= 0 (0: no keep-alive)")
        if updated & {"intercept", "intercept_active", "scripts"}:
            self.hold = None

    def running(self) -> None:
        # Synchronous on purpose: a script reload calls `running` through invoke_addon_sync, which
        # refuses a coroutine (and that error ended mitmproxy's script watcher: no later reload).
        if STATE.server is None:
            STATE.sock = socket.create_server(("127.0.0.1", 0), backlog=BACKLOG)  # connects queue until served
            STATE.port = STATE.sock.getsockname()[1]
            STATE.server = asyncio.get_running_loop().create_task(serve(STATE.sock))

    def done(self) -> None:
        if STATE.server is not None and reloading.shutting_down():
            STATE.server.cancel()  # serve() closes the listening server
            STATE.server = None

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or META + "chat_request" not in flow.metadata:
            return
        if STATE.server is None:
            # The proxy accepts connections before the `running` hooks run: a request that came in
            # meanwhile (a client waiting for the port) would go to the provider without the relay.
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return  # not a running proxy (unit tests): mitmproxy talks to the provider itself
            self.running()
        translate = ctx.master.addons.get("mimotranslate")
        route = translate.flow_routes.get(flow.id) if translate is not None else None
        if route is None:
            return
        req = flow.request
        credential = None
        hold = self.hold if self.hold is not None else self._decide()
        # One pass over the headers, rebuilt once: each assignment to mitmproxy's Headers walks all of them.
        auth, fields = route.rules.auth_header.lower().encode(), []
        for k, v in req.headers.fields:
            low = k.lower()
            if low == auth and v != secrets.REDACTED_FIELD:
                credential = (route.rules.auth_header, v.decode("utf-8", "surrogateescape"))
                v = secrets.REDACTED_FIELD  # the flow shows that it is sent, never what
            elif low == b"host" or (hold and low == b"content-length"):
                continue  # set below
            fields.append((k, v))
        # Not req.url: mitmproxy writes an IPv6 host without its brackets there.
        url = f"{req.scheme}://{provider_http.hostport(req.scheme, req.host, req.port)}{req.path}"
        ticket = pysecrets.token_urlsafe(24)
        t = STATE.tickets[ticket] = Ticket(url, route.rules, bool(flow.metadata.get(META + "stream")), flow, credential)
        if hold:
            # The body stays in the ticket while mitmproxy sends the request: the relay would only read it back
            # (a second loopback transfer of every request: ~9 ms at 4 MB, ~35 ms at 16 MB). The relay puts
            # it back on the flow as soon as it picks the ticket up (a few ms later), or _forget does.
            t.body, req.raw_content = req.raw_content or b"", b""
            fields.append((b"content-length", b"0"))
        flow.metadata[META + "upstream_url"] = url
        fields.append((TICKET_HEADER.encode(), ticket.encode()))
        req.headers = http.Headers(fields)
        # Not `req.url = ...`: its URL parse costs some 30 µs per request; the path stays as it is.
        # No Host header now, so these setters write none: one assignment below.
        req.scheme, req.host, req.port = "http", "127.0.0.1", STATE.port
        req.headers["host"] = f"127.0.0.1:{STATE.port}"

    def _decide(self) -> bool:
        self.hold = _unseen()
        return self.hold

    def error(self, flow: http.HTTPFlow) -> None:
        self._forget(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        self._forget(flow)

    @staticmethod
    def _forget(flow: http.HTTPFlow) -> None:
        """Every flow ends in `response` or `error` (killed ones too): the ticket, used or not, goes."""
        STATE.live.pop(flow.id, None)
        ticket = STATE.tickets.pop(flow.request.headers.get(TICKET_HEADER, ""), None)
        if ticket is not None:  # never picked up (the relay unreachable, answered by another addon)
            ticket.restore()


def _unseen() -> bool:
    """Whether nothing can look at a translated request between our request hook and its send.

    Holding its body back would show an empty request to mitmproxy's interception (mitmweb, console:
    the user reads and may edit it while it waits) and to the request hook of a script loaded after
    this one; for them the body crosses the loopback hop as it always did.
    """
    o = ctx.options
    if getattr(o, "intercept_active", False) and getattr(o, "intercept", None):  # mitmdump has no Intercept
        return False
    scripts = getattr(o, "scripts", None)
    return not scripts or _is_entry(scripts[-1])


@functools.lru_cache(8)  # asked on every translated request; the scripts option rarely changes
def _is_entry(script: str) -> bool:
    """Whether mitmproxy's `scripts` entry (spelt as mitmproxy reads it) is addon/mimo.py."""
    return Path(os.path.expanduser(script.strip("'\" "))).resolve() == ENTRY
