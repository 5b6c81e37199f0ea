"""Provider errors -> the error codes Codex acts on (codex-responses.md §4).

`map_upstream` reads a provider error answer (JSON, SSE-framed `data:{...}`, HTML or nothing) and
picks the first `errors` rule of the provider file that applies. The result is rendered either as
an OpenAI-shaped JSON body (`error_body`, for HTTP answers) or as a complete Responses stream that
ends in `response.failed` (`failed_stream`, for stream requests that fail before any upstream byte).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from mimo2codex.translate import secrets
from mimo2codex.translate.sse import event, response_object, strip_data_prefix

DETAIL_MAX = 1000

# MiMo's `message` is often a category ("Param Incorrect") and the real text sits in `param`.
_GENERIC = re.compile(r"(?i)^\s*(param(eter)?s? incorrect|bad request|invalid request|error)\s*\.?\s*$")
_SECRET = re.compile(r"(?i)\b((?:sk|tp)-)[a-z0-9_\-]{8,}|\b(bearer\s+)[a-z0-9._\-]{8,}")
_TITLE = re.compile(rb"(?is)<title[^>]*>(.*?)</title>")
_TAGS = re.compile(r"<[^>]+>")

# Codex codes -> (HTTP status for an HTTP answer, OpenAI error type)
_HTTP = {
    "rate_limit_exceeded": (429, "rate_limit_error"),
    "slow_down": (429, "rate_limit_error"),
    "insufficient_quota": (402, "insufficient_quota"),
    "context_length_exceeded": (400, "invalid_request_error"),
    "invalid_prompt": (400, "invalid_request_error"),
    "server_is_overloaded": (503, "server_error"),
    "server_error": (502, "server_error"),
}


@dataclass(frozen=True)
class MappedError:
    code: str  # what Codex dispatches on (response.failed error.code / error.code of a JSON body)
    message: str  # shown to the user; rate limits carry "try again in Ns"
    detail: str  # the provider's most useful text
    status: int  # HTTP status to answer with when the error goes out as an HTTP answer
    retry: bool  # worth retrying upstream (per the rules file)
    retry_after: float | None  # seconds, from the provider's Retry-After
    type: str  # OpenAI error type
    param: str | None = None
    upstream_status: int | None = None
    http_answer: bool = False  # the rule asks for an HTTP status answer even on stream requests


def redact(text: str) -> str:
    """Known secrets and key-shaped tokens (sk-/tp- keys, bearer values) masked; errors may quote what was sent."""
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2)) + "***", secrets.scrub(text))


def _retry_after(headers: dict[str, str] | None) -> float | None:
    if not headers:
        return None
    low = {str(k).lower(): v for k, v in headers.items()}
    ms = low.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = low.get("retry-after")
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value, ensure_ascii=False)


def _parse(status: int, body: bytes) -> tuple[str, str, str, str, str]:
    """(detail, message, param, type, code) of an error body; detail is never empty."""
    raw = body or b""
    payload = strip_data_prefix(raw)
    obj: Any = None
    if payload[:1] in (b"{", b"["):
        try:
            obj = json.loads(payload)
        except ValueError:
            obj = None
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        obj = obj[0]
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, str):
            err = {"message": err}
        if isinstance(err, dict):
            message = _text(err.get("message") or err.get("msg") or err.get("detail") or err.get("error_msg"))
            param = _text(err.get("param"))
            etype = _text(err.get("type"))
            code = _text(err.get("code"))
            if param and message and param != message and not _GENERIC.match(message):
                detail = f"{message}: {param}"
            else:
                detail = param or message
            if detail:
                return detail, message, param, etype, code
    text = payload.decode("utf-8", "replace").strip()  # an SSE-framed HTML page is still a page
    title = _TITLE.search(payload)
    if title:
        text = title.group(1).decode("utf-8", "replace").strip()
    elif text.lstrip()[:1] == "<":
        text = _TAGS.sub(" ", text)
    text = " ".join(text.split())
    if not text:
        return f"HTTP {status} with no error details", "", "", "", ""
    return text, "", "", "", ""


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _num(value: float) -> str:
    return f"{value:g}"


def map_upstream(rules: Any, status: int, body: bytes, headers: dict[str, str] | None = None) -> MappedError:
    """Map one provider error answer through the rules file's `errors` list. Never raises."""
    try:
        return _map(rules, status, body, headers)
    except Exception as exc:  # a broken rule must not take the answer down with it
        detail = f"HTTP {status} (error mapping failed: {type(exc).__name__})"
        return MappedError("server_error", detail, detail, 502, True, None, "server_error", None, status)


def _map(rules: Any, status: int, body: bytes, headers: dict[str, str] | None) -> MappedError:
    detail, message, param, etype, code = _parse(status, body)
    detail = redact(detail)
    if len(detail) > DETAIL_MAX:
        detail = detail[: DETAIL_MAX - 1] + "…"
    haystack = "\n".join((detail, message, param, etype, code, (body or b"")[:4000].decode("utf-8", "replace")))
    rule = next((r for r in getattr(rules, "errors", ()) if r.applies(status, haystack)), None)
    retry_after = _retry_after(headers)
    if rule is None:
        out_code, template, retry = ("server_error" if status >= 500 or status < 400 else "invalid_prompt"), None, status >= 500
        http_answer = False
    else:
        out_code, template, retry, http_answer = rule.code, rule.message, rule.retry, rule.http
    fields = _Fields(
        detail=detail,
        status=status,
        retry_after=_num(retry_after if retry_after is not None else 1),
        provider=getattr(rules, "name", "") or getattr(rules, "provider", "upstream"),
        env=getattr(rules, "auth_env", ""),
    )
    try:
        text = template.format_map(fields) if template else detail
    except (ValueError, IndexError, AttributeError, KeyError):
        text = detail
    text = redact(text)
    http, otype = _HTTP.get(out_code, (400 if 400 <= status < 500 else 502, "invalid_request_error" if 400 <= status < 500 else "server_error"))
    if status == 401:
        http, otype = 401, "authentication_error"
    # MiMo's `param` is prose, not the name of a request parameter: it lives on in `detail` only.
    return MappedError(out_code, text, detail, http, retry, retry_after, otype, None, status, http_answer)


def client_error(message: str, param: str | None = None, code: str = "invalid_request_error", status: int = 400) -> MappedError:
    """Our own validation error for bad client input."""
    message = redact(message)
    return MappedError(code, message, message, status, False, None, "invalid_request_error", param, None)


def server_error(message: str, status: int = 502) -> MappedError:
    """The proxy itself cannot answer (no translator, no rules): a 5xx the client may retry later."""
    message = redact(message)
    return MappedError("server_error", message, message, status, False, None, "server_error")


def from_failed(error: dict[str, Any] | None) -> MappedError:
    """A failed Response's `error` as an HTTP answer: what a non-stream client gets instead of a 200."""
    error = error or {}
    code = str(error.get("code") or "server_error")
    message = redact(str(error.get("message") or "the upstream answer failed"))
    status, otype = _HTTP.get(code, (502, "server_error"))
    return MappedError(code, message, message, status, False, None, otype)


def error_body(m: MappedError) -> bytes:
    """OpenAI-shaped JSON error body for HTTP answers."""
    return json.dumps(
        {"error": {"message": m.message, "type": m.type, "param": m.param, "code": m.code}}, ensure_ascii=False
    ).encode()


def failed_stream(turn: Any, m: MappedError) -> bytes:
    """A complete Responses stream ending in response.failed (error before any upstream byte)."""
    start = response_object(turn, "in_progress")
    failed = response_object(turn, "failed", error={"code": m.code, "message": m.message})
    return b"".join(
        (
            event("response.created", 0, {"response": start}),
            event("response.in_progress", 1, {"response": start}),
            event("response.failed", 2, {"response": failed}),
        )
    )
