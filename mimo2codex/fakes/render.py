"""How a provider's answer looks on the wire: Chat chunks, usage, the SSE stream and the JSON completion.

A mixin of `Profile`: works from an accepted `Turn` and a `Reply`; no HTTP, no validation here.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from .reply import Reply, ToolCallSpec
from .turn import Turn
from .wire import est_tokens, split_arguments, split_cyclic, sse


class Rendering:
    def delta(self, content: Any = None, role: Any = None, tool_calls: Any = None, reasoning: Any = None) -> dict:
        return {"content": content, "role": role, "tool_calls": tool_calls, self.reasoning_field: reasoning}

    def chunk(self, rid: str, created: int, model: str, delta: dict, finish: str | None = None,
              final: bool = False) -> dict:
        c = {"id": rid, "choices": [{"delta": delta, "finish_reason": finish, "index": 0}],
             "created": created, "model": model, "object": "chat.completion.chunk"}
        if final:
            c["usage"] = None
        return c

    def tool_fragment(self, index: int, cid: str | None, name: str | None, args: str) -> dict:
        return {"index": index, "id": cid, "function": {"arguments": args, "name": name}, "type": "function"}

    def new_response_id(self) -> str:
        return uuid.uuid4().hex

    def new_call_id(self) -> str:
        return "call_" + uuid.uuid4().hex[:24]

    def annotation(self, a: dict) -> dict:
        return {"type": "url_citation", "url": a.get("url", "https://example.com/"), "title": a.get("title", ""),
                "summary": a.get("summary", ""), "site_name": a.get("site_name", ""),
                "publish_time": a.get("publish_time", ""), "logo_url": a.get("logo_url", ""), **a}

    def plan(self, turn: Turn, reply: Reply) -> dict:
        """Resolve a reply against a request: which parts the model really produces."""
        reasoning = reply.reasoning if (turn.thinking or reply.force_reasoning) else None
        calls = [ToolCallSpec(c.name, c.arguments, c.id or self.new_call_id()) for c in reply.tool_calls]
        finish = reply.finish or ("tool_calls" if calls else "stop")
        if finish == "length" and calls:
            # Truncated mid-call: the last call's arguments stop short of valid JSON.
            last = calls[-1]
            cut = max(1, len(last.arguments) * 2 // 3) if len(last.arguments) > 1 else 0
            last.arguments = last.arguments[:cut]
        # Citations only exist if the request really carried the web_search tool.
        anns = [self.annotation(a) for a in reply.annotations] if reply.annotations and turn.web_search else None
        text = reply.text if reply.text_chunks is None else reply.chunk_text * reply.text_chunks
        return {"reasoning": reasoning, "calls": calls, "finish": finish, "annotations": anns, "text": text}

    def usage(self, turn: Turn, reply: Reply, plan: dict) -> dict | None:
        if reply.no_usage:
            return None
        u = reply.usage
        reasoning_tokens = u.get("reasoning_tokens", reply.reasoning_tokens)
        if reasoning_tokens is None:
            reasoning_tokens = est_tokens(plan["reasoning"])
        completion = u.get("completion_tokens")
        if completion is None:
            completion = reasoning_tokens + est_tokens(plan["text"]) + sum(
                est_tokens(c.name) + est_tokens(c.arguments) for c in plan["calls"])
        prompt = u.get("prompt_tokens", max(1, turn.raw_size // 4))
        out: dict[str, Any] = {"completion_tokens": completion, "prompt_tokens": prompt,
                               "total_tokens": u.get("total_tokens", completion + prompt),
                               "completion_tokens_details": {"reasoning_tokens": reasoning_tokens}}
        cached = u.get("cached_tokens", 0)
        out["prompt_tokens_details"] = None if cached is None else {} if cached == "missing" else {"cached_tokens": cached}
        if plan["annotations"] is not None:
            out["web_search_usage"] = reply.web_search_usage or {"tool_usage": 1, "page_usage": len(plan["annotations"])}
        return out

    def stream_events(self, turn: Turn, reply: Reply) -> list[bytes]:
        """The full SSE body of a successful stream, one bytes item per event."""
        plan = self.plan(turn, reply)
        rid = reply.id or self.new_response_id()
        created = reply.created if reply.created is not None else int(time.time())
        model = turn.model
        events: list[bytes] = []

        first = self.delta(content="", role="assistant")
        if plan["annotations"] is not None:
            first["annotations"] = plan["annotations"]
        events.append(sse(self.chunk(rid, created, model, first)))
        # `created` moves on between phases, as in live captures.
        if plan["reasoning"]:
            created += 1
            for piece in split_cyclic(plan["reasoning"], self.reasoning_sizes):
                events.append(sse(self.chunk(rid, created, model, self.delta(reasoning=piece))))
        created += 1
        if reply.text_chunks is not None:
            # Bench mode: encode once, stamp many times.
            one = sse(self.chunk(rid, created, model, self.delta(content=reply.chunk_text)))
            events.extend([one] * reply.text_chunks)
        elif plan["text"]:
            for piece in split_cyclic(plan["text"], self.text_sizes):
                events.append(sse(self.chunk(rid, created, model, self.delta(content=piece))))
        frags: list[list[dict]] = []
        for idx, c in enumerate(plan["calls"]):
            seq = [self.tool_fragment(idx, c.id, c.name, "")]
            seq += [self.tool_fragment(idx, None, None, p) for p in split_arguments(c.arguments)]
            frags.append(seq)
        if reply.interleaved:
            order = [seq[k] for k in range(max((len(s) for s in frags), default=0)) for seq in frags if k < len(seq)]
        else:
            order = [f for seq in frags for f in seq]
        for f in order:
            events.append(sse(self.chunk(rid, created, model, self.delta(tool_calls=[f]))))
        finish_delta = self.delta(content="" if plan["text"] and not plan["calls"] else None)
        events.append(sse(self.chunk(rid, created, model, finish_delta, plan["finish"], final=True)))
        usage = self.usage(turn, reply, plan)
        if turn.include_usage and usage is not None:
            events.append(sse({"id": rid, "choices": [], "created": created, "model": model,
                               "object": "chat.completion.chunk", "usage": usage}))
        done = reply.done_count if reply.done_count is not None else self.done_count_default
        events.extend([b"data: [DONE]\n\n"] * done)
        return events

    def completion(self, turn: Turn, reply: Reply) -> dict:
        plan = self.plan(turn, reply)
        calls = [{"id": c.id, "function": {"arguments": c.arguments, "name": c.name}, "type": "function"}
                 for c in plan["calls"]]
        message: dict[str, Any] = {"content": plan["text"] or "", "role": "assistant",
                                   "tool_calls": calls or None, self.reasoning_field: plan["reasoning"]}
        if plan["annotations"] is not None:
            message["annotations"] = plan["annotations"]
        out = {"id": reply.id or self.new_response_id(),
               "choices": [{"finish_reason": plan["finish"], "index": 0, "message": message}],
               "created": reply.created if reply.created is not None else int(time.time()),
               "model": turn.model, "object": "chat.completion"}
        usage = self.usage(turn, reply, plan)
        if usage is not None:
            out["usage"] = usage
        return out

    # ---- runtime configuration (POST /_fake/config) -----------------------------------------
    configurable: tuple[str, ...] = ()
