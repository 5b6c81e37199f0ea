"""The command line (`launch.py`, the `mimo2codex` command).

Standard library only in this file: launch.py imports `mimo2codex.cli.bootstrap` before the venv exists.
"""
