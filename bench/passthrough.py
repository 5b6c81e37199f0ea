"""The baseline: plain mitmdump reverse passthrough with streaming on (no translation).

    mitmdump -s bench/passthrough.py --mode reverse:http://127.0.0.1:<upstream>@127.0.0.1:<port>

Without `stream = True` mitmdump buffers the whole answer before sending a byte, which is not a
fair baseline for a streaming proxy; bench/run.py measures that variant too ("plain-buffered").

It listens with mimo2codex's listen queue (addon/backlog.py), so that both face the same burst. With
mitmproxy's 100, the kernel dropped 58-74 of the 256 concurrent connects to plain; those clients
came back after a 1 s SYN retransmit, when the burst was over, and their TTFB (timed from the
request, once connected) looked fast, which made plain's p99 look better than it is.
"""

import sys
from pathlib import Path

from mitmproxy import http

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from addon.backlog import Backlog  # noqa: E402


def responseheaders(flow: http.HTTPFlow) -> None:
    flow.response.stream = True


addons = [Backlog()]
