"""What `-w FILE` needs so a recording is complete and holds no secret.

mitmproxy's Save addon writes a flow in the `response` and `error` hooks and, at shutdown, every
flow still in flight (mitmproxy-notes §7). Script addons run before Save in each hook, so this
addon gets the last word before anything reaches disk:

- request headers that carry secrets (api-key, Authorization, Cookie, ...) are replaced once the
  request has been sent (`response`/`error`), and for flows still in flight in `done`;
- the provider key itself is scrubbed from bodies and metadata of translated flows, in case an
  upstream error message echoed it;
- response Set-Cookie is redacted; for a pass-through response that has not been sent yet it is
  put back right after Save wrote the flow (an addon appended after Save does that), so recording
  never changes what a client receives;
- a streamed answer cut off by shutdown keeps the bytes received so far (the translator's tee)
  and is marked as failed;
- facts the translator's `response` hook replaces are kept in metadata: the provider's status,
  content type and Retry-After (a retried or error answer is replaced by the client's answer).
"""

from __future__ import annotations

import json
import logging

from mitmproxy import ctx, http

from addon import reloading
from mimo2codex.translate import secrets

log = logging.getLogger("mimo2codex.recorder")
META = "m2c."
KEEP_HEADERS = ("retry-after",)


def _translated(flow: http.HTTPFlow) -> bool:
    return META + "chat_request" in flow.metadata


# Module level, like guard's: a reload of addon/mimo.py builds a new Recorder, the flows go on.
_INFLIGHT: dict[str, http.HTTPFlow] = {}
_UNSENT: dict[str, http.Headers] = {}


class Recorder:
    def __init__(self) -> None:
        self.inflight = _INFLIGHT
        self.unsent = _UNSENT  # pass-through response headers to restore after Save

    # -- helpers -------------------------------------------------------------------------------

    def api_key(self) -> str:
        translate = ctx.master.addons.get("mimotranslate") if ctx.master else None
        try:
            return translate.api_key() if translate is not None else ""
        except Exception:  # rules not loaded yet
            return ""

    def scrub(self, flow: http.HTTPFlow) -> None:
        """Take the provider keys (the main one and any routed provider's) out of everything a flow stores."""
        for key in {self.api_key(), *secrets.known()}:
            if len(key) >= 8:  # shorter is too short to search for without mangling ordinary text
                self._scrub_one(flow, key)

    @staticmethod
    def _scrub_one(flow: http.HTTPFlow, key: str) -> None:
        bkey = key.encode()
        for k, v in list(flow.metadata.items()):
            if isinstance(v, str) and key in v:
                flow.metadata[k] = v.replace(key, secrets.REDACTED)
            elif isinstance(v, bytes) and bkey in v:  # the client's request, kept as it came
                flow.metadata[k] = v.replace(bkey, secrets.REDACTED.encode())
        for msg in (flow.request, flow.response):
            if msg is not None and msg.raw_content and bkey in msg.raw_content:
                msg.content = msg.get_content(strict=False).replace(bkey, secrets.REDACTED.encode())
        if flow.comment and key in flow.comment:
            flow.comment = flow.comment.replace(key, secrets.REDACTED)

    def redact(self, flow: http.HTTPFlow, sent: bool) -> None:
        secrets.redact_headers(flow.request.headers)
        resp = flow.response
        if resp is None or not secrets.has_secret(resp.headers):
            return
        if not sent and flow.live and not _translated(flow):
            self.unsent[flow.id] = resp.headers.copy()
        secrets.redact_headers(resp.headers)

    # -- hooks ---------------------------------------------------------------------------------

    def running(self) -> None:
        # Runs after Save in every hook: gives pass-through clients their real Set-Cookie back.
        restore = ctx.master.addons.get("m2crestoreaftersave")
        if restore is None:
            ctx.master.addons.add(RestoreAfterSave(self))
        else:  # the script was reloaded: the tail addon stays, it now serves this instance
            restore.recorder = self

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.live and flow.response is None:
            self.inflight[flow.id] = flow

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if not flow.live or not _translated(flow) or flow.response is None:
            return
        resp = flow.response
        flow.metadata[META + "upstream_status"] = resp.status_code
        flow.metadata[META + "upstream_content_type"] = resp.headers.get("content-type", "")
        kept = {k: resp.headers[k] for k in KEEP_HEADERS if k in resp.headers}
        if kept:
            flow.metadata[META + "upstream_headers"] = json.dumps(kept)

    def response(self, flow: http.HTTPFlow) -> None:
        self.inflight.pop(flow.id, None)
        if _translated(flow) and flow.metadata.get(META + "retries") and not flow.metadata.get(META + "error"):
            # A retry succeeded: the recorded body is the good answer, not the first attempt's error.
            body = flow.metadata.get(META + "upstream_body")
            if body is None:  # streamed: the content is the provider's answer (addon/mimo.py annotate)
                body = (flow.response.get_content(strict=False) or b"")[:256].decode("utf-8", "replace") if flow.response else ""
            flow.metadata[META + "upstream_status"] = 200
            flow.metadata[META + "upstream_content_type"] = (
                "text/event-stream" if body.lstrip().startswith(("data:", "event:", ":")) else "application/json")
        sent = bool(flow.response is not None and flow.response.stream)
        self.redact(flow, sent=sent or not flow.live)
        if _translated(flow):
            self.scrub(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.inflight.pop(flow.id, None)
        self.redact(flow, sent=True)
        if _translated(flow):
            self.scrub(flow)

    def done(self) -> None:
        if not reloading.shutting_down():
            return  # addon/mimo.py is being reloaded: these flows go on and are written when they end
        # Save's done() writes these right after us: make them safe and as complete as we can.
        for flow in list(self.inflight.values()):
            secrets.redact_headers(flow.request.headers)
            if flow.response is not None:
                secrets.redact_headers(flow.response.headers)
                tee = flow.response.stream
                if callable(getattr(tee, "upstream_bytes", None)) and tee.keep:  # the translator's Tee, keeping
                    flow.response.content = tee.upstream_bytes()
                    flow.metadata[META + "client_body"] = tee.client_bytes().decode("utf-8", "replace")
            if _translated(flow):
                flow.metadata.setdefault(META + "error", "still in flight when the proxy stopped")
                flow.comment = (flow.comment + " " if flow.comment else "") + "(cut off: proxy stopped mid-turn)"
                flow.marked = ":x:"
                self.scrub(flow)
        self.inflight.clear()


class RestoreAfterSave:
    """Appended to the end of the addon chain, i.e. after Save: undoes redactions on unsent responses."""

    name = "m2crestoreaftersave"

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def response(self, flow: http.HTTPFlow) -> None:
        headers = self.recorder.unsent.pop(flow.id, None)
        if headers is not None and flow.response is not None:
            flow.response.headers = headers
