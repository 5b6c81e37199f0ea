"""Strict fakes of the other Chat Completions providers a rules file in rules/ targets (stdlib only).

Each provider is a `Profile` (chat_server.py), in its own module named after its rules file
(deepseek.py, kimi.py, glm.py, qwen.py, minimax.py, openrouter.py, local.py; the common base in
strict.py; MiMo in mimo.py), that states the service as its docs describe it,
independently of rules/*.yaml: a test must not pass because the translator and the fake share a
mistake. Where a provider's behaviour is undocumented the fake is stricter than the real service
(marked "strict stand-in"): it rejects fields the provider does not document, so a translator that
leaks another provider's knob (`thinking` to Qwen, `enable_thinking` to DeepSeek, `max_tokens` to
MiniMax...) fails here instead of being silently ignored upstream. Sources are cited in the
matching rules file.

    from mimo2codex.fakes.providers import fake_server
    with fake_server("deepseek") as fake:   # FakeChatServer with the DeepSeek profile
        fake.queue({"text": "hi", "reasoning": "..."})

CLI: python -m mimo2codex.fakes.providers NAME [--port 0] [--any-key]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterable

from .chat_server import FakeChatServer, Profile, serve_until_signal
from .deepseek import DeepSeekProfile
from .glm import GlmProfile
from .kimi import KimiProfile
from .local import LocalProfile
from .minimax import MiniMaxProfile
from .openrouter import OpenRouterProfile
from .qwen import QwenProfile
from .strict import StrictProfile

# ----------------------------------------------------------------------------------------------

PROFILES: dict[str, type[StrictProfile]] = {
    "deepseek": DeepSeekProfile, "kimi": KimiProfile, "glm": GlmProfile, "qwen": QwenProfile,
    "minimax": MiniMaxProfile, "openrouter": OpenRouterProfile, "local": LocalProfile,
}


def profile(name: str, keys: Iterable[str] | None | object = ...) -> Profile:
    """The strict profile of provider `name` (keys: accepted API keys; None = any; default: its test key)."""
    if name == "mimo":
        from mimo2codex.fakes.mimo import MimoProfile

        return MimoProfile() if keys is ... else MimoProfile(keys)
    cls = PROFILES[name]
    return cls() if keys is ... else cls(keys)


def default_key(name: str) -> str | None:
    """An API key the default profile of `name` accepts (None: it accepts any)."""
    keys = profile(name).keys
    return keys[0] if keys else None


def fake_server(name: str, keys: Iterable[str] | None | object = ..., **kw: Any) -> FakeChatServer:
    return FakeChatServer(profile(name, keys), **kw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mimo2codex.fakes.providers", description="Strict fake provider servers")
    ap.add_argument("name", choices=sorted(PROFILES))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--key", action="append", help="accepted API key (repeatable; default: the profile's test key)")
    ap.add_argument("--any-key", action="store_true", help="accept any key")
    ap.add_argument("--default-reply", metavar="JSON", help="reply spec for unscripted requests")
    args = ap.parse_args(argv)
    keys: Any = None if args.any_key else (args.key or ...)
    fake = fake_server(args.name, keys, host=args.host, port=args.port,
                       default_reply=json.loads(args.default_reply) if args.default_reply else None)
    return serve_until_signal(fake)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
