"""What mitmweb's UI may do to a running mimo2codex: who may open it, and what it may change.

mitmweb's API can read every flow (prompts, code, tool output), change options and run commands.
mitmproxy 11.0.2 (the line Python 3.11 gets) has no login at all, so any local process, or a
command Codex runs for the model, could otherwise load a script into the proxy (which holds the
provider key in its environment) or point the proxy elsewhere.

- `FrozenOptions`: once the proxy runs, every option except a few display settings (`ADJUSTABLE`)
  keeps its start-up value, whatever path tries to change it (`PUT /options`, the `set` and
  `options.load` commands, a script). The check is an `OptManager.subscribe` callback: mitmproxy
  calls subscribers before any addon's `configure`, so a refused `scripts` list is never loaded
  (ScriptLoader would otherwise load the new script and unload this addon before our `configure`
  could object), the value is rolled back and the caller gets the error.
- `WebGuard`: every request to the web UI passes one check before mitmweb's handler is chosen
  (the tornado application's `find_handler`, wrapped in place by addon/webui.py, imported only
  under mitmweb, when the script loads, before
  mitmweb listens; pinned by tests on 11 and 12): the `Host` must be an IP address or localhost
  (DNS rebinding; mitmweb 12 no longer checks it), a cross-origin browser request (an `Origin`
  other than the UI's own, `Sec-Fetch-Site` other than same-origin) is refused, commands that run code or
  read or write files (`DENIED_COMMANDS`, any command taking a path) are refused, and on
  mitmproxy 11 a secret is required: the `web_password` option (mitmproxy 12's name, added here
  on 11), or else a random token printed once on start. It is accepted as `?token=` (the printed
  URL; the answer then sets an HttpOnly SameSite=Strict cookie and drops it from the address),
  `Authorization: Bearer`, or that cookie. mitmproxy 12 checks its own token the same ways.
  tornado's access log (shown in mitmweb's event log) is written without query strings.
- `mask_secret_options`: the UI's option list (`GET /options`, and the websocket's `options/update`,
  also sent when a refused change is rolled back) shows credential options (`SECRET_OPTIONS`) as set
  or empty, never their value: a UI user who read the local access token could spend the provider
  key with prompts of their own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sys
from urllib.parse import urlencode, urlsplit

from mitmproxy import ctx, exceptions, optmanager, types

# The only options the web UI may still change: what is shown, and intercepting flows.
ADJUSTABLE = frozenset({
    "intercept", "intercept_active", "view_filter", "view_order", "view_order_reversed", "web_columns", "web_theme",
    "showhost", "flow_detail", "termlog_verbosity", "dumper_filter", "dumper_default_contentview",
    "content_view_lines_cutoff", "console_focus_follow",
})
# Commands that run code, start programs, touch files or reset every option; `set` and the rest go
# through FrozenOptions. Any command with a path parameter is refused as well (see WebGuard).
DENIED_COMMANDS = frozenset({
    "script.run", "browser.start", "options.load", "options.save", "options.reset", "save.file", "save.har",
    "export.file", "cut.save", "view.flows.load", "replay.client.file", "replay.server", "replay.server.add",
    "replay.server.file", "commands.history.add",
})
# Options holding a credential: the UI may see whether they are set, not what they are.
SECRET_OPTIONS = frozenset({"mimo_access_token", "web_password", "proxyauth", "upstream_auth"})
MASK = "(set, not shown)"
IP_HOST = re.compile(r"^(localhost|[0-9.]+|\[[0-9a-fA-F:.]+\])$")  # what mitmweb 11 itself accepts
FETCH_SITE_OK = ("same-origin", "none")  # none: typed into the address bar, or not a browser


def freeze(options) -> None:
    """Refuse, from now on, any change of an option outside ADJUSTABLE."""
    if "_mimo2codex_frozen" in vars(options):  # a script reload runs this again: one check is enough
        return
    frozen = {name: opt.current() for name, opt in options.items() if name not in ADJUSTABLE}

    def check(opts, updated: set[str]) -> None:
        changed = sorted(name for name in updated if name in frozen and getattr(opts, name) != frozen[name])
        if changed:
            raise exceptions.OptionsError(
                f"{', '.join(changed)} cannot change while mimo2codex runs: options decide what code runs in the "
                "proxy and where requests, and the API key with them, are sent. Restart with the new value.")

    vars(options)["_mimo2codex_frozen"] = check  # subscribe() keeps only a weak reference
    options.subscribe(check, list(frozen))


class FrozenOptions:
    """Options keep their start-up values once the proxy runs (see the module docstring)."""

    def running(self) -> None:
        freeze(ctx.options)


class WebGuard:
    """Checks every mitmweb request before mitmweb answers it (see the module docstring)."""

    def load(self, loader) -> None:
        # Installed while the script loads, before mitmweb listens: no request is ever unchecked.
        app = getattr(ctx.master, "app", None)
        if app is None:
            return  # not mitmweb: tornado is never imported (~5 MB a mitmdump would carry for nothing)
        from addon import webui

        if not isinstance(app, webui.tornado.web.Application):
            return
        if getattr(app, "mimo2codex_guard", None) is None:  # else: the script was reloaded, the guard stays
            webui.install(app, Check(ctx.master, own_login=own_login_needed()))
        mask_secret_options()
        if not own_login_needed():
            return
        if "web_password" not in ctx.options:
            loader.add_option("web_password", str, "",
                              "Password (token) for the web UI, as on mitmproxy 12 (plain text only on 11). "
                              "Empty: a random token printed once on start.")
        webaddon = ctx.master.addons.get("webaddon")
        if webaddon is not None:  # it would open the browser without the token; running() below opens it with
            webaddon.running = lambda: None

    def configure(self, updated: set[str]) -> None:
        guard = getattr(getattr(ctx.master, "app", None), "mimo2codex_guard", None)
        if "web_password" not in updated or guard is None or guard.token is None:
            return
        if ctx.options.web_password.startswith("$"):
            raise exceptions.OptionsError("web_password: argon2 hashes need mitmproxy 12 (Python 3.12+); "
                                          "on mitmproxy 11 give the password itself.")
        guard.use(ctx.options.web_password)

    def running(self) -> None:
        webauth = ctx.master.addons.get("webauth")
        if webauth is not None and not getattr(webauth, "mimo2codex_kept", False):
            keep_token(webauth)
        guard = getattr(getattr(ctx.master, "app", None), "mimo2codex_guard", None)
        if guard is None or guard.token is None or guard.shown or ctx.options.web_password:
            return  # mitmproxy 12 shows its own token; a password the user set is not printed
        guard.shown = True
        host = ctx.options.web_host or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        # Straight to the terminal, not through logging: mitmweb shows its log in the UI and
        # services keep it; the token must only reach the person who started the proxy.
        url = f"http://{host}:{ctx.options.web_port}/?{urlencode({'token': guard.token})}"
        print(f"mimo2codex: mitmweb UI at {url} (this token is shown only here; a restart makes a new one)",
              file=sys.stderr, flush=True)
        if ctx.options.web_open_browser:
            from addon import webui

            webui.webaddons.open_browser(url)


def mask_secret_options() -> None:
    """Make mitmweb's option dumps show SECRET_OPTIONS masked (see the module docstring).

    `optmanager.dump_dicts` is what both of mitmweb's option paths call (app.Options.get and
    WebMaster's options/update broadcast, looked up at call time on 11 and 12) and nothing else in
    mitmproxy does; wrapping it covers both without copying their handlers."""
    if getattr(optmanager.dump_dicts, "mimo2codex_masked", False):
        return
    dump = optmanager.dump_dicts

    def dump_dicts(opts, keys=None) -> dict:
        out = dump(opts, keys)
        for name in SECRET_OPTIONS.intersection(out):
            for field in ("value", "default"):
                if out[name].get(field):
                    out[name] = {**out[name], field: MASK}
        return out

    dump_dicts.mimo2codex_masked = True  # type: ignore[attr-defined]
    optmanager.dump_dicts = dump_dicts


def keep_token(webauth) -> None:
    """mitmproxy 12 draws a new random token each time web_password is configured, also when
    FrozenOptions rolls a refused change back to "": the user would be locked out. web_password
    is frozen from here on, so the token in use stays (private attribute, pinned by a test)."""
    configure = webauth.configure

    def keep(updated: set[str]) -> None:
        token = webauth._password
        configure(updated)
        webauth._password = token

    webauth.configure = keep
    webauth.mimo2codex_kept = True


def own_login_needed() -> bool:
    """mitmweb without its own login: mitmproxy 11 (12 has the webauth addon)."""
    return hasattr(ctx.master, "app") and ctx.master.addons.get("webauth") is None


class Check:
    """The rules of the module docstring, applied to one request."""

    def __init__(self, master, own_login: bool) -> None:
        self.master = master
        self.random = secrets.token_urlsafe(24)
        self.token: str | None = None  # None: mitmproxy checks its own token (12)
        self.cookie_value = ""
        self.shown = False  # the token was printed (once per process, not again on a script reload)
        if own_login:
            self.use("")  # fail closed from the first request on, until web_password is known

    def use(self, password: str) -> None:
        self.token = password or self.random
        self.cookie_value = hmac.new(self.token.encode(), b"mimo2codex web cookie", hashlib.sha256).hexdigest()

    @staticmethod
    def cookie_name() -> str:
        return f"mimo2codex-web-{ctx.options.web_port}"  # one per port: two proxies on 127.0.0.1 share a jar

    def refusal(self, request) -> dict | None:
        """None if mitmweb may answer the request, else what Refused sends instead."""
        if not IP_HOST.match(request.host_name or ""):
            return deny(403, "mitmweb answers only requests addressed to an IP address or localhost (DNS rebinding).")
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc.lower() != (request.host or "").lower():
            return deny(403, "cross-origin requests to mitmweb are refused.")
        if request.headers.get("Sec-Fetch-Site", "none") not in FETCH_SITE_OK:
            return deny(403, "cross-site requests to mitmweb are refused.")
        if self.token is not None:
            sent = self.sent_token(request)
            if sent is None and not self.good_cookie(request):
                return deny(403, "mitmweb needs its token: open the address mimo2codex printed on start (it ends in "
                                 "?token=...), or add ?token=<your web_password>; scripts send Authorization: Bearer <token>.")
            if sent is not None and request.method == "GET" and request.path == "/":
                # Keep the token out of the address bar and history: the cookie carries it from here.
                return {"status": 302, "text": "", "location": "/",
                        "cookie": (self.cookie_name(), self.cookie_value)}
        path = request.path.rstrip("/")
        if path.startswith("/commands/"):
            name = path[len("/commands/"):]
            cmd = self.master.commands.commands.get(name)
            if name in DENIED_COMMANDS or (cmd and any(p.type is types.Path for p in cmd.parameters)):
                return deny(403, f"the command {name} runs code or touches files: mimo2codex refuses it from the web UI.")
        return None

    def sent_token(self, request) -> str | None:
        """The token if the request carries the right one (None if absent or wrong)."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        candidates = [value.strip()] if scheme.lower() == "bearer" else []
        candidates += [v.decode("utf-8", "replace") for v in request.query_arguments.get("token", [])]
        for sent in candidates:
            if hmac.compare_digest(sent.encode(), self.token.encode()):
                return sent
        return None

    def good_cookie(self, request) -> bool:
        morsel = request.cookies.get(self.cookie_name())
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self.cookie_value.encode())


def deny(status: int, why: str) -> dict:
    return {"status": status, "text": f"mimo2codex: {why}\n"}
