"""`python -m mimo2codex`: the installed command (what `service install` runs from an installed copy)."""

from mimo2codex.cli.commands import run

run()
