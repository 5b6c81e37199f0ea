"""MiMo's request rules as rows (contract mimo-chat.md 2, 6, 7): what the strict fakes refuse.

A row reads: `field` of the object checked, `check` (a kind in kinds.py), its `arg`, the TEXTS key of
the 400 it answers (`error`) and what `null` means (`null`: "skip", "check" or "required", see Rule). An `arg` written "profile.<name>" or "model.<name>" is that attribute of the provider's
Profile or of the requested model's ModelInfo: the values in which providers differ live there, the
rows stay one table. `field` "*" means every key of the object (unknown-key rows); `a.b` is the key `b`
of the object under `a`.

Checks that span messages or need the whole request (tool-call pairing, reasoning pass-back, media per
model) cannot be a row: they stay named `check_*` methods of validation.Validation, whose `validate`
applies the tables and them in order.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Rule(NamedTuple):
    field: str
    check: str
    arg: Any = None
    error: str = "bad_type"
    null: str = "skip"          # "skip": `null` is as good as absent; "check": `null` is a value like any
                                # other; "required": absent or `null` are checked (and refused) like a value


# Top-level request fields. In every table the rows run in order and the first refusal answers.
PARAMS: tuple[Rule, ...] = (
    Rule("n",                     "allowed",        "profile.n_values",         "n",               "check"),
    Rule("max_completion_tokens", "tokens",         "model.max_output",         "too_large"),
    Rule("max_tokens",            "tokens",         "model.max_output",         "too_large"),
    Rule("max_tokens",            "agrees",         "max_completion_tokens",    "tokens_conflict"),
    Rule("reasoning_effort",      "allowed",        "model.efforts",            "effort",          "check"),
    Rule("thinking",              "tagged",         "profile.thinking_types",   "thinking_type",   "check"),
    Rule("thinking",              "known_keys",     "profile.thinking_keys",    "thinking_keys",   "check"),
    Rule("response_format",       "format",         "profile.response_formats", "response_format"),
    Rule("temperature",           "number",         "profile.ranges",           "range"),
    Rule("top_p",                 "number",         "profile.ranges",           "range"),
    Rule("frequency_penalty",     "number",         "profile.ranges",           "range"),
    Rule("presence_penalty",      "number",         "profile.ranges",           "range"),
    Rule("stop",                  "stop",           4),
    Rule("stream",                "type",           "boolean",                  "bad_type",        "check"),
    Rule("stream_options",        "stream_options", None,                       "stream_options"),
    Rule("parallel_tool_calls",   "type",           "boolean",                  "bad_type",        "check"),
    Rule("tool_choice",           "tool_choice",    "profile.tool_choices",     "tool_choice"),
)

# `tools[].function` of a `{"type": "function"}` tool.
FUNCTION_TOOL: tuple[Rule, ...] = (
    Rule("*",           "known_keys", "profile.tool_function_keys", "tool_key",  "check"),
    Rule("name",        "required",   None,                         "not_set",   "required"),
    Rule("name",        "pattern",    r"[a-zA-Z0-9_-]{1,64}",       "tool_name", "check"),
    Rule("strict",      "type",       "boolean",                    "strict",    "check"),
    Rule("parameters",  "type",       "object",                     "bad_type",  "check"),
    Rule("description", "type",       "string",                     "bad_type",  "check"),
)

# The builtin `{"type": "web_search", ...}` tool (MiMo's Web Search Plugin).
WEB_SEARCH_TOOL: tuple[Rule, ...] = (
    Rule("*",             "known_keys", ("type", "force_search", "max_keyword", "limit", "user_location"),
         "web_search_param", "check"),
    Rule("force_search",  "type",       "boolean",        "web_search_param", "check"),
    Rule("max_keyword",   "integer",    (1, 50),          "web_search_param", "check"),
    Rule("limit",         "integer",    (1, 50),          "web_search_param", "check"),
    Rule("user_location", "tagged",     ("approximate",), "web_search_param", "check"),
)

# One entry of an assistant message's `tool_calls` (contract 2 "assistant history").
TOOL_CALL: tuple[Rule, ...] = (
    Rule("id",                 "filled",  None,          "tool_call_unset",  "required"),
    Rule("type",               "allowed", ("function",), "tool_call_bad",    "check"),
    Rule("function.name",      "filled",  None,          "tool_call_unset",  "required"),
    Rule("function.arguments", "type",    "string",      "tool_call_string", "required"),
)

# Content parts of a message, by `type` (contract 2 "user content parts"; system, developer and
# assistant messages take `text` parts only, Validation.check_parts_of says which role takes which).
PARTS: dict[str, tuple[Rule, ...]] = {
    "text": (
        Rule("text",                       "type",        "string",                            "not_set",  "required"),
    ),
    "image_url": (
        Rule("image_url",                  "object_with", "url",                               "bad_path", "required"),
        Rule("image_url.url",              "prefix",      ("data:", "https://", "http://"),    "bad_url"),
    ),
    "input_audio": (
        Rule("input_audio",                "object_with", "data",                              "bad_path", "required"),
    ),
    "video_url": (
        Rule("video_url",                  "object_with", "url",                               "bad_path", "required"),
        Rule("video_url.fps",              "between",     (0.1, 10),                           "range"),
        Rule("video_url.media_resolution", "allowed",     ("default", "max"),                  "bad_type"),
        Rule("fps",                        "between",     (0.1, 10),                           "range"),
        Rule("media_resolution",           "allowed",     ("default", "max"),                  "bad_type"),
    ),
}
