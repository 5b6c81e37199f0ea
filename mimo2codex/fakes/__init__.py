"""Strict fake provider servers (standard library only) for tests, `launch.py demo` and bench/.

`chat_server` holds the generic Chat Completions fake and the `Profile` base class; each provider
module (`mimo`, ...) adds a profile. Import from the submodules, e.g.
`from mimo2codex.fakes.mimo import FakeMimo` (kept out of this file so `python -m
mimo2codex.fakes.mimo` does not import the module twice).
"""
