"""The relay's HTTPS client trusts what mitmproxy trusts: certifi's bundle, or the CA named by
`ssl_verify_upstream_trusted_ca`, nothing checked with `ssl_insecure`; and it presents mitmproxy's
`client_certs` (a real mitmdump each)."""

from __future__ import annotations

import pytest

from addon import provider_http
from mimo2codex import proxyproc
from tests.support import faults as F
from tests.support import tlsca

pytestmark = pytest.mark.e2e

KEY = "sk-tls-test-key-41d0c7"
COMPLETION = F.completion("over tls")


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return tlsca.make(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def upstream(ca):
    up = F.RawUpstream(default=F.whole(200, "application/json", COMPLETION), tls=ca[1]).start()
    yield up
    up.stop()


def _ask(upstream, tmp_path, *sets: str) -> F.Answer:
    with proxyproc.start(upstream.base_url, key=KEY, sets=sets, log_path=tmp_path / "mitmdump.log") as px:
        answer = F.call(px.port, F.responses_body(stream=False))
        log = px.log()
    assert "Traceback" not in log and KEY not in log, log[-3000:]
    assert f"server connect 127.0.0.1:{upstream.port}" not in log  # the relay's TLS was tested, not mitmproxy's
    return answer


def test_a_provider_certificate_from_an_unknown_ca_is_refused(upstream, tmp_path):
    a = _ask(upstream, tmp_path)
    kind, status, message = F.check_answer(a)
    assert (kind, status) == ("http", "502") and "certificate verify failed" in message.lower(), message
    assert upstream.handshake_failures >= 1 and not upstream.requests  # nothing, the key least of all, was sent


def test_the_ca_mitmproxy_is_told_to_trust_is_trusted_by_the_relay(upstream, ca, tmp_path):
    a = _ask(upstream, tmp_path, f"ssl_verify_upstream_trusted_ca={ca[0]}")
    assert F.check_answer(a)[0] == "completed" and F.output_text(a) == "over tls"
    assert f"bearer {KEY}".encode() in upstream.requests[0].head.lower()


def test_ssl_insecure_accepts_any_certificate(upstream, tmp_path):
    a = _ask(upstream, tmp_path, "ssl_insecure=true")
    assert F.check_answer(a)[0] == "completed" and F.output_text(a) == "over tls"


def test_a_provider_asking_for_a_client_certificate_gets_the_one_client_certs_names(tmp_path):
    ca_path, server = tlsca.make(tmp_path, require_client=True)
    up = F.RawUpstream(default=F.whole(200, "application/json", COMPLETION), tls=server).start()
    try:
        trusted = f"ssl_verify_upstream_trusted_ca={ca_path}"
        kind, status, message = F.check_answer(_ask(up, tmp_path, trusted))
        assert (kind, status) == ("http", "502") and not up.requests, message
        for certs in (tmp_path / "client.pem", tmp_path):  # the file, or a folder of <host>.pem
            if certs == tmp_path:
                (tmp_path / "127.0.0.1.pem").write_bytes((tmp_path / "client.pem").read_bytes())
            a = _ask(up, tmp_path, trusted, f"client_certs={certs}")
            assert F.check_answer(a)[0] == "completed" and F.output_text(a) == "over tls"
    finally:
        up.stop()


def test_the_tls_context_is_made_once_per_option_set(ca):
    assert provider_http.tls_context(False, str(ca[0]), None) is provider_http.tls_context(False, str(ca[0]), None)
    assert provider_http.tls_context(True, None, None) is not provider_http.tls_context(False, None, None)
    with pytest.raises(OSError, match="cannot load trusted certificates"):
        provider_http.tls_context(False, "/nonexistent/ca.pem", None)
    with pytest.raises(OSError, match="cannot load TLS client certificate"):
        provider_http.tls_context(False, None, None, str(ca[0]))  # a certificate without its key


@pytest.fixture
def tls12(tmp_path):
    """A provider whose TLS stops at 1.2 and offers a single cipher suite."""
    ca_path, server = tlsca.make(tmp_path)
    server.maximum_version = provider_http.ssl.TLSVersion.TLSv1_2
    server.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    up = F.RawUpstream(default=F.whole(200, "application/json", COMPLETION), tls=server).start()
    yield up, f"ssl_verify_upstream_trusted_ca={ca_path}"
    up.stop()


@pytest.mark.parametrize("sets, works", [
    ((), True),
    (("tls_version_server_min=TLS1_3",), False),  # the provider cannot speak 1.3: no connection, as for mitmproxy
    (("ciphers_server=ECDHE-ECDSA-CHACHA20-POLY1305",), False),  # none of the provider's suites allowed
    (("ciphers_server=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305",), True),
])
def test_tls_version_and_cipher_options_bound_the_relays_handshake(tls12, tmp_path, sets, works):
    up, trusted = tls12
    a = _ask(up, tmp_path, trusted, *sets)
    if works:
        assert F.check_answer(a)[0] == "completed" and F.output_text(a) == "over tls"
    else:
        kind, status, message = F.check_answer(a)
        assert (kind, status) == ("http", "502") and not up.requests, message


def test_a_cipher_string_openssl_refuses_is_an_error_naming_the_option():
    with pytest.raises(OSError, match="ciphers_server=NO-SUCH-CIPHER"):
        provider_http.tls_context(False, None, None, None, "UNBOUNDED", "UNBOUNDED", "NO-SUCH-CIPHER")


def test_a_streamed_answer_over_tls_is_piped_and_its_connection_kept_for_the_next_turn(ca, tmp_path):
    """The relay hands the TLS connection over to its pipe after the first bytes (provider_body.Pipe
    on an SSL transport) and gives it back to its pool at the end: two turns, one handshake."""
    stream = [("send", F.head() + F.chunk(F.chat_chunk("he"))), ("sleep", 0.05), ("send", F.chunk(F.chat_chunk("l"))),
              ("sleep", 0.05), ("send", F.chunk(F.chat_chunk("lo")) + F.chunk(F.chat_chunk(None, "stop"))
                                 + F.chunk(b"data: [DONE]\n\n") + F.END)]
    up = F.RawUpstream(default=stream, tls=ca[1]).start()
    try:
        sets = (f"ssl_verify_upstream_trusted_ca={ca[0]}",)
        with proxyproc.start(up.base_url, key=KEY, sets=sets, log_path=tmp_path / "mitmdump.log") as px:
            answers = [F.call(px.port, F.responses_body()) for _ in range(2)]
            log = px.log()
        assert "Traceback" not in log and KEY not in log, log[-3000:]
        for a in answers:
            assert F.check_answer(a)[0] == "completed" and F.output_text(a) == "hello"
        assert len(up.requests) == 2 and up.accepted == 1, (len(up.requests), up.accepted)
    finally:
        up.stop()
