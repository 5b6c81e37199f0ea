"""Where the files that are not Python modules of this package live: the addon, the rules, the skill.

In a checkout they are the top-level `addon/`, `rules/`, `mimoskill/`; an installed wheel carries
the same folders inside the package as `mimo2codex/bundle/` (pyproject's package-dir mapping), so
no generic top-level name like `addon` or `rules` lands in site-packages. Everything else asks
here. Standard library only: launch.py may import it before the venv exists.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = PACKAGE.parent
IN_CHECKOUT = (_CHECKOUT / "addon" / "mimo.py").is_file() and (_CHECKOUT / "pyproject.toml").is_file()
HOME = _CHECKOUT if IN_CHECKOUT else PACKAGE / "bundle"
COMMAND = "python3 launch.py" if IN_CHECKOUT else "mimo2codex"  # how hints name the command line (an install has no launch.py)

ADDON = HOME / "addon" / "mimo.py"  # what `mitmdump -s` loads
RULES_DIR = HOME / "rules"
MIMOSKILL = HOME / "mimoskill"


def cache_dir() -> Path:
    """Writable state (mitmproxy's confdir): `.cache/` of a checkout, the user's cache dir otherwise."""
    if IN_CHECKOUT:
        return HOME / ".cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mimo2codex"


CONFDIR = cache_dir() / "mitmproxy"  # keeps a user's ~/.mitmproxy/config.yaml out of our behaviour


def addon_module(name: str) -> ModuleType:
    """`addon.<name>` (e.g. flowfile), imported as mitmdump imports it: with HOME on sys.path."""
    if str(HOME) not in sys.path:
        sys.path.insert(0, str(HOME))
    return importlib.import_module(f"addon.{name}")
