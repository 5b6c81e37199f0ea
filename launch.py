#!/usr/bin/env python3
"""mimo2codex front door: `python3 launch.py` starts the proxy, `python3 launch.py test` runs the tests
(on mitmproxy 11 and, when a Python 3.12+ is on the machine, on mitmproxy 12: see mimo2codex/cli/testlines.py).

The first run of either creates a project-local virtualenv (.venv/<python version>) from
pyproject.toml and re-executes itself there, so nothing needs installing by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mimo2codex.cli import bootstrap  # noqa: E402  (stdlib only: safe before the venv exists)


def main(argv: list[str]) -> int:
    if argv[:1] == ["test"]:
        bootstrap.reexec_in_venv(("test",))
        import pytest

        from mimo2codex.cli import testlines  # then the same tests on the other mitmproxy line, when a 3.12+ python is here

        return testlines.run(argv[1:], lambda args: pytest.main(["-p", "no:cacheprovider", *args]))
    bootstrap.reexec_in_venv()
    from mimo2codex.cli import commands as cli

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
