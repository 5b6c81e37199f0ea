"""`stream_large_bodies` would send a large Codex request on untranslated (mitmproxy streams it to the
upstream, headers first, before any hook has the body): refused, never passed on."""

from __future__ import annotations

import pytest
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons

from addon import guard
from mimo2codex import proxyproc
from tests.support import faults as F


def test_the_option_is_switched_off_with_an_error(caplog):
    g = guard.Guard()
    with taddons.context(proxyserver.Proxyserver(), g) as tctx:  # proxyserver declares the option
        tctx.configure(g, stream_large_bodies="1m")
        assert tctx.options.stream_large_bodies is None
    assert any(r.levelname == "ERROR" and "stream_large_bodies=1m cannot be used with mimo2codex" in r.getMessage()
               for r in caplog.records)


@pytest.mark.e2e
def test_given_at_start_it_stops_the_proxy_with_the_reason(tmp_path):
    up = F.RawUpstream().start()
    log = tmp_path / "mitmdump.log"
    try:
        try:
            px = proxyproc.start(up.base_url, sets=("stream_large_bodies=1m",), log_path=log)
        except RuntimeError:  # gone before it listened
            pass
        else:  # it listened for a moment: a large request meanwhile must still not pass untranslated
            try:
                with pytest.raises((AssertionError, OSError)):
                    F.call(px.port, F.responses_body("x" * 2_000_000, stream=False), timeout=10)
                assert px.proc.wait(20) == 1
            finally:
                px.stop()
    finally:
        up.stop()
    assert "stream_large_bodies=1m cannot be used with mimo2codex" in log.read_text()
    assert not up.requests
