"""A recorded Codex session as plain data, and the tolerant matching that replays it.

A recording is a mitmproxy flow file (`launch.py record`, or `mitmdump -s addon/mimo.py -w FILE`);
`addon/flowfile.py` turns each flow into an `Exchange`, so nothing here imports mitmproxy.

Matching: a re-run of a Codex session never sends byte-identical requests. Codex puts fresh
values in `prompt_cache_key`, `client_metadata`, every input item `id`, the date in
`<environment_context>`, and "Wall time"/"Chunk ID" lines in tool outputs; our own ids
(`resp_…`, `rs_…`, `call_…`) are random too and come back in the next request. `fingerprint()`
removes all of that, so an unchanged session matches exactly; when it still does not match (a
different prompt, a changed rule), the next unused exchange of the same shape, then simply the
next unused exchange, is served, and the flow says which rule matched.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from mimo2codex.sessions import eventlist

# Keys whose values differ between two runs of the same session (Responses and Chat side).
VOLATILE_KEYS = frozenset({
    "id", "prompt_cache_key", "client_metadata", "metadata", "user", "safety_identifier", "created", "created_at",
    "encrypted_content", "call_id", "tool_call_id", "item_id", "response_id", "sequence_number", "system_fingerprint",
    "previous_response_id", "service_tier",
})
_VOLATILE_TEXT = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"\b(?:resp|msg|rs|fc|fco|ctc|ctco|call|lsh|chatcmpl)[_-][0-9A-Za-z_-]{4,}"), "<id>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"), "<date>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}\b"), "<time>"),
    (re.compile(r"(Wall time: )[\d.]+"), r"\1<t>"),
    (re.compile(r"(Chunk ID: )\w+"), r"\1<id>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s|seconds)\b"), "<duration>"),
]


def normalise(obj: Any) -> Any:
    """`obj` with the values that change between runs of the same session taken out."""
    if isinstance(obj, dict):
        return {k: normalise(v) for k, v in obj.items() if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [normalise(v) for v in obj]
    if isinstance(obj, str):
        for pattern, repl in _VOLATILE_TEXT:
            obj = pattern.sub(repl, obj)
        return obj
    return obj


def fingerprint(request: Any) -> str:
    return hashlib.sha256(json.dumps(normalise(request), sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def shape(request: Any) -> tuple:
    """What a request looks like without its text: model and the kinds/roles of its items."""
    if not isinstance(request, dict):
        return ()
    items = request.get("input", request.get("messages"))
    kinds = tuple((i.get("type", "message"), i.get("role", "")) for i in items if isinstance(i, dict)) if isinstance(items, list) else ()
    return (request.get("model"), kinds)


@dataclass
class Exchange:
    """One recorded flow, reduced to what show/replay/compare need."""

    index: int
    method: str = "POST"
    path: str = "/v1/responses"
    started: float | None = None
    ended: float | None = None
    responses_request: Any = None   # what Codex sent (None: not a translated request)
    chat_request: Any = None        # what went upstream (None: answered locally)
    upstream_status: int | None = None  # None: the upstream never answered (connect failure)
    upstream_content_type: str = ""
    upstream_headers: dict = field(default_factory=dict)  # only harmless ones (retry-after, ...)
    upstream_body: bytes = b""
    upstream_broken: bool = False   # the upstream connection died mid-body
    client_status: int | None = None
    client_body: bytes = b""        # what the client got (Responses SSE or JSON)
    response: Any = None            # the final Response object
    error: str = ""
    comment: str = ""
    marked: str = ""
    model: str = ""
    stream: bool = True
    provider: str = ""
    retries: str = ""
    replay: str = ""                # how a replayed flow was matched ("#3 exact")
    bodies: str = ""                # why the streamed bodies are missing ("not kept (mimo_keep_bodies=never)")

    @property
    def translated(self) -> bool:
        return self.chat_request is not None

    @property
    def failed(self) -> bool:
        return bool(self.error) or bool(self.marked) or self.status in ("failed", "incomplete")

    @property
    def status(self) -> str:
        if isinstance(self.response, dict) and self.response.get("status"):
            return str(self.response["status"])
        return "error" if self.error else ""

    @property
    def duration(self) -> float | None:
        if self.started and self.ended:
            return self.ended - self.started
        return None

    def client_events(self) -> list[Any]:
        return eventlist.parse_events(self.client_body) if eventlist.looks_like_sse(self.client_body) else []

    def output(self) -> list[dict]:
        """The output items the client kept: from the final Response, else from the events."""
        if isinstance(self.response, dict) and self.response.get("output"):
            return [i for i in self.response["output"] if isinstance(i, dict)]
        return [e["item"] for e in self.client_events()
                if isinstance(e, dict) and e.get("type") == "response.output_item.done" and isinstance(e.get("item"), dict)]

    def usage(self) -> dict | None:
        if isinstance(self.response, dict) and isinstance(self.response.get("usage"), dict):
            return self.response["usage"]
        return None


class Matcher:
    """Pairs incoming requests with recorded exchanges: exact (normalised) → same shape → in order.

    Each recorded exchange answers once, in recording order among equals, so a session whose
    turn was retried (a failed attempt, then a good one) replays both attempts in turn. Once
    every exchange is used, a request that matches one exactly gets that answer again (Codex
    retrying more often than it did while recording).
    """

    def __init__(self, exchanges: list[Exchange], side: str = "responses") -> None:
        self.side = side
        self.exchanges = [e for e in exchanges if e.translated and self._request(e) is not None]
        self.prints = [fingerprint(self._request(e)) for e in self.exchanges]
        self.shapes = [shape(self._request(e)) for e in self.exchanges]
        self.used = [False] * len(self.exchanges)

    def _request(self, e: Exchange) -> Any:
        return e.responses_request if self.side == "responses" else e.chat_request

    def match(self, request: Any) -> tuple[Exchange | None, str]:
        fp, sh = fingerprint(request), shape(request)
        for rule, test in (("exact", lambda i: self.prints[i] == fp), ("shape", lambda i: self.shapes[i] == sh),
                           ("order", lambda i: True)):
            for i, ex in enumerate(self.exchanges):
                if not self.used[i] and test(i):
                    self.used[i] = True
                    return ex, rule
        for i in range(len(self.exchanges) - 1, -1, -1):
            if self.prints[i] == fp:
                return self.exchanges[i], "repeat"
        return None, "none"

    def remaining(self) -> int:
        return self.used.count(False)


# ------------------------------------------------------------------------------------------------
# Comparing what two runs sent to the client


def comparable_events(body: bytes | str | None) -> list[Any]:
    """The client's events with ids, timestamps and sequence numbers taken out (replay equality)."""
    return [normalise(e) for e in eventlist.parse_events(body)]
