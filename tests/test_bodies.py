"""Both sides of a streamed answer are kept only when something reads them (addon/bodies.py).

Unit: the decision with mitmproxy's own addons (View, Save, Dumper) present or not. End to end: a real
mitmdump holds no body bytes while it streams unless it writes a flow file, and the flow file says so
when the bodies were not kept.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from mitmproxy import exceptions
from mitmproxy.addons import dumper, save, view
from mitmproxy.test import taddons, tflow

from addon import bodies, flowfile, views
from addon.mimo import MimoTranslate
from mimo2codex import proxyproc
from mimo2codex.fakes.mimo import FakeMimo
from mimo2codex.sessions import replay, transcript
from tests import test_web_security as web_security
from tests.support import faults as F


@pytest.mark.parametrize("present, options, kept", [
    ((), {}, False),  # mitmdump without -w: nobody reads them
    ((view.View(),), {}, True),  # mitmweb, console
    ((save.Save(),), {"save_stream_file": "x.mitm"}, True),
    ((save.Save(),), {}, False),  # Save loaded, no file
    ((dumper.Dumper(),), {"flow_detail": 3}, True),
    ((dumper.Dumper(),), {"flow_detail": 2}, False),
    ((), {"mimo_keep_bodies": "always"}, True),
    ((view.View(),), {"mimo_keep_bodies": "never"}, False),
])
def test_decision(tmp_path, present, options, kept):
    translate = MimoTranslate()
    with taddons.context(translate, *present) as tctx:
        if "save_stream_file" in options:
            options = dict(options, save_stream_file=str(tmp_path / options["save_stream_file"]))
        tctx.options.update(**options)
        note = bodies.dropped()
        assert (note == "") is kept
        if not kept:
            assert note.startswith("not kept") and options.get("mimo_keep_bodies", "auto") in note


def test_unknown_mode_refused():
    translate = MimoTranslate()
    with taddons.context(translate) as tctx, pytest.raises(exceptions.OptionsError, match="one of auto, always, never"):
        tctx.options.update(mimo_keep_bodies="sometimes")


def test_views_say_the_bodies_were_not_kept():
    f = tflow.tflow(resp=True)
    f.response.content = None
    f.metadata.update({"m2c.model": "m", "m2c.bodies": "not kept (mimo_keep_bodies=never)"})
    assert "bodies: not kept (mimo_keep_bodies=never)" in views.render_response(b"", f)


TEXT = "x" * 150


def _stream_and_watch(port: int) -> tuple[F.Answer, list[int]]:
    """One slow stream; the proxy's in-flight body bytes sampled while it runs."""
    got: list = []
    t = threading.Thread(target=lambda: got.append(F.call(port, F.responses_body("hi"), timeout=30)))
    t.start()
    held = []
    while t.is_alive():
        s = F.stats(port)
        if s["streams"]:
            held.append(s["tee_bytes"])
        time.sleep(0.05)
    t.join()
    return got[0], held


@pytest.mark.e2e
@pytest.mark.parametrize("keep, save_file, kept", [("auto", False, False), ("auto", True, True), ("never", True, False)])
def test_real_mitmdump(tmp_path, keep, save_file, kept):
    fake = FakeMimo(keys=("sk-test",)).start()
    fake.queue({"text_chunks": len(TEXT), "chunk_text": "x", "chunk_delay": 0.01})
    path = tmp_path / "s.mitm"
    proxy = proxyproc.start(fake.base_url, sets=("mimo_stats=true", f"mimo_keep_bodies={keep}"),
                            args=("-w", str(path)) if save_file else (), log_path=tmp_path / "proxy.log")
    try:
        answer, held = _stream_and_watch(proxy.port)
        assert F.check_answer(answer)[0] == "completed" and F.output_text(answer) == TEXT
        assert len(held) >= 5, held  # sampled while streaming
        assert (max(held) > 0) is kept, held
    finally:
        proxy.stop()
        fake.stop()
    if not save_file:
        return
    (flow,) = [f for f in flowfile.read_flows(path) if "m2c.chat_request" in f.metadata]
    assert "in=" in flow.comment and "completed" in flow.comment  # the summary needs no body
    if kept:
        assert flow.response.content.startswith(b"data: ") and b"[DONE]" in flow.response.content
        assert "response.completed" in flow.metadata["m2c.client_body"] and "m2c.bodies" not in flow.metadata
    else:
        assert flow.response.content is None and "m2c.client_body" not in flow.metadata
        assert flow.metadata["m2c.bodies"] == "not kept (mimo_keep_bodies=never)"
        exchanges = flowfile.load(path)
        assert "bodies not kept (mimo_keep_bodies=never)" in transcript.render(exchanges)
        (played,) = [e for e in exchanges if e.translated]
        with replay.ReplayUpstream(exchanges) as server:  # says why instead of replaying an empty answer
            req = urllib.request.Request(server.base_url + "/chat/completions", data=b"{}", method="POST",
                                         headers={replay.HEADER: str(played.index)})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=10)
            assert err.value.code == 400 and b"recorded without the answer's bodies" in err.value.read()


@pytest.mark.e2e
def test_mitmweb_without_a_save_file_still_shows_both_sides(tmp_path):
    fake = FakeMimo(keys=(web_security.KEY,)).start()
    try:
        w = web_security.start(tmp_path, fake, "mitmweb -s", save=False)
        try:
            fake.queue({"text": "both sides"})
            assert F.check_answer(F.call(w.port, F.responses_body("hi")))[0] == "completed"
            status, body, _ = w.request("GET", "/flows")
            (flow,) = [f for f in json.loads(body) if f["request"]["path"].endswith("/chat/completions")]
            status, body, _ = w.request("GET", f"/flows/{flow['id']}/response/content/mimo2codex.json")
            assert status == 200 and b"Chat stream, " in body and b"Responses stream, " in body, body[:500]
            assert b"both sides" in body and b"bodies: " not in body
        finally:
            w.stop()
    finally:
        fake.stop()
