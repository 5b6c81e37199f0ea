"""What mitmproxy and the addons built at start-up is taken out of the garbage collector's sight.

A full collection walks every tracked object: about 87,000 once mimo2codex is up (mitmproxy, its
addons, our modules and rules), ~30 ms a pass with the proxy stopped for all its flows. Under load
the flows' own objects trigger one every few turns (a 4 MB turn now and then answered 30-40 ms
late; bench/README "Garbage collection"). None of the start-up objects will ever be garbage, so after
one collection they go to the permanent generation (`gc.freeze`) and a full pass walks only the
objects made since: the flows in flight.

Only once per process: a reload of addon/mimo.py runs `running` again with flows in flight, and a
flow is a reference cycle (its response's stream -> the relay ticket -> the flow); frozen, it would
never be freed. So the first load's module stays frozen after a reload (a few hundred kB, once),
and so would a flow mitmproxy 12 took in the few loop turns between listening and `running`.

A request's translation runs with the collector paused (`paused`): the parsed body is a tree
without cycles that dies with the hook, and with nothing else in the collector's sight a full pass
came every few thousand of its containers, each walking all of them again (a 16 MB request: its
end-to-end time went from ~95 to 130-155 ms).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


class GcFreeze:
    def running(self) -> None:
        if gc.get_freeze_count():  # frozen by an earlier load of this script (or by whoever embeds us)
            return
        gc.collect()  # start-up's own garbage goes now, not frozen with the rest
        gc.freeze()


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No collection inside: for work that makes many objects and no garbage cycle."""
    if not gc.isenabled():  # whoever disabled it re-enables it
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
