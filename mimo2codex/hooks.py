"""Named hooks: the behaviour a rules file cannot say declaratively, referred to by name.

`hooks.request` entries run on the finished Chat request: fn(chat: dict, turn: Turn, rules) -> None.
`hooks.chunk` entries run on every parsed upstream chunk before the stream state machine:
fn(chunk: dict, state: dict) -> dict | None (None drops the chunk); `state` is per stream.
"""

from __future__ import annotations

from typing import Callable

REGISTRY: dict[str, dict[str, Callable]] = {"request": {}, "chunk": {}}


def hook(stage: str) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        REGISTRY[stage][fn.__name__] = fn
        return fn

    return register
