"""StrictProfile: the generic Profile made strict by class attributes, the base of every provider but MiMo.

Fields a provider does not document are refused (a strict stand-in), so a translator leaking another
provider's knob fails here instead of being ignored upstream.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from .chat_server import Profile, Turn, sse
from .kinds import choice_kind

TEXT_ONLY = frozenset({"text"})
TEXT_IMAGE = frozenset({"text", "image"})
SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


class StrictProfile(Profile):
    """A Profile whose differences from the generic one are class attributes."""

    accept_api_key_header = False       # Bearer only, unlike MiMo
    allowed_fields: frozenset[str] | None = None   # None: anything not Responses-only is accepted
    # The rulebook's values for an OpenAI-like provider (Profile's are MiMo's).
    n_values: tuple = (1,)
    thinking_keys: tuple[str, ...] | None = ("type",)
    ranges: dict[str, tuple[float, float]] = {"temperature": (0, 2), "top_p": (0, 1),
                                              "frequency_penalty": (-2, 2), "presence_penalty": (-2, 2)}
    tool_choices: tuple[str, ...] | None = ("auto", "none", "required", "function")
    thinking_tool_choices: tuple[str, ...] | None = None   # None: same as tool_choices
    tool_function_keys: tuple[str, ...] | None = ("name", "description", "parameters", "strict")
    passback_lists = True               # a non-empty list (reasoning_details) counts as passed back
    extra_texts: dict[str, str] = {}

    def __init__(self, keys: Iterable[str] | None = ("sk-test",)):
        super().__init__(keys)
        self.TEXTS = {**Profile.TEXTS, "unknown_field": "Unrecognized request argument supplied: {field}",
                      "thinking_tool_choice": "Thinking mode does not support this tool_choice", **self.extra_texts}

    # ---- validation --------------------------------------------------------------------------
    def validate(self, body: Any, raw_size: int) -> Turn:
        turn = super().validate(body, raw_size)
        self.after_validate(turn)
        return turn

    def after_validate(self, turn: Turn) -> None:
        tc = turn.body.get("tool_choice")
        if tc is not None and turn.thinking and self.thinking_tool_choices is not None:
            if choice_kind(tc) not in self.thinking_tool_choices:
                raise self.bad("thinking_tool_choice")

    def check_foreign_fields(self, body: dict) -> None:
        super().check_foreign_fields(body)
        if self.allowed_fields is not None:
            for f in body:
                if f not in self.allowed_fields:
                    raise self.bad("unknown_field", field=f)

    # ---- replies -----------------------------------------------------------------------------
    def rewrite(self, events: list[bytes], fn: Callable[[dict], list[dict]]) -> list[bytes]:
        """Apply fn to every JSON chunk of a finished event list (fn returns the chunks to send)."""
        out: list[bytes] = []
        for ev in events:
            if ev.startswith(b"data: {"):
                out.extend(sse(o) for o in fn(json.loads(ev[6:])))
            else:
                out.append(ev)
        return out
