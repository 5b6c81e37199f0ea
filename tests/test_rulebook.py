"""The fakes' rulebook as a table: every row can run on every provider, and the engine reads it as written.

What each rule refuses, with MiMo's exact bodies, is test_fake_mimo.py's and test_providers.py's job;
here: a row naming a kind, a text or an attribute that does not exist fails before any request does.
"""

from __future__ import annotations

import pytest

from mimo2codex.fakes import kinds
from mimo2codex.fakes.mimo import MimoProfile
from mimo2codex.fakes.providers import PROFILES
from mimo2codex.fakes.rulebook import FUNCTION_TOOL, PARAMS, PARTS, TOOL_CALL, WEB_SEARCH_TOOL, Rule
from mimo2codex.fakes.wire import FakeError

TABLES = {"PARAMS": PARAMS, "FUNCTION_TOOL": FUNCTION_TOOL, "WEB_SEARCH_TOOL": WEB_SEARCH_TOOL,
          "TOOL_CALL": TOOL_CALL, **{f"PARTS[{t}]": rows for t, rows in PARTS.items()}}
ALL_PROFILES = {"mimo": MimoProfile, **PROFILES}


@pytest.mark.parametrize("table", TABLES)
def test_every_row_names_a_kind_a_text_and_a_null_rule(table):
    for rule in TABLES[table]:
        assert rule.check in kinds.KINDS, rule
        assert rule.error in MimoProfile.TEXTS, rule
        assert rule.null in ("skip", "check", "required"), rule


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_every_text_and_attribute_a_row_reads_exists_on_every_provider(name):
    profile = ALL_PROFILES[name]()
    info = next(iter(profile.models.values()))
    for table in TABLES.values():
        for rule in table:
            assert rule.error in profile.TEXTS, (name, rule)
            if isinstance(rule.arg, str) and rule.arg.startswith(("profile.", "model.")):
                owner = profile if rule.arg.startswith("profile.") else info
                assert hasattr(owner, rule.arg.partition(".")[2]), (name, rule)


def refused(rules, obj, profile=None):
    profile = profile or MimoProfile()
    try:
        kinds.apply(profile, rules, obj, next(iter(profile.models.values())))
    except FakeError as e:
        return e.body["error"]["param"]
    return None


def test_null_column_decides_whether_null_is_absent():
    skip = (Rule("temperature", "number", "profile.ranges", "range", "skip"),)
    check = (Rule("temperature", "number", "profile.ranges", "range", "check"),)
    assert refused(skip, {"temperature": None}) is None
    assert refused(check, {"temperature": None}) == "`temperature`: Input should be a valid number"
    assert refused(skip, {}) is None and refused(check, {}) is None   # absent is absent either way


def test_rows_run_in_order_and_the_first_refusal_wins():
    body = {"stream": "yes", "n": 2}
    assert refused(PARAMS, body) == "`n` is not supported"
    assert refused(tuple(reversed(PARAMS)), body) == "`stream`: Input should be a valid boolean"


def test_profile_and_model_arguments_are_read_from_the_provider():
    class Wide(MimoProfile):
        ranges = {**MimoProfile.ranges, "temperature": (0, 5)}

    row = (Rule("temperature", "number", "profile.ranges", "range"),)
    assert refused(row, {"temperature": 3}) == "`temperature` must be between 0 and 1.5"
    assert refused(row, {"temperature": 3}, Wide()) is None
    cap = MimoProfile().models["mimo-v2.5-pro"].max_output
    tokens = (Rule("max_tokens", "tokens", "model.max_output", "too_large"),)
    assert refused(tokens, {"max_tokens": cap}) is None
    assert refused(tokens, {"max_tokens": cap + 1}).startswith(f"max_tokens is too large: {cap + 1}.")


def test_dotted_fields_and_paths_name_the_nested_value():
    def said(part):
        try:
            MimoProfile().check_content(2, [part])
        except FakeError as e:
            return e.body["error"]["param"]
        return None

    assert said({"type": "image_url", "image_url": {"url": "ftp://x"}}) == \
        "`messages[2].content[0].image_url.url`: Input should be an http(s) URL or a data: URL"
    assert said({"type": "video_url", "video_url": {"url": "https://v", "fps": 11}}) == "`fps` must be between 0.1 and 10"
    assert said({"type": "text"}) == "`text` is not set"       # "required": absent is refused
    assert said({"type": "video_url", "video_url": {"url": "https://v", "fps": None}}) is None
