"""The scripted scenarios: a reply spec (plain JSON-able dict, queued in-process or over HTTP) and its parsed `Reply`.

Knows nothing of HTTP or of a provider; `Profile.make_reply` checks a spec against the provider.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")


@dataclass
class ToolCallSpec:
    name: str
    arguments: str
    id: str | None = None


@dataclass
class Reply:
    """A normalised reply spec. Keys of the dict form:

    text, reasoning, force_reasoning, finish, tool_calls[{name, arguments(str|obj), id?}],
    interleaved, allow_undeclared_tools, text_chunks + chunk_text (bench), annotations,
    web_search_usage, usage{prompt_tokens, completion_tokens, total_tokens, cached_tokens
    (int|None|"missing"), reasoning_tokens} or None (no usage at all), reasoning_tokens,
    error{status, retry_after, code, message, param, type, body}, cut_after, cut_mode(fin|rst),
    mid_error{after, status, code, message, param, type, body}, header_delay, body_delay (between
    a stream's 200 headers and its first event: a prefill behind an open stream), chunk_delay,
    stall_after, split_utf8, done_count, id, created, repeat.
    """

    text: str | None = None
    text_chunks: int | None = None
    chunk_text: str = "x"
    reasoning: str | None = None
    force_reasoning: bool = False
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    interleaved: bool = False
    allow_undeclared_tools: bool = False
    finish: str | None = None
    annotations: list[dict] | None = None
    web_search_usage: dict | None = None
    usage: dict = field(default_factory=dict)
    no_usage: bool = False
    reasoning_tokens: int | None = None
    error: dict | None = None
    cut_after: int | None = None
    cut_mode: str = "fin"
    mid_error: dict | None = None
    header_delay: float = 0.0
    body_delay: float = 0.0
    chunk_delay: float = 0.0
    stall_after: int | None = None
    split_utf8: bool | None = None
    done_count: int | None = None
    id: str | None = None
    created: int | None = None
    repeat: int = 1

    KEYS = (
        "text", "text_chunks", "chunk_text", "reasoning", "force_reasoning", "tool_calls",
        "interleaved", "allow_undeclared_tools", "finish", "annotations", "web_search_usage",
        "usage", "reasoning_tokens", "error", "cut_after", "cut_mode", "mid_error", "header_delay",
        "body_delay", "chunk_delay", "stall_after", "split_utf8", "done_count", "id", "created", "repeat",
    )

    @classmethod
    def from_spec(cls, spec: Any, finish_reasons: Iterable[str] = FINISH_REASONS) -> "Reply":
        if not isinstance(spec, dict):
            raise ValueError(f"reply spec must be a dict, got {type(spec).__name__}")
        unknown = sorted(set(spec) - set(cls.KEYS))
        if unknown:
            raise ValueError(f"unknown reply spec key(s) {unknown}; known: {list(cls.KEYS)}")
        r = cls()

        def typed(key: str, types: tuple, *, allow_none: bool = False) -> Any:
            v = spec[key]
            if (v is None and allow_none) or (isinstance(v, types) and not (isinstance(v, bool) and bool not in types)):
                return v
            raise ValueError(f"reply spec {key!r} must be {'/'.join(t.__name__ for t in types)}, got {v!r}")

        for key in ("text", "reasoning", "chunk_text", "id"):
            if key in spec:
                setattr(r, key, typed(key, (str,), allow_none=True))
        for key in ("force_reasoning", "interleaved", "allow_undeclared_tools", "split_utf8"):
            if key in spec:
                setattr(r, key, typed(key, (bool,)))
        for key in ("text_chunks", "cut_after", "stall_after", "reasoning_tokens", "done_count", "created", "repeat"):
            if key in spec:
                v = typed(key, (int,), allow_none=True)
                if v is not None and v < 0 and key != "repeat":
                    raise ValueError(f"reply spec {key!r} must be >= 0")
                setattr(r, key, v)
        for key in ("header_delay", "body_delay", "chunk_delay"):
            if key in spec:
                v = typed(key, (int, float))
                if v < 0:
                    raise ValueError(f"reply spec {key!r} must be >= 0")
                setattr(r, key, float(v))
        if r.repeat is None or r.repeat == 0 or r.repeat < -1:
            raise ValueError("reply spec 'repeat' must be >= 1, or -1 for 'until reset'")
        if r.text_chunks is not None and r.text is not None:
            raise ValueError("reply spec: use either 'text' or 'text_chunks', not both")
        if r.text_chunks is not None and not r.chunk_text:
            raise ValueError("reply spec 'chunk_text' must be non-empty")
        if "finish" in spec:
            if spec["finish"] not in tuple(finish_reasons):
                raise ValueError(f"reply spec 'finish' must be one of {list(finish_reasons)}, got {spec['finish']!r}")
            r.finish = spec["finish"]
        if "cut_mode" in spec:
            if spec["cut_mode"] not in ("fin", "rst"):
                raise ValueError("reply spec 'cut_mode' must be 'fin' or 'rst'")
            r.cut_mode = spec["cut_mode"]
        if "tool_calls" in spec:
            calls = spec["tool_calls"]
            if not isinstance(calls, list):
                raise ValueError("reply spec 'tool_calls' must be a list")
            for c in calls:
                if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"]:
                    raise ValueError(f"each tool call needs a non-empty 'name': {c!r}")
                extra = set(c) - {"name", "arguments", "id"}
                if extra:
                    raise ValueError(f"unknown tool call key(s) {sorted(extra)}")
                args = c.get("arguments", "{}")
                if not isinstance(args, str):
                    args = json.dumps(args, ensure_ascii=False)
                cid = c.get("id")
                if cid is not None and not isinstance(cid, str):
                    raise ValueError("tool call 'id' must be a string")
                r.tool_calls.append(ToolCallSpec(c["name"], args, cid))
        if "annotations" in spec:
            anns = spec["annotations"]
            if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
                raise ValueError("reply spec 'annotations' must be a list of dicts")
            r.annotations = anns
        if "web_search_usage" in spec:
            r.web_search_usage = typed("web_search_usage", (dict,))
        if "usage" in spec:
            u = spec["usage"]
            if u is None:
                r.no_usage = True
            elif isinstance(u, dict):
                extra = set(u) - {"prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens"}
                if extra:
                    raise ValueError(f"unknown usage key(s) {sorted(extra)}")
                c = u.get("cached_tokens", 0)
                if not (c is None or c == "missing" or (isinstance(c, int) and not isinstance(c, bool))):
                    raise ValueError("usage.cached_tokens must be an int, None or 'missing'")
                r.usage = dict(u)
            else:
                raise ValueError("reply spec 'usage' must be a dict or None")
        for key in ("error", "mid_error"):
            if key in spec:
                e = typed(key, (dict,))
                extra = set(e) - {"status", "retry_after", "code", "message", "param", "type", "body", "after"}
                if extra:
                    raise ValueError(f"unknown {key} key(s) {sorted(extra)}")
                st = e.get("status", 500 if key == "mid_error" else None)
                if not isinstance(st, int) or isinstance(st, bool) or not 100 <= st <= 599:
                    raise ValueError(f"reply spec {key!r} needs an HTTP 'status' int")
                if "retry_after" in e and not isinstance(e["retry_after"], (int, float, str)):
                    raise ValueError("'retry_after' must be a number or string")
                if "after" in e and (not isinstance(e["after"], int) or e["after"] < 0):
                    raise ValueError("'after' must be an int >= 0")
                setattr(r, key, dict(e, status=st))
        return r

