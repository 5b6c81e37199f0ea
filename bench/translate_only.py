"""Diagnostic baseline: plain mitmdump + only the stream translation (no request rewrite, no other
addon of mimo2codex). bench/run.py's "long" section uses it to split the added cost per chunk
into "the translator itself" and "everything else addon/mimo.py does"."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import http  # noqa: E402

from addon import mimo  # noqa: E402
from mimo2codex.translate import rules  # noqa: E402
from mimo2codex.translate.stream import ResponsesStream  # noqa: E402
from mimo2codex.translate.turn import Turn  # noqa: E402

RULES = rules.load("mimo")


class Tee(mimo.Tee):  # the same work per chunk as the proxy's, without the rest of addon/mimo.py
    def __init__(self) -> None:
        super().__init__(ResponsesStream(Turn(model="mimo-v2.6-pro"), RULES))


def responseheaders(flow: http.HTTPFlow) -> None:
    flow.response.headers.pop("content-length", None)
    flow.response.stream = Tee()
