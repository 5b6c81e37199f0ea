"""mitmweb / mitmproxy contentviews for translated flows (registered on import).

- "mimo2codex": picked automatically for every translated flow. Request tab: what Codex sent
  (Responses request, from flow.metadata) and what went upstream (the Chat request, the body).
  Response tab: the provider's Chat stream, the Responses stream Codex got, the final Response.
- "Responses-SSE" / "Chat-SSE": any Responses or Chat Completions event stream as a numbered
  event list, runs of deltas folded into one line; picked automatically for such bodies.

The contentview API changed in mitmproxy 12 (`Contentview.prettify(data, metadata) -> str`)
from 11's (`View.__call__(data, **metadata) -> (description, lines)`); the rendering is shared and
only the thin adapter class differs. mitmweb route names must be URL-safe, hence the dashes.
"""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import contentviews, http

from mimo2codex.sessions import eventlist

META = "m2c."
LIMIT = 300  # characters of one text shown in a line; the full text is in the JSON sections
NEW_API = hasattr(contentviews, "Contentview")  # mitmproxy >= 12


# ------------------------------------------------------------------------------------------------
# Rendering (version-independent)


def _meta(flow: Any) -> dict:
    return getattr(flow, "metadata", None) or {}


def is_translated(flow: Any) -> bool:
    return any(str(k).startswith(META) for k in _meta(flow))


def _loads(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, (str, bytes)) and text else None
    except ValueError:
        return None


def _section(title: str) -> str:
    return f"\n━━ {title} " + "━" * max(4, 72 - len(title))


def header_lines(flow: Any) -> list[str]:
    m = _meta(flow)
    lines = [f"mimo2codex · {getattr(flow, 'comment', '') or m.get(META + 'model', '')}"]
    if getattr(flow, "marked", ""):
        lines.append(f"FAILED TURN {flow.marked}")
    for key, label in (("upstream_url", "sent to"), ("error", "error"), ("retries", "retries"),
                       ("replay", "replayed from recording"), ("bodies", "bodies")):
        if m.get(META + key):
            lines.append(f"{label}: {m[META + key]}")
    return lines


def render_request(data: bytes, flow: Any) -> str:
    m = _meta(flow)
    provider = m.get(META + "provider", "provider")
    lines = header_lines(flow)
    original = _loads(m.get(META + "responses_request"))
    if original is not None:
        lines.append(_section("Codex → proxy: Responses request (as received, from flow.metadata)"))
        lines += eventlist.responses_request_lines(original, LIMIT)
    chat = _loads(m.get(META + "chat_request")) or _loads(data)
    if chat is not None:
        lines.append(_section(f"proxy → {provider}: Chat Completions request (this body)"))
        lines += eventlist.chat_request_lines(chat, LIMIT)
        lines.append(_section("Chat request JSON"))
        lines += json.dumps(chat, indent=2, ensure_ascii=False).splitlines()
    elif data:
        lines.append(_section("request body"))
        lines += eventlist.body_lines(data, LIMIT)
    if original is not None:
        lines.append(_section("Responses request JSON"))
        lines += json.dumps(original, indent=2, ensure_ascii=False).splitlines()
    return "\n".join(lines)


def render_response(data: bytes, flow: Any) -> str:
    m = _meta(flow)
    provider = m.get(META + "provider", "provider")
    lines = header_lines(flow)
    upstream = m.get(META + "upstream_body")
    if upstream is None and data:  # a streamed flow's content is the provider's answer (addon/mimo.py annotate)
        upstream = data
    status = m.get(META + "upstream_status", "")
    if upstream is not None:
        events = eventlist.parse_events(upstream) if eventlist.looks_like_sse(upstream) else []
        what = f"Chat stream, {len(events)} events" if events else "body"
        lines.append(_section(f"{provider} → proxy: {what}{f', HTTP {status}' if status else ''}"))
        lines += eventlist.body_lines(upstream, LIMIT)
    client = m.get(META + "client_body")
    if client is not None:
        events = eventlist.parse_events(client) if eventlist.looks_like_sse(client) else []
        what = f"Responses stream, {len(events)} events" if events else "body"
        lines.append(_section(f"proxy → Codex: {what}"))
        lines += eventlist.body_lines(client, LIMIT)
    final = _loads(m.get(META + "response"))
    if isinstance(final, dict):
        lines.append(_section("final Response"))
        lines.append(f"{final.get('id')} · {final.get('model')} · status {final.get('status')} · "
                     f"{eventlist.usage_text(final.get('usage'))}")
        if final.get("error"):
            lines.append(f"error: {json.dumps(final['error'], ensure_ascii=False)}")
        if final.get("incomplete_details"):
            lines.append(f"incomplete: {json.dumps(final['incomplete_details'], ensure_ascii=False)}")
        for i, item in enumerate(final.get("output") or []):
            if isinstance(item, dict):
                lines.append(f"  [{i}] {eventlist.item_text(item, 0)}")
    if upstream is None and client is None and data:
        lines.append(_section("body"))
        lines += eventlist.body_lines(data, LIMIT)
    return "\n".join(lines)


def render_mimo(data: bytes, flow: Any, message: Any) -> str:
    if isinstance(message, http.Request):
        return render_request(data, flow)
    return render_response(data, flow)


def render_sse(data: bytes, chat: bool) -> str:
    lines = eventlist.chat_lines(data, LIMIT) if chat else eventlist.responses_lines(data, LIMIT)
    return "\n".join(lines) if lines else "(no events)"


def sse_kind(data: bytes, content_type: str | None) -> str | None:
    """"chat", "responses" or None for a body that is neither kind of event stream."""
    if not data or not ("event-stream" in (content_type or "") or eventlist.looks_like_sse(data)):
        return None
    events = eventlist.parse_events(data[:65536])
    if eventlist.is_chat_stream(events):
        return "chat"
    if eventlist.is_responses_stream(events):
        return "responses"
    return None


def mimo_priority(flow: Any, message: Any) -> float:
    if not is_translated(flow) or not isinstance(message, (http.Request, http.Response)):
        return -1
    return 3


# ------------------------------------------------------------------------------------------------
# mitmproxy adapters

if NEW_API:

    class Mimo2codexContentview(contentviews.Contentview):
        name = "mimo2codex"
        syntax_highlight = "none"

        def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
            return render_mimo(data, metadata.flow, metadata.http_message)

        def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
            return mimo_priority(metadata.flow, metadata.http_message)

    class _SSEContentview(contentviews.Contentview):
        kind = ""
        syntax_highlight = "none"

        def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
            return render_sse(data, self.kind == "chat")

        def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
            return 2 if sse_kind(data, metadata.content_type) == self.kind else -1

    class ResponsesSSEContentview(_SSEContentview):
        name = "Responses-SSE"
        kind = "responses"

    class ChatSSEContentview(_SSEContentview):
        name = "Chat-SSE"
        kind = "chat"

    VIEWS = [Mimo2codexContentview(), ResponsesSSEContentview(), ChatSSEContentview()]

    def register() -> None:
        for view in VIEWS:
            contentviews.add(view)  # re-adding a name replaces it

else:

    def _lines(text: str):
        return [[("text", line)] for line in text.splitlines()]

    class Mimo2codexView(contentviews.View):
        name = "mimo2codex"

        def __call__(self, data: bytes, *, flow=None, http_message=None, **unknown):
            return "mimo2codex", _lines(render_mimo(data, flow, http_message))

        def render_priority(self, data: bytes, *, flow=None, http_message=None, **unknown) -> float:
            return mimo_priority(flow, http_message)

    class _SSEView(contentviews.View):
        kind = ""

        def __call__(self, data: bytes, **unknown):
            return f"{self.name} events", _lines(render_sse(data, self.kind == "chat"))

        def render_priority(self, data: bytes, *, content_type=None, **unknown) -> float:
            return 2 if sse_kind(data, content_type) == self.kind else -1

    class ResponsesSSEView(_SSEView):
        name = "Responses-SSE"
        kind = "responses"

    class ChatSSEView(_SSEView):
        name = "Chat-SSE"
        kind = "chat"

    VIEWS = [Mimo2codexView(), ResponsesSSEView(), ChatSSEView()]

    def register() -> None:
        for view in VIEWS:
            old = contentviews.get(view.name)
            if old is not None:  # 11 refuses duplicate names (script reloads)
                contentviews.remove(old)
            contentviews.add(view)


register()
