"""`python -m mimo2codex.addon_path`: print the addon script for `mitmdump -s`, checkout or installed.

    mitmdump -s "$(python -m mimo2codex.addon_path)" --mode reverse:https://api.xiaomimimo.com@127.0.0.1:8788
"""

from mimo2codex.paths import ADDON

if __name__ == "__main__":
    print(ADDON)
