"""`--set mimo_...=VALUE` given at start-up, before addon/mimo.py has defined its options.

mitmproxy keeps such values aside ("deferred") and parses them once the script's addons are
registered. A value that does not parse (`--set mimo_keepalive=abc`) then raises inside
mitmproxy's script loader, which runs as a background task: the error is never shown and the whole
script stays unloaded, so the proxy forwards Codex's requests to the provider untranslated. Last in
the script's addon list, this parses them first: a bad value is logged as an error (at start-up
mitmproxy's errorcheck then stops the proxy with that message; a later reload keeps the default),
and an unknown `mimo_*` name — a typo — gets a warning instead of silence.
"""

from __future__ import annotations

import logging

from mitmproxy import exceptions

log = logging.getLogger("mimo2codex")

PREFIX = "mimo_"


class DeferredOptions:
    def load(self, loader) -> None:
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
