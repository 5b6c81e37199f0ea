"""Reading recorded sessions: a mitmproxy flow file -> `mimo2codex.sessions.recording.Exchange`s.

Works on files from `launch.py record` and `mitmdump -s addon/mimo.py -w FILE`, written by
mitmproxy 11 or 12 (mitmproxy.io converts older flow formats on read). Everything after this
point (show, replay, compare) is mitmproxy-free.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from mitmproxy import exceptions, http, io  # noqa: E402

from mimo2codex.sessions.recording import Exchange  # noqa: E402

META = "m2c."


def read_flows(path: str | Path) -> list[http.HTTPFlow]:
    try:
        with open(path, "rb") as f:
            return [fl for fl in io.FlowReader(f).stream() if isinstance(fl, http.HTTPFlow)]
    except exceptions.FlowReadException as e:
        raise ValueError(f"{path}: not a mitmproxy flow file ({e})") from None


def _json(text: Any) -> Any:
    if not isinstance(text, (str, bytes)):  # m2c.responses_request: bytes since 2026-12-04, text before
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _chat_request(flow: http.HTTPFlow) -> Any:
    """What went upstream: the request's body (flows recorded before 2026-12-04 also held it as text in metadata)."""
    kept = flow.metadata.get(META + "chat_request")
    if kept is None:
        return None
    if isinstance(kept, str):
        return _json(kept)
    return _json(flow.request.get_text(strict=False))


def to_exchange(flow: http.HTTPFlow, index: int) -> Exchange:
    m = flow.metadata
    resp = flow.response
    status = m.get(META + "upstream_status")
    # Recorded without addon/recorder.py: a streamed translated response is still the provider's own.
    streamed = (resp is not None and META + "chat_request" in m and "event-stream" in resp.headers.get("content-type", "")
                and resp.headers.get("transfer-encoding", "").lower() == "chunked")
    if status is None and streamed:
        status = resp.status_code
    upstream_body = m.get(META + "upstream_body")
    if upstream_body is None and resp is not None and status is not None:
        upstream_body = resp.get_content(strict=False)
    ctype = m.get(META + "upstream_content_type") or (resp.headers.get("content-type", "") if streamed else "")
    headers = _json(m.get(META + "upstream_headers")) or {}
    return Exchange(
        index=index,
        method=flow.request.method,
        path=flow.request.path if META + "responses_request" not in m else "/v1/responses",
        started=flow.request.timestamp_start,
        ended=(resp.timestamp_end if resp is not None and resp.timestamp_end else None)
        or (flow.error.timestamp if flow.error else None),
        responses_request=_json(m.get(META + "responses_request")),
        chat_request=_chat_request(flow),
        upstream_status=int(status) if status is not None else None,
        upstream_content_type=str(ctype or ""),
        upstream_headers=headers if isinstance(headers, dict) else {},
        upstream_body=_bytes(upstream_body),
        upstream_broken=bool(flow.error) and status is not None,
        client_status=resp.status_code if resp is not None else None,
        client_body=_bytes(m.get(META + "client_body")) or (resp.get_content(strict=False) or b"" if resp is not None else b""),
        response=_json(m.get(META + "response")),
        error=str(m.get(META + "error") or (flow.error.msg if flow.error else "")),
        comment=flow.comment or "",
        marked=flow.marked or "",
        model=str(m.get(META + "model") or ""),
        stream=bool(m.get(META + "stream", True)),
        provider=str(m.get(META + "provider") or ""),
        retries=str(m.get(META + "retries") or ""),
        replay=str(m.get(META + "replay") or ""),
        bodies=str(m.get(META + "bodies") or ""),
    )


def load(path: str | Path) -> list[Exchange]:
    """Every HTTP flow of the file, in recorded order, numbered from 1."""
    return [to_exchange(f, i) for i, f in enumerate(read_flows(path), 1)]
