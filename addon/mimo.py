"""mimo2codex as a mitmproxy addon.

    mitmdump -s addon/mimo.py --mode reverse:https://api.xiaomimimo.com@127.0.0.1:8788 \
             --set connection_strategy=lazy

`POST /v1/responses` is rewritten into a Chat Completions request for the provider named by the
rules file, sent through the in-process relay (addon/relay.py: keep-alive during long prefills,
streamed retries, the key kept out of flows), and the provider's streamed answer is translated
back event by event through `flow.response.stream`. `GET /v1/models` and `GET /healthz` are answered locally. Translation
itself lives in the mitmproxy-free `mimo2codex` package; this module only adapts it to hooks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from http import HTTPStatus
from pathlib import Path
from typing import NamedTuple

# mitmproxy puts only this directory on sys.path, and only while loading the script. Its parent is
# the checkout, or mimo2codex/bundle/ of an installed wheel (mimo2codex/paths.py): either way `addon`
# becomes importable, and `mimo2codex` too in a checkout.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from mitmproxy import ctx, exceptions, http  # noqa: E402
from mitmproxy.proxy import mode_specs  # noqa: E402

from mimo2codex import __version__  # noqa: E402
from mimo2codex.translate import errors, request, rules, secrets  # noqa: E402
from mimo2codex.translate.stream import ResponsesStream, translate_body  # noqa: E402
from mimo2codex.translate.turn import Turn  # noqa: E402

from addon import backlog, bodies, deferred, gcfreeze, guard, keyguard, reloading, rules_watch, webguard  # noqa: E402
from addon import provider_http, recorder, relay, replay, views  # noqa: E402,F401  (importing views registers the contentviews)
from addon.tee import Tee, stream_head  # noqa: E402

log = logging.getLogger("mimo2codex")

RESPONSES_PATHS = ("/v1/responses", "/responses")
COMPACT_PATHS = ("/v1/responses/compact", "/responses/compact")
MODELS_PATHS = ("/v1/models", "/models")
SSE = "text/event-stream"
HEADERS = ((b"content-type", b"application/json"), (b"accept", SSE.encode()), (b"accept-encoding", b"identity"),
           (b"user-agent", f"mimo2codex/{__version__}".encode()))  # of every translated request
META = "m2c."  # flow.metadata key prefix; values stay tnetstring-serialisable (str/int/bool)


class Route(NamedTuple):
    """Where a request goes: the provider's rules, its base URL and the variable holding its key."""

    prefix: str  # "" for the main provider; else the model prefix that selects this one ("deepseek/...")
    rules: rules.Rules
    base_url: str
    key_env: str


class MimoTranslate:
    """Answers the Responses API by translating to and from a Chat Completions provider."""

    def __init__(self) -> None:
        self.rules: rules.Rules | None = None
        self.rules_error = ""  # why self.rules is None: a script reload can meet a broken rules file
        self.routes: dict[str, Route] = {}  # model prefix -> another provider, see mimo_routes
        # Per-flow state outlives this instance when mitmproxy reloads the script: see addon/reloading.py.
        self.turns: dict[str, Turn] = reloading.STATE.turns
        # Each flow keeps the route (rules, URL, key) it was translated with: a rules reload must not change them.
        self.flow_routes: dict[str, Route] = reloading.STATE.routes
        self.tees: dict[str, Tee] = reloading.STATE.tees
        self._main: Route | None = None  # main_route() for the current option set
        self._note: str | None = None  # bodies.dropped() for it

    def load(self, loader) -> None:
        loader.add_option("mimo_rules", str, "mimo", "Provider rules: a name from rules/ or a YAML file path.")
        loader.add_option("mimo_base_url", str, "", "Upstream Chat Completions base URL (default: $MIMO_BASE_URL, or the "
                          "variable beside the rules' key variable, else the rules' base_url).")
        loader.add_option("mimo_routes", str, "",
                          "Comma-separated providers (names from rules/ or files) reachable by model prefix in the same "
                          "proxy: with 'deepseek', model 'deepseek/deepseek-v4-pro' goes to DeepSeek with "
                          "DEEPSEEK_API_KEY (and DEEPSEEK_BASE_URL if set).")
        loader.add_option("mimo_api_key_env", str, "",
                          "Environment variable holding the upstream API key (default: the rules' auth.env). "
                          "The key itself is never an option, so it cannot show up in mitmweb or saved options.")
        loader.add_option("mimo_reasoning", bool, True, "Ask the provider to think (reasoning on).")
        loader.add_option("mimo_show_reasoning", bool, True, "Show the provider's reasoning to the client as summaries.")
        loader.add_option("mimo_web_search", bool, False, "Offer the provider's web search builtin (needs it enabled in the provider console).")
        loader.add_option("mimo_verbose", bool, False, "Log one line per translated request.")
        loader.add_option("mimo_upstream_timeout", int, 600, "Seconds to wait for the provider's response headers, per attempt.")
        loader.add_option("mimo_keep_bodies", str, "auto", bodies.HELP, choices=bodies.MODES)

    def running(self) -> None:
        reloading.install_fallback()

    def configure(self, updated: set[str]) -> None:
        if "mimo_upstream_timeout" in updated and ctx.options.mimo_upstream_timeout <= 0:  # every turn would fail
            raise exceptions.OptionsError("mimo_upstream_timeout must be > 0 seconds")
        if "mimo_keep_bodies" in updated and ctx.options.mimo_keep_bodies not in bodies.MODES:  # mitmproxy only lists choices
            raise exceptions.OptionsError(f"mimo_keep_bodies must be one of {', '.join(bodies.MODES)}, got {ctx.options.mimo_keep_bodies!r}")
        self._main = self._note = None
        if "mimo_rules" in updated or self.rules is None:
            try:
                self.rules = rules.load(ctx.options.mimo_rules)
            except rules.RulesError as e:
                self.rules_error = f"mimo_rules: {e}"
                raise exceptions.OptionsError(self.rules_error) from None
        if "mimo_routes" in updated:
            routes = {}
            for spec in filter(None, (s.strip() for s in ctx.options.mimo_routes.split(","))):
                try:
                    r = rules.load(spec)
                except rules.RulesError as e:
                    raise exceptions.OptionsError(f"mimo_routes: {e}") from None
                url = r.upstream_url()
                if not url.startswith(("http://", "https://")):  # else its requests could not be sent, see below
                    raise exceptions.OptionsError(f"mimo_routes: ${r.base_url_env()} must start with http:// or https://, got {url!r}")
                routes[r.provider] = Route(r.provider, r, url, r.auth_env)
            self.routes = routes
        if updated & {"mimo_rules", "mimo_base_url"} and not self.base_url().startswith(("http://", "https://")):
            where = "mimo_base_url" if ctx.options.mimo_base_url else f"${self.rules.base_url_env()}"
            raise exceptions.OptionsError(f"{where} must start with http:// or https://, got {self.base_url()!r}")
        if "mimo_verbose" in updated:
            log.setLevel(logging.INFO if ctx.options.mimo_verbose else logging.WARNING)

    # -- helpers -------------------------------------------------------------------------------

    # Plain methods, not properties: mitmproxy's command collector getattr()s every attribute.
    def base_url(self) -> str:
        return self.rules.upstream_url(ctx.options.mimo_base_url)

    def key_env(self) -> str:
        return ctx.options.mimo_api_key_env or self.rules.auth_env

    def api_key(self, route: Route | None = None) -> str:
        key = secrets.getenv((route or self.main_route()).key_env).strip()
        secrets.remember(key)  # error texts built anywhere (mid-stream too) are scrubbed of it
        return key

    def main_route(self) -> Route:
        """Built once per option set and rules object: its parts cost four option lookups per request."""
        if self._main is None or self._main.rules is not self.rules:
            self._main = Route("", self.rules, self.base_url(), self.key_env())
        return self._main

    def route_for(self, model: object) -> tuple[Route, object]:
        """The route a model id selects, and the id to hand that provider."""
        if isinstance(model, str) and "/" in model:
            prefix, rest = model.split("/", 1)
            if prefix in self.routes:
                return self.routes[prefix], rest
        return self.main_route(), model

    def scrub(self, text: str) -> str:
        return secrets.scrub(text, self.api_key())

    @staticmethod
    def local(flow: http.HTTPFlow, status: int, body: bytes, content_type: str = "application/json") -> None:
        flow.response = http.Response.make(status, body, {"content-type": content_type, "cache-control": "no-store"})
        flow.response.reason = HTTPStatus(status).phrase  # make() leaves it empty for some codes

    def reply_error(self, flow: http.HTTPFlow, mapped: errors.MappedError, turn: Turn | None = None) -> None:
        """Answer with an error the client acts on: a failed stream for stream turns, JSON otherwise."""
        mapped = dataclasses.replace(mapped, message=self.scrub(mapped.message))
        flow.metadata[META + "error"] = f"{mapped.code}: {mapped.message}"
        if turn is not None and turn.stream and not mapped.http_answer:
            self.local(flow, 200, errors.failed_stream(turn, mapped), SSE)
        else:
            self.local(flow, mapped.status, errors.error_body(mapped))
        flow.comment = f"{turn.model if turn else ''} ✗ {mapped.code}: {mapped.message}"[:300]
        flow.marked = ":x:"

    # -- hooks ---------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        path = flow.request.path.split("?", 1)[0].rstrip("/") or "/"
        method = flow.request.method
        if self.rules is None:  # at start-up mitmdump refuses to run; only a reload gets here
            msg = f"mimo2codex has no valid rules loaded ({self.rules_error or 'not configured'}); fix the file, it is reloaded"
            self.local(flow, 503, errors.error_body(errors.server_error(msg, 503)))
        elif method == "POST" and path in RESPONSES_PATHS:
            with gcfreeze.paused():
                self.translate_request(flow)
        elif path in RESPONSES_PATHS and flow.request.headers.get("upgrade", "").lower() == "websocket":
            # Codex tries a websocket when a provider declares supports_websockets; 426 is the one answer
            # it takes as "use HTTP" at once (404/405/501 cost it six reconnects, ~6 s, per session).
            msg = ("the websocket transport is not offered by mimo2codex; use HTTP POST /v1/responses "
                   "(set supports_websockets = false for this provider in ~/.codex/config.toml)")
            self.local(flow, 426, errors.error_body(errors.client_error(msg, code="websocket_unsupported", status=426)))
            flow.response.headers["upgrade"] = "HTTP/1.1"  # RFC 9110: a 426 names the protocols that would do
            flow.comment = "websocket refused (426): the client falls back to HTTP"
        elif method == "POST" and path in COMPACT_PATHS:
            # Codex compacts inline (an ordinary /v1/responses turn) for providers other than OpenAI; only
            # OpenAI's server-side compaction answers here, with a blob no other provider can read.
            msg = ("remote compaction (POST /v1/responses/compact) is not offered by mimo2codex: Codex compacts "
                   "inline through /v1/responses with a custom provider")
            log.warning("refused %s %s: remote compaction is not offered", method, path)
            self.local(flow, 404, errors.error_body(errors.client_error(msg, code="unsupported_endpoint", status=404)))
        elif method == "GET" and path in MODELS_PATHS:
            now = int(time.time())
            data = [{"id": m, "object": "model", "created": now, "owned_by": self.rules.provider} for m in self.rules.listed_models()]
            data += [{"id": f"{p}/{m}", "object": "model", "created": now, "owned_by": p}
                     for p, route in self.routes.items() for m in route.rules.listed_models()]
            self.local(flow, 200, json.dumps({"object": "list", "data": data}).encode())
        elif method == "GET" and path in ("/healthz", "/v1/healthz"):
            body = {"ok": True, "name": "mimo2codex", "version": __version__, "provider": self.rules.provider,
                    "upstream": self.base_url(), "key": "set" if self.api_key() else "missing",
                    "routes": {p: {"upstream": r.base_url, "key": "set" if self.api_key(r) else "missing"}
                               for p, r in self.routes.items()}}
            self.local(flow, 200, json.dumps(body).encode())
        elif isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode):
            msg = f"{method} {path} is not served here; mimo2codex answers POST /v1/responses, GET /v1/models and GET /healthz"
            self.local(flow, 404, errors.error_body(errors.client_error(msg, code="not_found", status=404)))

    def translate_request(self, flow: http.HTTPFlow) -> None:
        raw = flow.request.get_content(strict=False) or b""
        try:
            body, literals = request.loads(raw)  # json.loads, noting where the long strings were written
        except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
            self.reply_error(flow, errors.client_error(f"request body is not valid JSON: {e}"))
            return
        route, model = self.route_for(body.get("model") if isinstance(body, dict) else None)
        rules_ = route.rules
        try:
            routed = dict(body, model=model) if route.prefix else body
            chat, turn = request.to_chat(routed, rules_, thinking=ctx.options.mimo_reasoning,
                                         show_reasoning=ctx.options.mimo_show_reasoning,
                                         web_search=ctx.options.mimo_web_search)
        except request.BadRequest as e:
            self.reply_error(flow, errors.client_error(e.message, param=e.param, code=e.code, status=e.status))
            return
        except Exception as e:  # an input shape to_chat did not foresee: still a 4xx, never forwarded untranslated
            log.warning("could not translate a request: %r", e)
            self.reply_error(flow, errors.client_error(f"request could not be translated ({type(e).__name__}: {e}); "
                                                       "check the types of its fields"))
            return
        if route.prefix:
            turn.model = body["model"]  # echo the client's own spelling, prefix included
        key = self.api_key(route)
        if not key and rules_.auth_required:
            msg = f"no upstream API key for {rules_.name}: set {route.key_env} (or pass --api-key to launch.py) and restart mimo2codex"
            self.reply_error(flow, errors.client_error(msg, code="invalid_prompt", status=401), turn)
            return
        # The client's own bytes: not a re-serialisation (~17 ms per 4 MB), not even a decoded copy (1.5 ms,
        # and twice the size once one character of the body is outside Latin-1).
        flow.metadata[META + "responses_request"] = raw
        flow.metadata[META + "model"] = turn.model
        flow.metadata[META + "stream"] = turn.stream
        flow.metadata[META + "provider"] = rules_.provider
        # The client's long strings copied, not escaped again: ~14 ms less per 4 MB (translate/request_json.py).
        payload = request.encode(chat, literals)
        # The Chat request is this request's body; the key only says the flow was translated (a decoded
        # copy here cost 2 ms and the payload's size again per flow, in memory and in flow files).
        flow.metadata[META + "chat_request"] = True
        req = flow.request
        # Fresh headers: Codex's own (its bearer, session ids, turn metadata) are not the provider's business.
        # One list, not one assignment per header: each assignment to mitmproxy's Headers walks all of them.
        fields = [*HEADERS, (b"content-length", b"%d" % len(payload))]
        if connection := req.headers.get("connection"):  # mitmproxy reads it to decide whether to close the client connection
            fields.append((b"connection", connection.encode("utf-8", "surrogateescape")))  # as mitmproxy decoded it
        if key:
            fields.append((rules_.auth_header.encode(), rules_.auth_value(key).encode("utf-8", "surrogateescape")))
        req.headers = http.Headers(fields)
        # Not `req.url =`: its URL parse per request. No Host header yet, so these setters write none.
        req.scheme, req.host, req.port, req.path, authority = provider_http.parts(rules_.chat_url(route.base_url))
        req.headers["host"] = authority
        req.raw_content = payload
        self.turns[flow.id] = turn
        self.flow_routes[flow.id] = route
        log.info("→ %s %s: %d messages, %d tools, stream=%s, thinking=%s", rules_.provider, chat.get("model"),
                 len(chat["messages"]), len(chat.get("tools", [])), turn.stream, turn.thinking)
        for warning in turn.warnings:
            log.info("  %s", warning)
        if turn.warnings:  # mapping decisions (dropped items, tools) stay visible on the flow in mitmweb
            flow.metadata[META + "warnings"] = "\n".join(turn.warnings)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        turn = self.turns.get(flow.id)
        if turn is None:
            return
        secrets.redact_headers(flow.request.headers)  # sent by now; never let it reach a flow file
        resp = flow.response
        if resp.status_code != 200 or SSE not in resp.headers.get("content-type", "") or not turn.stream:
            return  # errors and non-stream clients are handled whole in `response`
        stream_head(resp)
        rules_ = self.flow_routes[flow.id].rules if flow.id in self.flow_routes else self.rules
        if self._note is None:  # per option set: readers() looks up three options
            self._note = bodies.dropped()
        if note := self._note:
            flow.metadata[META + "bodies"] = note
        resp.stream = self.tees[flow.id] = Tee(ResponsesStream(turn, rules_), relay.ticket_for(flow.id), keep=not note)

    async def response(self, flow: http.HTTPFlow) -> None:
        turn = self.turns.pop(flow.id, None)
        route = self.flow_routes.pop(flow.id, None) or self.main_route()
        rules_ = route.rules
        if turn is None:
            return
        secrets.redact_headers(flow.request.headers)
        tee = self.tees.pop(flow.id, None)
        if tee is not None and tee.sm.done:  # not done: an empty body mitmproxy never streamed, answered below
            flow.response.content = tee.upstream_bytes()  # what the provider sent (None: not kept, see m2c.bodies)
            self.annotate(flow, tee.sm, None, tee.client_bytes())
            tee.out = []  # in the metadata now: one copy less per finished flow while its connection stays open
            return
        resp = flow.response
        status, body, headers = resp.status_code, resp.get_content(strict=False) or b"", dict(resp.headers)
        if status != 200:  # after the relay's own retries
            flow.metadata[META + "upstream_body"] = body.decode("utf-8", "replace")
            self.reply_error(flow, errors.map_upstream(rules_, status, body, headers), turn)
            return
        out, sm = translate_body(turn, rules_, body, headers.get("content-type", ""))
        self.annotate(flow, sm, body, out)
        if turn.stream:
            self.local(flow, 200, out, SSE)
        elif sm.response.get("status") == "failed":
            # Like an upstream that never answered (502) or stalled (504): an HTTP error the SDKs raise,
            # not a 200 whose failure only shows to a caller that reads `status`.
            self.reply_error(flow, errors.from_failed(sm.response.get("error")), turn)
        else:
            self.local(flow, 200, json.dumps(sm.response, ensure_ascii=False).encode())

    def error(self, flow: http.HTTPFlow) -> None:
        turn = self.turns.pop(flow.id, None)
        self.flow_routes.pop(flow.id, None)
        tee = self.tees.pop(flow.id, None)
        if turn is None:
            return
        secrets.redact_headers(flow.request.headers)
        msg = self.scrub(flow.error.msg if flow.error else "connection failed")
        if tee is None:
            flow.metadata[META + "error"] = msg
            return
        raw = tee.upstream_bytes()
        if flow.response is not None:
            flow.response.content = raw
            raw = None  # the content holds it
        tail = tee.sm.fail("server_error", f"upstream connection lost mid-stream: {msg}")
        tee.sent(tail)
        if tail and "client disconnected" not in msg.lower():
            write_to_client(flow, tail)
        self.annotate(flow, tee.sm, raw, tee.client_bytes())

    def annotate(self, flow: http.HTTPFlow, sm: ResponsesStream, upstream_body: bytes | None, client_body: bytes | None) -> None:
        """Both sides and the outcome into the flow. `upstream_body` None: the response's content is
        the provider's answer (a streamed flow), and a decoded copy of it per flow set the RSS peak
        under many streams; flow files, views and the recorder read the content then. `client_body`
        None: a stream that kept no bodies (addon/bodies.py)."""
        if upstream_body is not None:
            flow.metadata[META + "upstream_body"] = upstream_body.decode("utf-8", "replace")
        if client_body is not None:
            flow.metadata[META + "client_body"] = client_body.decode("utf-8", "replace")
        flow.metadata[META + "response"] = json.dumps(sm.response, ensure_ascii=False)
        s = sm.summary
        tools = ",".join(s.get("tool_calls") or []) or "-"
        line = (f"{s.get('model')} {s.get('status')} in={s.get('input_tokens', 0)} (cached {s.get('cached_tokens', 0)}) "
                f"out={s.get('output_tokens', 0)} (reasoning {s.get('reasoning_tokens', 0)}) tools={tools}")
        if s.get("error"):
            line += f" error={s['error']}"
            flow.marked = ":x:"
        if flow.response and flow.response.timestamp_end and flow.request.timestamp_start:
            line += f" {flow.response.timestamp_end - flow.request.timestamp_start:.2f}s"
        flow.comment = self.scrub(line)
        log.info("← %s", flow.comment)  # mimo_verbose sets the level


def write_to_client(flow: http.HTTPFlow, data: bytes) -> bool:
    """Append a last chunk (and the chunked terminator) to a response whose upstream broke.

    mitmproxy offers no public way to send data after an upstream protocol error: it only closes
    the client connection. Writing to the client transport directly (private API, pinned by a test
    on mitmproxy 11 and 12) lets the client see `response.failed` instead of a truncated body.
    """
    try:
        handler = ctx.master.addons.get("proxyserver").connections[flow.client_conn.id]
        writer = handler.transports[handler.client].writer
        if flow.response is not None and flow.response.headers.get("transfer-encoding", "").lower() == "chunked":
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        else:
            writer.write(data)
        return True
    except Exception as e:  # private API moved: fall back to mitmproxy's plain close
        log.debug("could not append the failure event: %r", e)
        return False


reloading.script_loaded()
addons = [keyguard.KeyGuard(),  # first: the key is in this process's environment
          webguard.FrozenOptions(), webguard.WebGuard(),  # mitmweb's API: see addon/webguard.py
          guard.Guard(), MimoTranslate(), relay.Relay(), guard.WireSecrets(),  # order matters: see addon/guard.py
          replay.Replay(), recorder.Recorder(), rules_watch.RulesWatch(), backlog.Backlog(), gcfreeze.GcFreeze(),
          deferred.DeferredOptions()]  # last: every option above is defined by now
