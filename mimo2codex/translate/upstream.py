"""A blocking HTTP POST for the few requests the proxy makes itself (retries after 429/5xx).

mitmproxy owns the first attempt and streams it; a retry happens after the upstream already
answered with an error, when only a whole-body answer can still be given to the client.
"""

from __future__ import annotations

import urllib.error
import urllib.request


def post(url: str, headers: dict[str, str], body: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def retry_delay(attempt: int, base: float, retry_after: float | None) -> float:
    """Backoff before retry `attempt` (1-based), honouring the upstream's Retry-After."""
    return retry_after if retry_after is not None else base * (2 ** (attempt - 1))
