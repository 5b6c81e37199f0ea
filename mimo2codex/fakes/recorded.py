"""What the fake saw: each request as recorded, for tests to inspect."""

from __future__ import annotations

import threading
import time
from typing import Any

class Headers(dict):
    """Lower-cased header dict with case-insensitive lookup."""

    def __getitem__(self, k: str) -> str:
        return super().__getitem__(k.lower())

    def get(self, k: str, default: Any = None) -> Any:
        return super().get(k.lower(), default)

    def __contains__(self, k: object) -> bool:
        return super().__contains__(k.lower() if isinstance(k, str) else k)


class RecordedRequest:
    """One request the fake received. Attribute or dict-style access (`rec.body` / `rec["body"]`)."""

    FIELDS = ("method", "path", "headers", "body", "status", "cancelled", "stream", "model", "thinking",
              "effective", "spec", "scripted", "error", "events_sent", "completed", "done", "started")

    def __init__(self, method: str, path: str, headers: Headers, raw: bytes, body: Any):
        self.method, self.path, self.headers, self.raw, self.body = method, path, headers, raw, body
        self.status: int | None = None
        self.cancelled = False          # client went away before the response was complete
        self.completed = False          # the full response was written
        self.stream = isinstance(body, dict) and body.get("stream") is True
        self.model: str | None = None
        self.thinking: bool | None = None
        self.effective: dict = {}
        self.spec: dict | None = None
        self.scripted = False
        self.error: Any = None          # error body sent, if any
        self.events_sent = 0
        self.started = time.time()
        self._done = threading.Event()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait_done(self, timeout: float = 5.0) -> bool:
        return self._done.wait(timeout)

    def __getitem__(self, k: str) -> Any:
        if k not in self.FIELDS and k != "raw":
            raise KeyError(k)
        return getattr(self, k)

    def get(self, k: str, default: Any = None) -> Any:
        try:
            return self[k]
        except KeyError:
            return default

    def to_dict(self) -> dict:
        return {k: (dict(self.headers) if k == "headers" else getattr(self, k)) for k in self.FIELDS}

    def __repr__(self) -> str:
        return f"<RecordedRequest {self.method} {self.path} status={self.status} cancelled={self.cancelled}>"

