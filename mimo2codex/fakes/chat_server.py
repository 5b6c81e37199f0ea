"""Generic strict fake of an OpenAI-compatible Chat Completions service (standard library only).

This module is the fake's public face: provider modules and tests import from here. The parts:

    wire.py        FakeError, SSE/JSON encoders, chunk splitting (shared by all parts)
    turn.py        ModelInfo and Turn: what the fake knows about a model and one accepted request
    reply.py       the scripted scenarios: a reply spec (plain JSON-able dict) and its parsed Reply
    rulebook.py    MiMo's request rules as rows (field, check, arg, error key, null): the contract as data
    kinds.py       the checks a row names and `apply`, the small engine that runs a table
    validation.py  what a strict provider refuses: the tables in order, plus the named `check_*` of the
                   rules spanning messages (pairing, pass-back); messages from TEXTS
    render.py      how the answer looks on the wire: chunks, usage, the SSE stream, the completion
    profile.py     Profile: one provider's decisions (models, auth, error bodies, TEXTS) over both
    recorded.py    the requests as the fake saw them, for tests
    server.py      FakeChatServer: threads, HTTP/1.1 keep-alive, routing, recording, the control API
    writing.py     writing the answer: chunked SSE and the failure knobs (delays, stalls, cuts)

A provider is a small `Profile` subclass (mimo.py, providers.py) overriding class attributes (the
values the rules read: ranges, allowed values, its unknown-model answer), `TEXTS` and a few
`check_*`/shape methods. A reply spec can be queued in-process
(`fake.queue(spec)`) or over HTTP (`POST /_fake/queue`).
"""

from .profile import Profile
from .recorded import Headers, RecordedRequest
from .reply import FINISH_REASONS, Reply, ToolCallSpec
from .server import FakeChatServer, serve_until_signal
from .turn import ModelInfo, Turn, content_text
from .wire import (RESPONSES_ONLY_FIELDS, FakeError, dumps, est_tokens, key_fingerprint, orjson_style_error,
                   split_arguments, split_cyclic, sse)

__all__ = ["FINISH_REASONS", "RESPONSES_ONLY_FIELDS", "FakeChatServer", "FakeError", "Headers", "ModelInfo", "Profile",
           "RecordedRequest", "Reply", "ToolCallSpec", "Turn", "content_text", "dumps", "est_tokens", "key_fingerprint",
           "orjson_style_error", "serve_until_signal", "split_arguments", "split_cyclic", "sse"]
