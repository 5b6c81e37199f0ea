"""`--set mimo_...=VALUE` given at start-up, before addon/mimo.py has defined its options.

mitmproxy keeps such values aside ("deferred") and parses them once the script's addons are
registered. A value that does not parse (`--set mimo_keepalive=abc`) then raises inside
mitmproxy's script loader, which runs as a background task: the error is never shown and the whole
script stays unloaded, so the proxy forwards Codex's requests to the provider untranslated. Last in
the script's addon list, this parses them first: a bad value is logged as an error (at start-up
mitmproxy's errorcheck then stops the proxy with that message; a later reload keeps the default),
and an unknown `mimo_*` name — a typo — gets a warning instead of silence.

A value that parses but that an addon's `configure` refuses (`--set mimo_keepalive=-1`, an unknown
`mimo_rules`) is logged by mitmproxy's script loader with a Python traceback ahead of our message;
`OneLineOptionErrors` makes that one line: the refusal is the user's input, not a bug.
"""

from __future__ import annotations

import logging

from mitmproxy import exceptions

log = logging.getLogger("mimo2codex")

PREFIX = "mimo_"


SCRIPT_LOGGER = "mitmproxy.addons.script"


class OneLineOptionErrors(logging.Filter):
    """An option refused while the script loads: "error in script PATH: REASON", no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, exceptions.OptionsError):
            record.msg = f"{record.getMessage()}: {exc}"
            record.args = ()
            record.exc_info = record.exc_text = None
        return True


class DeferredOptions:
    def load(self, loader) -> None:
        script_log = logging.getLogger(SCRIPT_LOGGER)
        # By name: a reload defines the class again, and two filters would do the work twice.
        if not any(type(f).__name__ == OneLineOptionErrors.__name__ for f in script_log.filters):
            script_log.addFilter(OneLineOptionErrors())
        options = loader.master.options
        for name, value in list(options.deferred.items()):
            if name not in options:
                if name.startswith(PREFIX):
                    log.warning("--set %s: no such mimo2codex option; ignored", name)
                continue
            values = getattr(value, "val", None)
            if values is None:
                continue  # set through options.update with a typed value: mitmproxy applies it as is
            del options.deferred[name]
            try:
                options.set(*([f"{name}={v}" for v in values] or [name]))
            except exceptions.OptionsError as e:
                log.error("--set %s: %s (the option keeps its default, %r)", name, e, options.default(name))
