"""Reload the provider rules when their file changes while the proxy runs.

Every `mimo_rules_watch` seconds the file `mimo_rules` names (and rules/defaults.yaml, which every
provider file is merged over) is compared with what was loaded. A changed file is validated first:
a broken edit is logged with its file:line:key and the running rules stay. A valid one is applied
the way `--set mimo_rules=...` or mitmweb's option editor would apply it: `ctx.options.update()`
runs every addon's `configure({"mimo_rules"})`, and MimoTranslate loads the file again.

Streams in flight are not disturbed: each ResponsesStream holds the Rules object its request was
translated with, and a reload only replaces the one new requests get.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

from mitmproxy import ctx, exceptions

from mimo2codex.translate import rules

log = logging.getLogger("mimo2codex")


def _fingerprint(paths: list[Path]) -> tuple:
    """Content digests (None for a missing file): an edit within the same mtime tick still counts."""
    out = []
    for p in paths:
        try:
            out.append((str(p), hashlib.sha256(p.read_bytes()).hexdigest()))
        except OSError:
            out.append((str(p), None))
    return tuple(out)


class RulesWatch:
    def __init__(self) -> None:
        self._seen: tuple | None = None
        self._task: asyncio.Task | None = None

    def load(self, loader) -> None:
        loader.add_option("mimo_rules_watch", float, 1.0,
                          "Seconds between checks of the rules file for edits, which are then applied without a "
                          "restart (0: never reload).")

    def configure(self, updated: set[str]) -> None:
        if "mimo_rules_watch" in updated and ctx.options.mimo_rules_watch < 0:
            raise exceptions.OptionsError("mimo_rules_watch must be >= 0")
        if "mimo_rules" in updated or self._seen is None:
            self._seen = _fingerprint(self.paths())  # what is loaded now, whoever loaded it

    def running(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @staticmethod
    def paths() -> list[Path]:
        return [rules.resolve_path(ctx.options.mimo_rules), rules.DEFAULTS]

    async def _loop(self) -> None:
        while True:
            interval = ctx.options.mimo_rules_watch
            await asyncio.sleep(interval if interval > 0 else 1.0)
            if interval > 0:
                try:
                    self.check()
                except Exception:  # never let the watcher die
                    log.exception("mimo2codex rules watcher")

    def check(self) -> bool:
        """Reload if the files changed since the last load; True when new rules are in force."""
        seen = _fingerprint(self.paths())
        if seen == self._seen:
            return False
        self._seen = seen
        spec = ctx.options.mimo_rules
        try:
            new = rules.load(spec)
        except rules.RulesError as e:
            log.error("rules changed on disk but are not valid; still using the loaded ones: %s", e)
            return False
        try:
            ctx.options.update(mimo_rules=spec)  # the same value: re-applied, every configure() sees it
        except exceptions.OptionsError as e:
            log.error("could not apply the changed rules; still using the loaded ones: %s", e)
            return False
        log.info("rules reloaded from %s (%s, %d models)", new.path, new.name, len(new.models))
        return True
