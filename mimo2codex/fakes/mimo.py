"""Strict fake of Xiaomi MiMo's OpenAI-compatible Chat Completions API (standard library only).

The model table below is the fake's own statement of the service (contract mimo-chat.md 1.3),
deliberately NOT read from rules/mimo.yaml: a test must not pass because the translator and the
fake share the same mistake.

Usage:
    with FakeMimo().start() as fake:          # keys=("sk-test",), PAYG host family
        fake.queue({"text": "hello", "reasoning": "thinking..."})
        ... POST fake.base_url + "/chat/completions" ...
        fake.requests[-1].body

CLI (out-of-process use; control API under /_fake/):
    python -m mimo2codex.fakes.mimo --port 0 [--key K] [--token-plan] [--web-search]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterable

from .chat_server import FakeChatServer, FakeError, ModelInfo, Profile, serve_until_signal
from .kinds import apply
from .rulebook import WEB_SEARCH_TOOL

_MM = frozenset({"text", "image", "audio", "video"})
_V25_EFFORTS = ("low", "medium", "high")
_V26_EFFORTS = ("none", "low", "medium", "high")

MODELS = {
    m.id: m for m in (
        ModelInfo("mimo-v2.6-pro", 1_048_576, 131_072, _MM, True, _V26_EFFORTS, "none", True, "xiaomi"),
        ModelInfo("mimo-v2.6-flash", 1_048_576, 131_072, _MM, True, _V26_EFFORTS, "none", True, "xiaomi"),
        # Web search is not listed for UltraSpeed: the strict fake refuses it there.
        ModelInfo("mimo-v2.6-pro-ultraspeed", 1_048_576, 131_072, _MM, True, _V26_EFFORTS, "none", False, "xiaomi"),
        ModelInfo("mimo-v2.5-pro", 1_048_576, 131_072, frozenset({"text"}), True, _V25_EFFORTS, None, True, "xiaomi"),
        ModelInfo("mimo-v2.5", 1_048_576, 131_072, _MM, True, _V25_EFFORTS, None, True, "xiaomi"),
    )
}

# Retired ids answer 404 (body text UNCONFIRMED upstream; "migrate"-style per contract 6).
RETIRED = {
    "mimo-v2-pro": "mimo-v2.5-pro",
    "mimo-v2-omni": "mimo-v2.5",
    "mimo-v2-flash": "mimo-v2.6-flash",
    "mimo-v2.5-pro-ultraspeed": "mimo-v2.6-pro-ultraspeed",
}

HOST_FAMILIES = {"payg": "sk-", "token_plan": "tp-"}

_STATUS_BODIES: dict[int, dict[str, Any]] = {
    401: {"message": "Invalid API Key", "param": "Please provide valid API Key", "code": "401", "type": "invalid_key"},
    402: {"code": "402", "message": "Insufficient Balance", "param": "", "type": ""},
    404: {"code": "404", "message": "Not Found", "param": "", "type": ""},
    421: {"code": "421", "message": "Moderation Block",
          "param": "The request was rejected because it was considered high risk", "type": "content_filter"},
    429: {"code": "429", "message": "Too many requests", "type": "limitation"},
}


class MimoProfile(Profile):
    name = "mimo"
    models = MODELS
    retired = RETIRED
    reasoning_field = "reasoning_content"
    finish_reasons = ("stop", "length", "tool_calls", "content_filter", "repetition_truncation")
    tool_types = ("function", "web_search")
    passback = "all"            # stricter than the docs on purpose: plain turns too (9router)
    default_speaker = "MiMo (fake)"
    done_count_default = 2      # the live capture ends with two `data: [DONE]` lines
    configurable = ("web_search_enabled",)
    # Live capture: this one has no "type" key. Also covers case mismatches and the Claude-Code "[1m]"
    # suffix (upstream acceptance UNCONFIRMED -> strict stand-in).
    unknown_model = {"status": 400, "message": "Param Incorrect", "param": "Not supported model {model}", "type_": None}

    def __init__(self, keys: Iterable[str] | None = ("sk-test",), web_search_enabled: bool = False,
                 host_family: str = "payg", retired: dict[str, str] | None = None):
        if host_family not in HOST_FAMILIES:
            raise ValueError(f"host_family must be one of {list(HOST_FAMILIES)}")
        super().__init__(keys)
        self.host_family = host_family
        self.prefix = HOST_FAMILIES[host_family]
        # Keys are bound to their host family: the other family's prefix can never work here.
        # Explicitly configured keys with neither prefix (e.g. "demo-key") are allowed for demos.
        other = {v: f for f, v in HOST_FAMILIES.items()}
        for k in self.keys or ():
            for pfx, fam in other.items():
                if fam != host_family and k.startswith(pfx):
                    raise ValueError(f"a {pfx} key can never work on a {host_family} fake; pass host_family={fam!r}")
        # Token Plan: a live report saw `api-key:` refused there while Bearer worked -> Bearer only.
        self.accept_api_key_header = host_family == "payg"
        self.web_search_enabled = web_search_enabled
        if retired is not None:
            self.retired = dict(retired)

    # ---- exact MiMo error bodies -----------------------------------------------------------
    def error_body(self, status: int, message: str = "", param: str = "", type_: str | None = "",
                   code: str | None = None) -> dict:
        err: dict[str, Any] = {"code": code or str(status), "message": message, "param": param}
        if type_ is not None:
            err["type"] = type_
        return {"error": err}

    def bad(self, text_key: str, status: int = 400, **fmt: Any) -> FakeError:
        return FakeError(status, self.error_body(status, "Param Incorrect", self.TEXTS[text_key].format(**fmt)))

    def status_error_body(self, status: int) -> dict:
        if status in _STATUS_BODIES:
            return {"error": dict(_STATUS_BODIES[status])}
        if status == 400:
            return self.error_body(400, "Param Incorrect", "")
        return super().status_error_body(status)

    def auth_error(self) -> FakeError:
        return FakeError(401, self.status_error_body(401))

    # ---- auth: keys are bound to their host family -----------------------------------------
    def key_accepted(self, key: str) -> bool:
        if self.keys is None:   # "any key" mode still needs the family's prefix
            return key.startswith(self.prefix)
        return key in self.keys

    # ---- web search plugin -----------------------------------------------------------------
    def check_builtin_tool(self, t: dict, info: ModelInfo) -> None:
        if not self.web_search_enabled:
            raise self.bad("web_search_off")
        if not info.web_search:
            raise self.bad("web_search_model", model=info.id)
        apply(self, WEB_SEARCH_TOOL, t, info)


class FakeMimo(FakeChatServer):
    """The strict fake MiMo. `web_search_enabled` is the Console's Web Search Plugin switch."""

    def __init__(self, keys: Iterable[str] | None = ("sk-test",), web_search_enabled: bool = False, *,
                 host_family: str = "payg", retired: dict[str, str] | None = None,
                 host: str = "127.0.0.1", port: int = 0, default_reply: dict | None = None,
                 verbose: bool = False):
        profile = MimoProfile(keys, web_search_enabled, host_family, retired)
        super().__init__(profile, host=host, port=port, default_reply=default_reply, verbose=verbose)

    @property
    def web_search_enabled(self) -> bool:
        return self.profile.web_search_enabled

    @web_search_enabled.setter
    def web_search_enabled(self, value: bool) -> None:
        self.profile.web_search_enabled = bool(value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mimo2codex.fakes.mimo", description="Strict fake MiMo Chat Completions server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--key", action="append", help="accepted API key (repeatable; default sk-test / tp-test)")
    ap.add_argument("--any-key", action="store_true", help="accept any key of the host family")
    ap.add_argument("--token-plan", action="store_true", help="behave like a Token Plan host (tp- keys, Bearer only)")
    ap.add_argument("--web-search", action="store_true", help="Web Search Plugin enabled")
    ap.add_argument("--default-reply", metavar="JSON", help="reply spec for unscripted requests (e.g. bench mode)")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = ap.parse_args(argv)
    family = "token_plan" if args.token_plan else "payg"
    keys = None if args.any_key else (args.key or [HOST_FAMILIES[family] + "test"])
    try:
        fake = FakeMimo(keys, args.web_search, host_family=family, host=args.host, port=args.port,
                        default_reply=json.loads(args.default_reply) if args.default_reply else None,
                        verbose=args.verbose)
    except ValueError as e:
        ap.error(str(e))
    return serve_until_signal(fake)


if __name__ == "__main__":
    sys.exit(main())
