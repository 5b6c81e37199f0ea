"""The display items of a Responses stream: reasoning and message text, opened, streamed, closed.

A mixin of ResponsesStream (stream.py): builds `reasoning` and `message` output items from the text
the intake hands over. It may touch only the display-item state (`_open`, `_item_id`, `_parts`,
`_tmpl`, `_late_*`, `_annotations`) and emit through `_emit`; tool calls and endings are not its business.
"""

from __future__ import annotations

from typing import Any

from mimo2codex.translate import envelope, turn  # turn.new_id looked up per call: tests make ids deterministic
from mimo2codex.translate.sse import DeltaTemplate


def _as_text(value: Any) -> str:
    """Text of a content value that is not a plain string (a list of parts, say)."""
    if isinstance(value, list):
        return "".join(p.get("text") or "" if isinstance(p, dict) else str(p) for p in value)
    return "" if value is None else str(value)


class DisplayItems:
    """Mixin of ResponsesStream: reasoning and message items, streamed live or emitted whole."""

    def _reasoning(self, text: str) -> None:
        if not text:
            return
        if self._calls:
            self._late_reasoning.append(text)
            return
        if self._open != "reasoning":
            self._close_display("completed")
            self._open_reasoning()
        self._parts.append(text)
        if self._show:
            self._out.append(self._tmpl.render(self._next(), text))  # type: ignore[union-attr]

    def _text(self, text: str) -> None:
        if not text:
            return
        if self._calls:
            self._late_text.append(text)
            return
        if self._open != "message":
            self._close_display("completed")
            self._open_message()
        self._parts.append(text)
        self._out.append(self._tmpl.render(self._next(), text))  # type: ignore[union-attr]

    def _reserve(self) -> int:
        self._output.append(None)
        return len(self._output) - 1

    def _open_reasoning(self) -> None:
        iid, idx = turn.new_id("rs"), self._reserve()
        self._open, self._item_id, self._out_idx, self._parts = "reasoning", iid, idx, []
        self._emit("response.output_item.added", {"output_index": idx, "item": {"id": iid, "type": "reasoning", "summary": []}})
        if self._show:
            where = {"item_id": iid, "output_index": idx, "summary_index": 0}
            self._emit("response.reasoning_summary_part.added", {**where, "part": {"type": "summary_text", "text": ""}})
            self._tmpl = DeltaTemplate("response.reasoning_summary_text.delta", where)

    def _open_message(self) -> None:
        iid, idx = turn.new_id("msg"), self._reserve()
        self._open, self._item_id, self._out_idx, self._parts = "message", iid, idx, []
        self._emit(
            "response.output_item.added",
            {"output_index": idx, "item": {"id": iid, "type": "message", "status": "in_progress", "role": "assistant", "content": []}},
        )
        where = {"item_id": iid, "output_index": idx, "content_index": 0}
        self._emit("response.content_part.added", {**where, "part": {"type": "output_text", "text": "", "annotations": []}})
        self._tmpl = DeltaTemplate("response.output_text.delta", where, after={"logprobs": []})

    def _close_display(self, status: str) -> None:
        kind = self._open
        if kind is None:
            return
        self._open = None
        text = "".join(self._parts)
        self._parts = []
        iid, idx = self._item_id, self._out_idx
        item = self._display_item(kind, iid, text, status)
        if kind == "reasoning":
            where = {"item_id": iid, "output_index": idx, "summary_index": 0}
            if self._show:
                self._emit("response.reasoning_summary_text.done", {**where, "text": text})
                self._emit("response.reasoning_summary_part.done", {**where, "part": {"type": "summary_text", "text": text}})
        else:
            where = {"item_id": iid, "output_index": idx, "content_index": 0}
            part = item["content"][0]
            for n, ann in enumerate(part["annotations"]):
                self._emit("response.output_text.annotation.added", {**where, "annotation_index": n, "annotation": ann})
            self._emit("response.output_text.done", {**where, "text": text, "logprobs": []})
            self._emit("response.content_part.done", {**where, "part": part})
        self._output[idx] = item
        self._emit("response.output_item.done", {"output_index": idx, "item": item})

    def _display_item(self, kind: str, iid: str, text: str, status: str) -> dict:
        if kind == "reasoning":
            summary = [{"type": "summary_text", "text": text}] if self._show else []
            return {"id": iid, "type": "reasoning", "summary": summary, "encrypted_content": envelope.seal(text)}
        part = {"type": "output_text", "text": text, "annotations": self._take_annotations(len(text))}
        return {"id": iid, "type": "message", "status": status, "role": "assistant", "content": [part]}

    def _whole_item(self, kind: str, text: str, status: str) -> None:
        """A reasoning or message item emitted in one go (text that arrived after the tool calls)."""
        if self._abandoned:
            # A cut-off call was opened and left without its done event; opening another item
            # after it would interleave, so this one goes into the record only.
            idx = self._reserve()
            self._output[idx] = self._display_item(kind, turn.new_id("rs" if kind == "reasoning" else "msg"), text, status)
            return
        if kind == "reasoning":
            self._open_reasoning()
        else:
            self._open_message()
        self._parts = [text]
        if kind == "message" or self._show:
            self._out.append(self._tmpl.render(self._next(), text))  # type: ignore[union-attr]
        self._close_display(status)

    def _annotations_in(self, annotations: Any) -> None:
        if not isinstance(annotations, list):
            return
        for a in annotations:
            if isinstance(a, dict):
                url = a.get("url") or (a.get("url_citation") or {}).get("url")
                if url:
                    src = a.get("url_citation") if isinstance(a.get("url_citation"), dict) else a
                    self._annotations.append({"url": str(url), "title": str(src.get("title") or src.get("site_name") or url)})

    def _take_annotations(self, end: int) -> list[dict]:
        if not self._annotations:
            return []
        taken, self._annotations = self._annotations, []
        # MiMo gives sources without positions: cite them at the end of the text.
        return [{"type": "url_citation", "url": a["url"], "title": a["title"], "start_index": end, "end_index": end} for a in taken]
