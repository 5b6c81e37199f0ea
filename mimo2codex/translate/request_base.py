"""What the parts of the request mapping share: BadRequest (client input we cannot translate) and warn_once."""

from __future__ import annotations

import logging

log = logging.getLogger("mimo2codex.translate.request")
_warned: set[str] = set()


class BadRequest(ValueError):
    """Client input we cannot translate; becomes an HTTP 4xx with a Responses-shaped error."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request_error", status: int = 400):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


def warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)
