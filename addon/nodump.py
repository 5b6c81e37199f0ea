"""Makes the proxy process non-dumpable as soon as the script loads (see mimo2codex/nodump.py).

The earliest point a `mitmdump -s addon/mimo.py` runs our code; `launch.py` does it before
starting mitmproxy as well. Other processes of the same user can then no longer read the
provider key from `/proc/<pid>/environ`, `/proc/<pid>/mem` or with ptrace.
"""

from __future__ import annotations

from mimo2codex import nodump


class NoDump:
    def load(self, loader) -> None:
        nodump.forbid()
