"""A provider at an IPv6 literal (`http://[::1]:PORT/v1`, a local model server): its Host header and
the relay's URL keep the brackets (mitmproxy's `Request.url` drops them)."""

from __future__ import annotations

import pytest
from mitmproxy.test import taddons

from addon.mimo import MimoTranslate
from mimo2codex import proxyproc
from tests.support import faults as F
from tests.test_addon import KEY, codex_body, responses_flow

COMPLETION = F.completion("from ::1")


@pytest.mark.parametrize("base, host", [("http://[::1]:8000/v1", "[::1]:8000"), ("http://[::1]/v1", "[::1]"),
                                        ("https://[2001:db8::7]:8443/v1", "[2001:db8::7]:8443")])
def test_the_translated_request_names_an_ipv6_provider_in_brackets(monkeypatch, base, host):
    monkeypatch.setenv("MIMO_API_KEY", KEY)
    addon = MimoTranslate()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, mimo_base_url=base)
        f = responses_flow(codex_body())
        addon.request(f)
    assert f.request.headers["host"] == host


@pytest.mark.e2e
def test_a_provider_on_ipv6_loopback_is_reached_through_the_relay(tmp_path):
    up = F.RawUpstream(default=F.whole(200, "application/json", COMPLETION), bind="::1").start()
    try:
        with proxyproc.start(up.base_url, key=KEY, sets=("mimo_stats=true",), log_path=tmp_path / "m.log") as px:
            a = F.call(px.port, F.responses_body(stream=False))
            idle = F.wait_idle(px.port)
            log = px.log()
    finally:
        up.stop()
    assert F.check_answer(a)[0] == "completed" and F.output_text(a) == "from ::1", (a.body[:300], log[-2000:])
    assert f"host: [::1]:{up.port}\r\n".encode() in up.requests[0].head.lower()
    assert idle["relayed"] == 0 and "Traceback" not in log and KEY not in log
