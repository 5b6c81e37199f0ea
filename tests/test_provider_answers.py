"""What a provider's HTTP/1.1 server may send that the relay's client must read right (a real
mitmdump in front of a scripted upstream): interim 1xx heads, compressed bodies."""

from __future__ import annotations

import gzip
import zlib

import pytest

from mimo2codex import proxyproc
from tests.support import faults as F

pytestmark = pytest.mark.e2e

KEY = "sk-http-test-key-77a3e1"
COMPLETION = F.completion("plain words")
SSE = b"".join([F.chat_chunk("ab"), F.chat_chunk("cd"), F.chat_chunk(finish="stop"), b"data: [DONE]\n\n"])
INTERIM = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    up = F.RawUpstream().start()
    log = tmp_path_factory.mktemp("http") / "mitmdump.log"
    with proxyproc.start(up.base_url, key=KEY, sets=("mimo_stats=true",), log_path=log) as px:
        yield up, px
    up.stop()


@pytest.fixture
def ask(chain):
    up, px = chain
    up.reset()

    def ask(script: list, stream: bool) -> F.Answer:
        up.queue(script)
        return F.call(px.port, F.responses_body(stream=stream))

    yield ask
    assert up.pending == 0
    s = F.wait_idle(px.port)
    assert (s["turns"], s["streams"], s["relayed"]) == (0, 0, 0), s
    log = px.log()
    assert "Traceback" not in log and KEY not in log, log[-3000:]
    assert b"accept-encoding: identity" in up.requests[0].head.lower()  # the relay asks for no compression


def _gzip_chunks(data: bytes, parts: int = 3) -> bytes:
    z = gzip.compress(data)
    step = len(z) // parts + 1
    return b"".join(F.chunk(z[i:i + step]) for i in range(0, len(z), step)) + F.END


@pytest.mark.parametrize("stream", [True, False])
def test_interim_1xx_heads_are_skipped_for_the_real_answer(ask, stream):
    body = SSE if stream else COMPLETION
    head = F.head(200, "text/event-stream" if stream else "application/json", chunked=False, length=len(body))
    a = ask([("send", INTERIM + head + body)], stream)
    assert F.check_answer(a)[0] == "completed"
    assert F.output_text(a) == ("abcd" if stream else "plain words")


def test_a_gzip_stream_is_decoded_as_it_arrives(ask):
    a = ask([("send", F.head(extra={"content-encoding": "gzip"}) + _gzip_chunks(SSE))], True)
    assert F.check_answer(a)[0] == "completed" and F.output_text(a) == "abcd"


@pytest.mark.parametrize("encode, name", [(gzip.compress, "gzip"), (zlib.compress, "deflate")])
def test_a_compressed_whole_answer_is_decoded(ask, encode, name):
    z = encode(COMPLETION)
    a = ask([("send", F.head(200, "application/json", chunked=False, length=len(z), extra={"content-encoding": name}) + z)],
            False)
    assert F.check_answer(a)[0] == "completed" and F.output_text(a) == "plain words"


def test_a_compressed_provider_error_keeps_its_message(ask):
    z = gzip.compress(b'{"error":{"code":"400","message":"Param Incorrect: exceeds the maximum context length"}}')
    a = ask([("send", F.head(400, "application/json", chunked=False, length=len(z), extra={"content-encoding": "gzip"}) + z)],
            True)
    kind, code, message = F.check_answer(a)  # a stream turn gets context_length_exceeded as response.failed
    assert (kind, code) == ("failed", "context_length_exceeded") and "maximum context length" in message, message


def test_an_encoding_the_relay_cannot_decode_is_a_clear_502(ask):
    a = ask([("send", F.head(200, "application/json", chunked=False, length=4, extra={"content-encoding": "br"}) + b"\x0b\x02\x80{")],
            False)
    kind, status, message = F.check_answer(a)
    assert (kind, status) == ("http", "502") and "content-encoding 'br'" in message, message
