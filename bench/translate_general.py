"""Diagnostic: bench/translate_only.py with the stream translator's plain-piece fast path switched
off, so every chunk takes the general way (JSON parse, dict dispatch). bench/run.py's "long"
section prints both rows: what the fast path buys, in place, in the same run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import http  # noqa: E402

from bench import translate_only  # noqa: E402


class Tee(translate_only.Tee):
    def __init__(self) -> None:
        super().__init__()
        self.sm._fast = False


def responseheaders(flow: http.HTTPFlow) -> None:
    flow.response.headers.pop("content-length", None)
    flow.response.stream = Tee()
