#!/usr/bin/env python3
"""mimo2codex front door: `python3 launch.py` starts the proxy, `python3 launch.py test` runs the tests.

The first run of either creates a project-local virtualenv (.venv/<python version>) from
pyproject.toml and re-executes itself there, so nothing needs installing by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mimo2codex import bootstrap  # noqa: E402  (stdlib only: safe before the venv exists)


def main(argv: list[str]) -> int:
    if argv[:1] == ["test"]:
        bootstrap.reexec_in_venv(("test",))
        import pytest

        return pytest.main(["-p", "no:cacheprovider", *argv[1:]])
    bootstrap.reexec_in_venv()
    from mimo2codex import cli

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
