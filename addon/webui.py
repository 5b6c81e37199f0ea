"""The tornado side of addon/webguard.py: its check put in front of mitmweb's router, its refusals,
and tornado's access log without query strings. Imported only under mitmweb, so a mitmdump never
loads tornado and mitmweb's handlers."""

from __future__ import annotations

import logging

import tornado.log
import tornado.web
from mitmproxy.tools.web import webaddons  # noqa: F401  (webguard opens the browser through it)


def install(app: tornado.web.Application, guard) -> None:
    """Every request meets `guard` (webguard.Check) before mitmweb's router picks a handler (also for /updates)."""
    original = app.find_handler

    def find_handler(request, **kwargs):
        refusal = guard.refusal(request)
        if refusal is None:
            return original(request, **kwargs)
        return app.get_handler_delegate(request, Refused, refusal)

    app.find_handler = find_handler
    app.settings["log_function"] = log_request
    app.mimo2codex_guard = guard


def log_request(handler) -> None:
    """tornado's access log line without the query string, where a token may be (?token=)."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    req = handler.request
    tornado.log.access_log.log(level, "%d %s %s (%s) %.2fms", status, req.method, req.path, req.remote_ip,
                               1000.0 * req.request_time())


class Refused(tornado.web.RequestHandler):
    """Answers a request WebGuard turned away (or redirects after a good ?token=)."""

    def initialize(self, status: int, text: str, location: str | None = None, cookie: tuple[str, str] | None = None) -> None:
        self.answer = (status, text, location, cookie)

    def check_xsrf_cookie(self) -> None:  # our answer, not mitmweb's: nothing to protect
        pass

    def prepare(self) -> None:
        status, text, location, cookie = self.answer
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        if cookie:
            self.set_cookie(*cookie, path="/", httponly=True, samesite="Strict")
        if location:
            self.set_header("Location", location)
        self.finish(text)
