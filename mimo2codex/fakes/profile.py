"""`Profile`: one provider's decisions - models, auth, error bodies, TEXTS - over the generic checks
(validation.py) and wire shapes (render.py). Provider modules (mimo.py, providers.py) subclass it.
"""

from __future__ import annotations

import http
from typing import Any, Iterable

from .render import Rendering
from .reply import FINISH_REASONS
from .turn import ModelInfo, Turn
from .validation import Validation
from .wire import RESPONSES_ONLY_FIELDS, FakeError, dumps, sse


class Profile(Validation, Rendering):
    """Generic strict OpenAI-compatible provider. Subclasses override the class attributes, TEXTS,
    `error_body` and whichever `check_*` / shape methods differ for their service."""

    name = "generic"
    base_path = "/v1"
    models: dict[str, ModelInfo] = {}
    retired: dict[str, str] = {}            # retired id -> suggested replacement
    reasoning_field = "reasoning_content"   # vLLM/OpenRouter: "reasoning"
    finish_reasons = FINISH_REASONS
    allowed_roles = ("system", "developer", "user", "assistant", "tool")
    message_keys = ("role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content")
    tool_types = ("function",)
    reject_fields = RESPONSES_ONLY_FIELDS
    passback = "all"                  # "all" | "tool_calls" | None: which assistant turns need reasoning back
    passback_field: str | None = None   # field checked by the pass-back rule (default: reasoning_field)
    passback_lists = False            # MiMo: only a non-blank string counts as passed back
    assistant_content_null_ok = False
    image_needs_text = True
    accept_api_key_header = True
    split_utf8_default = True         # split one HTTP chunk inside a multi-byte UTF-8 char per stream
    done_count_default = 1
    default_speaker = "fake"
    text_sizes = (3, 5, 2, 7, 4, 6)
    reasoning_sizes = (8, 13, 5, 11)
    # Values the rulebook rows read ("profile.<name>"); these are MiMo's (contract mimo-chat.md 2).
    n_values: tuple = ()                        # `n` refused whatever its value
    thinking_types: tuple[str, ...] = ("enabled", "disabled")
    thinking_keys: tuple[str, ...] | None = None      # None: keys beside `type` are not checked
    response_formats: tuple[str, ...] = ("text", "json_object")
    ranges: dict[str, tuple[float, float]] = {"temperature": (0, 1.5), "top_p": (0.01, 1.0),
                                              "frequency_penalty": (-2, 2), "presence_penalty": (-2, 2)}
    tool_choices: tuple[str, ...] | None = None       # None: any string or object (MiMo honours only auto)
    tool_function_keys: tuple[str, ...] | None = None  # None: keys of tools[].function are not checked
    unknown_model: dict | None = None   # the provider's own answer to an unknown model (validation.refusal)

    TEXTS = {
        "not_set": "`{field}` is not set",
        "foreign_field": "Unrecognized request argument supplied: {field}",
        "not_object": "Request body must be a JSON object",
        "invalid_json": "Invalid JSON body: {detail}",
        "unknown_model": "Not supported model {model}",
        "retired_model": "The model {model} has been retired, please migrate to {target}",
        "empty_messages": "messages must not be empty",
        "bad_type": "`{field}`: {expected}",
        "bad_path": "`{path}`: {expected}",
        "bad_url": "`{path}`: Input should be an http(s) URL or a data: URL",
        "bad_role": "Input tag '{role}' found using 'role' does not match any of the expected tags: {tags}",
        "unknown_message_key": "Unrecognized message field: messages[{index}].{key}",
        "content_null": "messages[{index}].content must not be null",
        "assistant_empty": "messages[{index}]: an assistant message needs content or tool_calls",
        "bad_part": "messages[{index}].content[{part}]: unsupported content part type {ptype!r}",
        "n": "`n` is not supported",
        "too_large": "{field} is too large: {value}. This model supports at most {cap} completion tokens, whereas you provided {value}.",
        "tokens_conflict": "max_tokens ({a}) and max_completion_tokens ({b}) must not both be set to different values",
        "effort": "Input should be {allowed}",
        "thinking_type": "Input should be {allowed}",
        "thinking_keys": "thinking.{key}: Extra inputs are not permitted",
        "tool_choice": "tool_choice {value!r} is not supported",
        "tool_key": "tools[].function.{key}: Extra inputs are not permitted",
        "thinking_conflict": "thinking is enabled but reasoning_effort '{effort}' disables it",
        "response_format": "response_format type {rtype!r} is not supported",
        "range": "`{field}` must be between {lo} and {hi}",
        "stream_options": "stream_options is only allowed when stream is true",
        "strict": "Input should be a valid boolean",
        "tool_name": "`name` must match ^[a-zA-Z0-9_-]{{1,64}}$: {name!r}",
        "dup_tools": "tools contains duplicate names: {name}",
        "tool_type": "Input tag '{ttype}' found using 'type' does not match any of the expected tags: {tags}",
        "web_search_model": "web search is not supported by model {model}",
        "web_search_param": "web_search.{key}: {detail}",
        "web_search_off": "web search tool found in the request body, but webSearchEnabled is false",
        "no_media": "No endpoints found that support image input",
        "text_not_set": "`text` is not set",
        "missing_tool_results": ("An assistant message with 'tool_calls' must be followed by tool messages responding "
                                 "to each 'tool_call_id'. The following tool_call_ids did not have response messages: {ids}"),
        "orphan_tool": "Messages with role 'tool' must be a response to a preceding message with 'tool_calls' (messages[{index}], tool_call_id {id!r})",
        "passback": "The reasoning_content in the thinking mode must be passed back to the API.",
        "bad_tool_call": "messages[{index}].tool_calls[{call}]: {detail}",
        "tool_call_unset": "messages[{index}].tool_calls[{call}]: `{path}` is not set",
        "tool_call_bad": "messages[{index}].tool_calls[{call}]: {expected}",
        "tool_call_string": "messages[{index}].tool_calls[{call}]: `{path}` must be a string",
    }

    def __init__(self, keys: Iterable[str] | None = ("sk-test",)):
        self.keys = None if keys is None else tuple(keys)

    # ---- errors ----------------------------------------------------------------------------
    def error_body(self, status: int, message: str = "", param: str = "", type_: str | None = "",
                   code: str | None = None) -> dict:
        err: dict[str, Any] = {"message": message, "type": type_ or "invalid_request_error",
                               "param": param or None, "code": code}
        return {"error": err}

    def bad(self, text_key: str, status: int = 400, **fmt: Any) -> FakeError:
        """A 400 validation failure in the provider's usual shape, text from TEXTS."""
        return FakeError(status, self.error_body(status, "Bad Request", self.TEXTS[text_key].format(**fmt)))

    def status_error_body(self, status: int) -> dict:
        """Body the provider sends for a bare HTTP failure of this status (queued `error` specs)."""
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        return self.error_body(status, phrase)

    def auth_error(self) -> FakeError:
        return FakeError(401, self.error_body(401, "Invalid API Key", type_="invalid_key", code="401"))

    def not_found(self) -> FakeError:
        return FakeError(404, self.status_error_body(404))

    def frame_error(self, body: Any, stream: bool) -> tuple[bytes, str]:
        data = body.encode() if isinstance(body, str) else dumps(body)
        if stream:
            # Seen from MiMo/9router: the pre-stream error of a stream request is SSE-framed, no space.
            return b"data:" + data + b"\n\n", "text/event-stream"
        return data, "application/json"

    def frame_stream_error(self, body: Any) -> bytes:
        return sse(body) if not isinstance(body, str) else b"data: " + body.encode() + b"\n\n"

    def reply_error(self, e: dict) -> FakeError:
        """Turn an `error` / `mid_error` spec into the provider's exact error."""
        status = e["status"]
        if "body" in e:
            body = e["body"]
        else:
            body = self.status_error_body(status)
            inner = body.get("error", body)
            for k in ("code", "message", "param", "type"):
                if k in e:
                    inner[k] = e[k]
        headers = {"Retry-After": str(e["retry_after"])} if e.get("retry_after") is not None else {}
        return FakeError(status, body, headers)

    # ---- auth ------------------------------------------------------------------------------
    def presented_key(self, headers: Any) -> str | None:
        auth = headers.get("Authorization")
        if auth is not None:
            scheme, _, value = auth.strip().partition(" ")
            return value.strip() if scheme.lower() == "bearer" and value.strip() else ""
        if self.accept_api_key_header:
            v = headers.get("api-key")
            return v.strip() if v is not None else None
        return None

    def key_accepted(self, key: str) -> bool:
        return self.keys is None or key in self.keys

    def is_test_key(self, key: str) -> bool:
        """Keys configured on the fake are test values and may be recorded verbatim."""
        return self.keys is not None and key in self.keys

    def authenticate(self, headers: Any) -> str:
        key = self.presented_key(headers)
        if not key or not self.key_accepted(key):
            raise self.auth_error()
        return key

    # ---- models ----------------------------------------------------------------------------
    def model_object(self, mid: str) -> dict:
        return {"id": mid, "object": "model", "owned_by": self.models[mid].owned_by}

    def models_list(self) -> dict:
        return {"object": "list", "data": [self.model_object(m) for m in sorted(self.models)]}


    def configure(self, **kw: Any) -> None:
        for k, v in kw.items():
            if k not in self.configurable:
                raise ValueError(f"unknown setting {k!r}; configurable: {list(self.configurable)}")
            setattr(self, k, v)
