"""addon/gcfreeze.py: the objects start-up built leave the collector's sight once; a reload's
`running` (flows in flight) freezes nothing more; a request is translated with no collection."""

from __future__ import annotations

import gc

import pytest
from mitmproxy.test import taddons

from addon.gcfreeze import GcFreeze
from tests.test_addon import codex_body, responses_flow, tctx  # noqa: F401  (tctx: the fixture)


def tracked(obj: object) -> bool:
    """Walked by a full collection (frozen objects are not in gc.get_objects())."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture
def unfrozen():
    gc.unfreeze()  # as a fresh process: an earlier test may have run the hook
    yield
    gc.unfreeze()


def test_running_freezes_what_start_up_built(unfrozen) -> None:
    built = [{"start-up": True}]
    built.append(built)  # a cycle: only the collector could ever free it
    with taddons.context(GcFreeze()) as tctx:
        assert tracked(built)
        before = len(gc.get_objects())
        tctx.master.addons.get("gcfreeze").running()
        assert gc.get_freeze_count() >= before // 2
        assert not tracked(built)
        in_flight = [{"flow": True}]
        in_flight.append(in_flight)
        assert tracked(in_flight)
        assert len(gc.get_objects()) < before // 10  # what a full pass walks now


def test_a_reload_freezes_no_flow_in_flight(unfrozen) -> None:
    first, reloaded = GcFreeze(), GcFreeze()
    first.running()
    frozen = gc.get_freeze_count()
    flow = [{"flow": "in flight"}]
    flow.append(flow)  # a flow is a cycle (response stream -> relay ticket -> flow)
    reloaded.running()  # addon/mimo.py executed again, its `running` with the flow still open
    assert tracked(flow)
    assert gc.get_freeze_count() == frozen
    del flow[:]


def test_a_request_is_translated_with_no_collection(tctx) -> None:
    """600 input items (thousands of containers, over the collector's 700 allocations a pass):
    no pass runs while the translation builds and drops them, and the collector is on again after."""
    _, addon = tctx
    body = codex_body()
    body["input"] = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"turn {i}"}]}
                     for i in range(600)]
    passes: list[int] = []
    translate = addon.translate_request

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            passes.append(info["generation"])

    def watched(flow) -> None:  # counts the passes inside the translation only
        gc.callbacks.append(count)
        try:
            translate(flow)
        finally:
            gc.callbacks.remove(count)

    addon.translate_request = watched
    flow = responses_flow(body)
    addon.request(flow)
    assert flow.response is None and flow.request.host == "api.example.test"  # translated, not answered
    assert passes == []
    assert gc.isenabled()
    gc.disable()  # someone else's choice is kept
    try:
        addon.request(responses_flow(body))
        assert not gc.isenabled()
    finally:
        gc.enable()
