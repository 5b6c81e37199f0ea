"""Keeps the provider key from other processes of the same user.

- `load` (the earliest point a `mitmdump -s addon/mimo.py` runs our code; `launch.py` does it even
  before starting mitmproxy): the process becomes non-dumpable, so `/proc/<pid>/environ`,
  `/proc/<pid>/mem` and ptrace are refused to those processes (see mimo2codex/nodump.py).
- `running` (before mitmweb opens a browser; this addon comes first in the script): the key
  variables leave `os.environ`, so programs the proxy starts do not inherit them; the addons
  read them through `secrets.getenv`. This does not change what the kernel shows in
  `/proc/<pid>/environ` (the block the process started with): the first step covers that.
"""

from __future__ import annotations

from mitmproxy import ctx

from mimo2codex import nodump
from mimo2codex.translate import secrets


class KeyGuard:
    def load(self, loader) -> None:
        nodump.forbid()

    def running(self) -> None:
        translate = ctx.master.addons.get("mimotranslate")
        keys = [translate.key_env(), *(r.key_env for r in translate.routes.values())] if translate is not None else []
        secrets.hold_env(*keys, *secrets.LOCAL_SECRET_ENVS)
