"""Keeping secrets out of logs, errors and flow files."""

from __future__ import annotations

SECRET_HEADERS = ("authorization", "api-key", "x-api-key", "proxy-authorization", "cookie", "set-cookie",
                  "x-goog-api-key")
REDACTED = "<redacted>"


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every non-trivial secret value replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text


def redact_headers(headers) -> None:
    """Replace secret header values in place (a dict or a mitmproxy Headers object)."""
    for name in SECRET_HEADERS:
        if name in headers:
            headers[name] = REDACTED
