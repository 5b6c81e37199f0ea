"""Diagnostic baseline: plain mitmdump + only the stream translation (no request rewrite, no other
addon of mimo2codex). bench/run.py's "long" section uses it to split the added cost per chunk
into "the translator itself" and "everything else addon/mimo.py does"."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import http  # noqa: E402

from mimo2codex import rules  # noqa: E402
from mimo2codex.stream import ResponsesStream  # noqa: E402
from mimo2codex.turn import Turn  # noqa: E402

RULES = rules.load("mimo")


class Tee:  # the same work per chunk as addon/mimo.py's Tee
    def __init__(self) -> None:
        self.sm = ResponsesStream(Turn(model="mimo-v2.6-pro"), RULES)
        self.raw = bytearray()
        self.out = bytearray()

    def __call__(self, data: bytes) -> list[bytes]:
        if data:
            self.raw += data
            out = self.sm.feed(data)
        else:
            out = self.sm.finish()
        self.out += out
        return [out] if out else []


def responseheaders(flow: http.HTTPFlow) -> None:
    flow.response.headers.pop("content-length", None)
    flow.response.stream = Tee()
