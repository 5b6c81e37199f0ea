"""Provider error answers -> codes Codex acts on (codex-responses.md §4, mimo-chat.md §6)."""

from __future__ import annotations

import json
import re
import time
from email.utils import formatdate

import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from mimo2codex.translate import rules
from mimo2codex.translate.errors import MappedError, client_error, error_body, failed_stream, map_upstream
from mimo2codex.translate.sse import iter_events
from mimo2codex.translate.turn import Turn

RULES = rules.load()
CODEX_DELAY = re.compile(r"try again in (\d+(?:\.\d+)?)s")  # what Codex parses for its retry delay


def mimo(code: str, message: str, param: str | None = None, type_: str | None = "") -> bytes:
    err = {"code": code, "message": message}
    if param is not None:
        err["param"] = param
    if type_ is not None:
        err["type"] = type_
    return json.dumps({"error": err}).encode()


def test_auth_401():
    body = mimo("401", "Invalid API Key", "Please provide valid API Key", "invalid_key")
    m = map_upstream(RULES, 401, body, {})
    assert m.code == "invalid_prompt" and m.status == 401 and not m.retry
    assert m.detail == "Invalid API Key: Please provide valid API Key"
    assert "MIMO_API_KEY" in m.message and m.detail in m.message
    assert m.type == "authentication_error" and m.upstream_status == 401


def test_pass_back_400_uses_param_as_detail():
    param = "The reasoning_content in the thinking mode must be passed back to the API."
    m = map_upstream(RULES, 400, mimo("400", "Param Incorrect", param), None)
    assert m.code == "invalid_prompt" and m.status == 400 and m.detail == param
    assert m.message == f"MiMo 400: {param}"


def test_sse_framed_error_body_without_space():
    body = b'data:{"error":{"code":"400","message":"Param Incorrect","param":"`text` is not set","type":""}}\n\n'
    m = map_upstream(RULES, 400, body, {"content-type": "text/event-stream"})
    assert m.detail == "`text` is not set" and m.code == "invalid_prompt"


@pytest.mark.parametrize("param", [
    "This model's maximum context length is 1048576 tokens",
    "prompt is too long",
    "上下文长度过长",
])
def test_context_length(param):
    m = map_upstream(RULES, 400, mimo("400", "Param Incorrect", param), None)
    assert m.code == "context_length_exceeded" and m.status == 400


def test_detail_in_message_when_param_is_empty():
    body = mimo("400", "unexpected end of data: line 1 column 46 (char 45)", "", "BadRequest")
    m = map_upstream(RULES, 400, body, None)
    assert m.detail == "unexpected end of data: line 1 column 46 (char 45)"


def test_rate_limit_without_retry_after():
    m = map_upstream(RULES, 429, mimo("429", "Too many requests", type_="limitation"), {})
    assert m.code == "rate_limit_exceeded" and m.status == 429 and m.retry and m.retry_after is None
    assert CODEX_DELAY.search(m.message).group(1) == "1"
    assert "Too many requests" in m.message


@pytest.mark.parametrize("headers,seconds", [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after-ms": "250"}, 0.25),
])
def test_rate_limit_with_retry_after(headers, seconds):
    m = map_upstream(RULES, 429, mimo("429", "Too many requests"), headers)
    assert m.retry_after == seconds
    assert float(CODEX_DELAY.search(m.message).group(1)) == seconds


def test_retry_after_http_date():
    m = map_upstream(RULES, 429, b"", {"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    assert 25 <= m.retry_after <= 31
    assert map_upstream(RULES, 429, b"", {"Retry-After": "soon"}).retry_after is None


def test_quota_402():
    body = json.dumps({"type": "server_error", "message": "Upstream request failed: Insufficient account funds"}).encode()
    m = map_upstream(RULES, 402, body, None)
    assert m.code == "insufficient_quota" and m.status == 402
    assert "Insufficient account funds" in m.message


def test_server_errors():
    m = map_upstream(RULES, 500, b"<html><head><title>500 Internal Server Error</title></head><body>nginx</body></html>", None)
    assert m.code == "server_error" and m.status == 502 and m.retry and m.detail == "500 Internal Server Error"
    m = map_upstream(RULES, 503, b"", None)
    assert m.code == "server_is_overloaded" and m.status == 503 and "503" in m.detail
    m = map_upstream(RULES, 502, b"Bad gateway\n", None)
    assert m.code == "server_error" and m.detail == "Bad gateway"


@pytest.mark.parametrize("status,body", [
    (421, mimo("421", "Moderation Block", "The request was rejected because it was considered high risk", "content_filter")),
    (404, b'{"error":{"message":"No endpoints found that support image input","code":"404"}}'),
    (403, b""),
    (400, mimo("400", "Param Incorrect", "Not supported model mimo-x")),
])
def test_permanent_client_errors_are_invalid_prompt_and_http_400(status, body):
    m = map_upstream(RULES, status, body, None)
    assert m.code == "invalid_prompt" and m.status == 400 and not m.retry
    assert m.message.startswith(f"MiMo {status}: ")


def test_other_error_body_shapes():
    assert map_upstream(RULES, 400, b'{"error":"plain string"}', None).detail == "plain string"
    assert map_upstream(RULES, 400, b'{"detail":"fastapi style"}', None).detail == "fastapi style"
    assert map_upstream(RULES, 400, b'[{"error":{"message":"in a list"}}]', None).detail == "in a list"
    assert map_upstream(RULES, 400, b"\xff\xfe garbage", None).detail
    long = map_upstream(RULES, 400, mimo("400", "x" * 5000), None)
    assert len(long.detail) <= 1000


def test_secrets_are_redacted():
    body = mimo("401", "Invalid API Key sk-abcdef0123456789abcdef", "Authorization: Bearer tp-0123456789abcdefXYZ")
    m = map_upstream(RULES, 401, body, None)
    text = m.message + m.detail + error_body(m).decode()
    assert "abcdef0123456789" not in text and "0123456789abcdefXYZ" not in text


def test_never_raises_on_broken_rules():
    class Broken:
        name = "X"
        errors = property(lambda self: 1 / 0)

    m = map_upstream(Broken(), 500, b"", None)
    assert isinstance(m, MappedError) and m.code == "server_error"
    m = map_upstream(object(), 418, b"teapot", None)
    assert m.code == "invalid_prompt" and m.detail == "teapot"


def test_error_body_shape():
    m = map_upstream(RULES, 429, mimo("429", "Too many requests"), None)
    assert json.loads(error_body(m)) == {"error": {"message": m.message, "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}}


def test_client_error():
    m = client_error("model 'x' is not offered", param="model", code="model_not_found")
    assert (m.code, m.status, m.param, m.retry, m.type) == ("model_not_found", 400, "model", False, "invalid_request_error")
    assert json.loads(error_body(m))["error"] == {"message": "model 'x' is not offered", "type": "invalid_request_error",
                                                  "param": "model", "code": "model_not_found"}


def test_failed_stream():
    turn = Turn(model="mimo-v2.5-pro", echo={"prompt_cache_key": "k"})
    m = map_upstream(RULES, 400, mimo("400", "Param Incorrect", "prompt is too long"), None)
    out = failed_stream(turn, m)
    events = list(iter_events(out))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]
    assert [e["sequence_number"] for e in events] == [0, 1, 2]
    final = events[-1]["response"]
    assert final["id"] == turn.response_id and final["status"] == "failed" and final["prompt_cache_key"] == "k"
    assert final["error"] == {"code": "context_length_exceeded", "message": m.message}
    adapter = TypeAdapter(ResponseStreamEvent)
    for e in events:  # the SDK's literal lacks Codex's context_length_exceeded: check the rest of the shape
        if e["type"] == "response.failed":
            e = json.loads(json.dumps(e))
            e["response"]["error"]["code"] = "server_error"
        adapter.validate_python(e)
    assert out.startswith(b"event: response.created\ndata: ")
