"""Diagnostic prototype (not used by the proxy): translate-only with a fast path for the common
MiMo chunk, a plain content delta, recognised by one regex on the raw bytes instead of a JSON
parse and the dict dispatch. Anything else goes through the normal ResponsesStream.feed. Measures
what such a fast path in mimo2codex/stream.py would buy in place (bench/run.py long, row
"translate-fastpath")."""

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import http  # noqa: E402

from bench import translate_only  # noqa: E402
from mimo2codex.stream import ResponsesStream  # noqa: E402
from mimo2codex.turn import Turn  # noqa: E402

_DELTA = re.compile(
    rb'data: \{"id":"[^"\\]*","choices":\[\{"delta":\{"content":"((?:[^"\\]|\\.)*)","role":null,"tool_calls":null,'
    rb'"reasoning_content":null\},"finish_reason":null,"index":0\}\],"created":\d+,"model":"[^"\\]*",'
    rb'"object":"chat\.completion\.chunk"\}\n\n')


class FastStream(ResponsesStream):
    def feed(self, data: bytes) -> bytes:
        p = self._parser
        if (self._open == "message" and not self._calls and not self.done and not self._hooks
                and not p._buf and not p._data and not p._cr and p._event is None):
            m = _DELTA.fullmatch(data)
            if m is not None:
                s = m.group(1)
                text = s.decode() if b"\\" not in s else json.loads(b'"' + s + b'"')
                if not text:
                    return b""
                self._parts.append(text)
                return self._tmpl.render(self._next(), text)
        return super().feed(data)


class Tee(translate_only.Tee):
    def __init__(self) -> None:
        super().__init__()
        self.sm = FastStream(Turn(model="mimo-v2.6-pro"), translate_only.RULES)


def responseheaders(flow: http.HTTPFlow) -> None:
    flow.response.headers.pop("content-length", None)
    flow.response.stream = Tee()
