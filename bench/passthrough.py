"""The baseline: plain mitmdump reverse passthrough with streaming on (no translation).

    mitmdump -s bench/passthrough.py --mode reverse:http://127.0.0.1:<upstream>@127.0.0.1:<port>

Without `stream = True` mitmdump buffers the whole answer before sending a byte, which is not a
fair baseline for a streaming proxy; bench/run.py measures that variant too ("plain-buffered").
"""

from mitmproxy import http


def responseheaders(flow: http.HTTPFlow) -> None:
    flow.response.stream = True
