"""Keeping secrets out of logs, errors and flow files."""

from __future__ import annotations

import os

SECRET_HEADERS = ("authorization", "api-key", "x-api-key", "proxy-authorization", "cookie", "set-cookie",
                  "x-goog-api-key")
REDACTED = "<redacted>"
# The same, as the raw (name, value) fields of mitmproxy's Headers hold them: one pass over those
# costs less than one lookup by name, which walks every field.
SECRET_FIELDS = frozenset(name.encode() for name in SECRET_HEADERS)
REDACTED_FIELD = REDACTED.encode()
TOKEN_ENV = "MIMO2CODEX_ACCESS_TOKEN"  # the proxy's own local access token (launch.py --access-token)
WEB_PASSWORD_ENV = "MIMO2CODEX_WEB_PASSWORD"  # a fixed mitmweb token for launch.py --web (services), see cli.py
LOCAL_SECRET_ENVS = (TOKEN_ENV, WEB_PASSWORD_ENV)  # besides the provider keys, whose names the rules give


_known: set[str] = set()  # secret values in use by this process (the provider key), see remember()
_held: dict[str, str] = {}  # variables taken out of os.environ, see hold_env()


def remember(value: str | None) -> None:
    """Scrub `value` from every text that goes through scrub() from now on, whatever its shape.

    Error texts are built deep in the translator (errors.map_upstream, also mid-stream) from what
    the provider sent back; a provider that echoes the key must not get it to the client.
    """
    if value and len(value) >= 8:
        _known.add(value)


def known() -> tuple[str, ...]:
    """The remembered secret values (for scrubbing stored bodies)."""
    return tuple(_known)


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every non-trivial secret value (those given and those remembered) replaced."""
    for secret in (*secrets, *_known):
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_headers(headers) -> None:
    """Replace secret header values in place (a dict or a mitmproxy Headers object)."""
    # One pass over the names: `in` on mitmproxy's Headers walks every field, and this runs
    # several times per flow for seven names.
    # Values redacted already are left alone: the translated request's is, at each of those times.
    if isinstance(headers, dict):
        present = {k for k, v in headers.items() if v != REDACTED}
    else:
        present = {k.decode("latin-1").lower() for k, v in headers.fields if v != REDACTED_FIELD}
    for name in SECRET_HEADERS:
        if name in present:
            headers[name] = REDACTED


def has_secret(headers) -> bool:
    """Whether a mitmproxy Headers object holds a secret header value that is not redacted yet."""
    return any(k.lower() in SECRET_FIELDS and v != REDACTED_FIELD for k, v in headers.fields)


def hold_env(*names: str) -> None:
    """Take these variables out of `os.environ`, keeping their values for `getenv` in this process.

    Programs the proxy starts (mitmweb opening a browser) then do not inherit them. It does not
    change `/proc/<pid>/environ`: the kernel shows the environment block the process started
    with, which neither `os.environ` nor unsetenv() rewrites (nodump.forbid() closes that file).
    """
    for name in names:
        value = os.environ.pop(name, None)
        if value is not None:
            _held[name] = value


def getenv(name: str) -> str:
    """A variable from the environment, or the value hold_env() took out of it."""
    return os.environ.get(name, _held.get(name, ""))
