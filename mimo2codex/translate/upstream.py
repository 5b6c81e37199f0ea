"""Backoff for the proxy's own retries of a provider's 429/5xx answers (addon/relay.py)."""

from __future__ import annotations


def retry_delay(attempt: int, base: float, retry_after: float | None) -> float:
    """Backoff before retry `attempt` (1-based), honouring the upstream's Retry-After."""
    return retry_after if retry_after is not None else base * (2 ** (attempt - 1))
