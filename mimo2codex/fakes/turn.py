"""What the fake knows about a model and about one accepted request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

@dataclass(frozen=True)
class ModelInfo:
    id: str
    context: int
    max_output: int
    modalities: frozenset = frozenset({"text"})
    thinking_default: bool = True
    efforts: tuple[str, ...] = ("low", "medium", "high")
    effort_off: str | None = None  # a reasoning_effort value that switches thinking off
    web_search: bool = True
    owned_by: str = "fake"


@dataclass
class Turn:
    """What validation learnt about one accepted request; the reply builder works from this."""

    body: dict
    model: str
    info: ModelInfo
    stream: bool
    include_usage: bool
    thinking: bool
    functions: tuple[str, ...]
    web_search: bool
    raw_size: int
    effective: dict = field(default_factory=dict)

    def last_user_text(self) -> str:
        for m in reversed(self.body.get("messages") or []):
            if isinstance(m, dict) and m.get("role") == "user":
                return content_text(m.get("content"))
        return ""

    def last_message(self) -> dict:
        msgs = self.body.get("messages") or [{}]
        return msgs[-1] if isinstance(msgs[-1], dict) else {}


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
                       and isinstance(p.get("text"), str))
    return ""

