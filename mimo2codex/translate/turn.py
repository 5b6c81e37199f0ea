"""What one translated request must remember while its reply streams back.

The request side (`request.py`) builds a Turn; the stream side (`stream.py`) reads it to turn
provider names back into what the client offered (custom tools, namespaces, local_shell) and to
echo request fields into the Response object.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class Turn:
    model: str  # as the client named it; echoed back in every Response object
    upstream_model: str = ""
    stream: bool = True
    thinking: bool = True
    show_reasoning: bool = True  # False with --no-reasoning: reasoning is still sealed for pass-back
    custom_tools: frozenset[str] = frozenset()  # function names that stand for freeform (custom) tools
    custom_param: str = "input"  # the single string parameter a freeform tool is offered with
    namespaces: dict[str, tuple[str, str]] = field(default_factory=dict)  # flat name -> (namespace, name)
    local_shell: str | None = None  # function name that stands for the local_shell tool
    echo: dict = field(default_factory=dict)  # request fields repeated in the Response object
    response_id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    warnings: list[str] = field(default_factory=list)  # mapping decisions worth showing in mitmweb/logs
