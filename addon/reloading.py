"""What keeps working when mitmproxy re-executes addon/mimo.py while the proxy runs.

mitmproxy watches every `-s` script and, when the file changes (an edit, a `git pull`), removes
the script's addons (their `done` hook runs), executes the file again and registers the new
instances. Modules the script imports (this one, `guard`, the `mimo2codex` package) are cached
and not executed again. So:

- per-flow state of the translator lives here, not on the MimoTranslate instance: a request
  translated before the reload is answered by the new instance with the turn and rules it
  started with (otherwise the provider's raw Chat SSE would reach the client);
- `done` hooks tell a reload from the end of the process with `shutting_down()`;
- `Untranslated` is added to the master once, outside the script: if a reload fails half-way
  (a syntax error in the edited file) there is no translator left, and instead of passing Codex's
  request through to the provider untranslated it answers with a clear 503 until the file is fixed.
- A reload is logged with what it does not reload: the imported modules keep their old code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.proxy import mode_specs

from mimo2codex.translate import errors

log = logging.getLogger("mimo2codex")

META = "m2c."


@dataclass
class InFlight:
    """The translator's per-flow state, keyed by flow id."""

    turns: dict[str, Any] = field(default_factory=dict)  # flow id -> Turn
    routes: dict[str, Any] = field(default_factory=dict)  # flow id -> Route it was translated with
    tees: dict[str, Any] = field(default_factory=dict)  # flow id -> Tee streaming its answer


STATE = InFlight()
_loads = 0


def shutting_down() -> bool:
    """True in the `done` hook of the process's end, False in the one a script reload runs."""
    master = ctx.master
    should_exit = getattr(master, "should_exit", None)
    return should_exit is None or should_exit.is_set()


def script_loaded() -> None:
    """Called each time addon/mimo.py is executed by mitmproxy; warns from the second time on."""
    global _loads
    _loads += 1
    if _loads > 1:
        log.warning("addon/mimo.py changed and was reloaded; %d request(s) in flight keep their translation. "
                    "Other changed files (mimo2codex/, addon/*.py) take effect only after a restart.",
                    len(STATE.turns))


def install_fallback() -> None:
    if ctx.master.addons.get(Untranslated.name) is None:
        ctx.master.addons.add(Untranslated())


class Untranslated:
    """Last in the addon chain: a reverse-mode request nobody answered or translated gets a 503."""

    name = "m2cuntranslated"

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or META + "chat_request" in flow.metadata:
            return
        if not isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode):
            return
        if ctx.master.addons.get("mimotranslate") is not None:
            return  # the translator is there and chose to let this through
        msg = ("mimo2codex's translator is not loaded: addon/mimo.py failed to load after a change "
               "(the proxy's log has the error). Fix the file (it is reloaded automatically) or restart.")
        flow.response = http.Response.make(503, errors.error_body(errors.server_error(msg, 503)),
                                           {"content-type": "application/json", "cache-control": "no-store"})
        flow.comment = "✗ translator not loaded"
        flow.marked = ":x:"
