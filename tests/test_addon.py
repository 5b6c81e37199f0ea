"""The mitmproxy adapter (addon/mimo.py) with mitmproxy's own test helpers: taddons and tflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitmproxy import exceptions, http
from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons, tflow, tutils

from addon import webguard
from addon.mimo import MimoTranslate
from mimo2codex.translate import rules

KEY = "sk-addon-test-secret"
UPSTREAM = "https://api.example.test/v1"


def chunk(delta=None, finish=None, usage=False) -> bytes:
    if usage:
        body = {"id": "a" * 32, "object": "chat.completion.chunk", "created": 1, "model": "mimo-v2.5-pro", "choices": [],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                          "completion_tokens_details": {"reasoning_tokens": 2}, "prompt_tokens_details": {"cached_tokens": 4}}}
    else:
        d = {"content": None, "role": None, "tool_calls": None, "reasoning_content": None, **(delta or {})}
        body = {"id": "a" * 32, "object": "chat.completion.chunk", "created": 1, "model": "mimo-v2.5-pro",
                "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}
        if finish:
            body["usage"] = None
    return b"data: " + json.dumps(body).encode() + b"\n\n"


TEXT_STREAM = b"".join([chunk({"role": "assistant", "content": ""}), chunk({"reasoning_content": "hmm"}),
                        chunk({"content": "Hel"}), chunk({"content": "lo"}), chunk(finish="stop"), chunk(usage=True),
                        b"data: [DONE]\n\n"])


@pytest.fixture
def tctx(monkeypatch):
    monkeypatch.setenv("MIMO_API_KEY", KEY)
    addon = MimoTranslate()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, mimo_base_url=UPSTREAM)
        yield tctx, addon


def responses_flow(body: dict | bytes, path: str = "/v1/responses", method: str = "POST") -> http.HTTPFlow:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    f = tflow.tflow(req=tutils.treq(method=method.encode(), path=path.encode(), content=content,
                                    headers=http.Headers(host="127.0.0.1:8788", authorization="Bearer codex-dummy",
                                                         content_type="application/json")))
    f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("reverse:https://api.example.test")
    return f


def codex_body(stream=True) -> dict:
    return {"model": "mimo-v2.5-pro", "stream": stream, "input": [{"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "hi"}]}], "store": False, "prompt_cache_key": "x"}


def test_healthz_and_models_answered_locally(tctx):
    _, addon = tctx
    f = responses_flow(b"", path="/healthz", method="GET")
    addon.request(f)
    health = json.loads(f.response.content)
    assert health["ok"] is True and health["key"] == "set" and KEY not in f.response.text
    f = responses_flow(b"", path="/v1/models", method="GET")
    addon.request(f)
    ids = [m["id"] for m in json.loads(f.response.content)["data"]]
    assert "mimo-v2.5-pro" in ids and "mimo-v2.5-pro[1m]" in ids


def test_unknown_path_in_reverse_mode_is_a_json_404(tctx):
    _, addon = tctx
    f = responses_flow(b"", path="/v1/chat/completions", method="GET")
    addon.request(f)
    assert f.response.status_code == 404
    assert "POST /v1/responses" in json.loads(f.response.content)["error"]["message"]


def test_request_rewritten_for_upstream_without_client_credentials(tctx):
    _, addon = tctx
    f = responses_flow(codex_body())
    addon.request(f)
    assert f.response is None
    assert f.request.url == UPSTREAM + "/chat/completions"
    assert f.request.headers["authorization"] == f"Bearer {KEY}"
    assert "codex-dummy" not in str(f.request.headers)
    assert f.request.headers["host"] == "api.example.test"
    chat = json.loads(f.request.content)
    assert chat["model"] == "mimo-v2.5-pro" and "prompt_cache_key" not in chat and chat["stream"] is True
    assert json.loads(f.metadata["m2c.responses_request"])["prompt_cache_key"] == "x"


def test_a_large_request_goes_up_as_the_plain_dump_and_is_kept_once(tctx):
    from addon import flowfile
    from bench.run import codex_bytes, codex_request
    from mimo2codex.translate import request

    _, addon = tctx
    body = codex_request(600_000)
    f = responses_flow(codex_bytes(body))
    addon.request(f)
    assert f.response is None
    chat, _ = request.to_chat(body, rules.load("mimo"))
    assert f.request.content == json.dumps(chat, ensure_ascii=False, separators=(",", ":")).encode()
    assert f.metadata["m2c.chat_request"] is True  # the body is the Chat request: no second copy per flow
    assert flowfile.to_exchange(f, 1).chat_request == chat
    assert json.loads(f.metadata["m2c.responses_request"]) == body


@pytest.mark.parametrize("keep", ["always", "auto"])  # auto: taddons has no flow store, save file or dumper
def test_stream_translated_chunk_by_chunk_and_recorded_without_key(tctx, keep):
    tctx, addon = tctx
    tctx.configure(addon, mimo_keep_bodies=keep)
    f = responses_flow(codex_body())
    addon.request(f)
    f.response = tutils.tresp(headers=http.Headers(content_type="text/event-stream", content_length="99"), content=None)
    addon.responseheaders(f)
    assert "content-length" not in f.response.headers and f.response.headers["transfer-encoding"] == "chunked"
    assert KEY not in str(f.request.headers)  # redacted as soon as the request is on the wire
    out = b""
    for i in range(0, len(TEXT_STREAM), 7):  # arbitrary splits, as mitmproxy delivers them
        part = f.response.stream(TEXT_STREAM[i : i + 7])
        assert isinstance(part, list) and b"" not in part
        out += b"".join(part)
    out += b"".join(f.response.stream(b""))
    assert b"response.output_text.delta" in out and out.rstrip().endswith(b"}")
    assert b'"type":"response.completed"' in out.replace(b" ", b"")
    import asyncio

    asyncio.run(addon.response(f))  # not get_event_loop(): on 3.12 there is none once an earlier test closed its own
    if keep == "always":
        assert f.response.content == TEXT_STREAM and f.metadata["m2c.client_body"].encode() == out
        assert "m2c.bodies" not in f.metadata
    else:  # nothing kept, and the flow says so instead of showing an empty body
        assert f.response.content is None and "m2c.client_body" not in f.metadata
        assert f.metadata["m2c.bodies"].startswith("not kept: no flow store, no save file")
    assert "in=10" in f.comment and "out=5" in f.comment
    assert json.loads(f.metadata["m2c.response"])["output"][-1]["content"][0]["text"] == "Hello"


async def test_upstream_error_becomes_failed_stream_for_stream_clients(tctx):
    _, addon = tctx
    f = responses_flow(codex_body())
    addon.request(f)
    body = b'data:{"error":{"code":"400","message":"Param Incorrect","param":"`text` is not set","type":""}}\n\n'
    f.response = tutils.tresp(status_code=400, headers=http.Headers(content_type="text/event-stream"), content=body)
    addon.responseheaders(f)
    assert f.response.stream is False or f.response.stream is None
    await addon.response(f)
    assert f.response.status_code == 200 and f.response.headers["content-type"] == "text/event-stream"
    text = f.response.text
    assert "response.failed" in text and "`text` is not set" in text and "invalid_prompt" in text
    assert f.marked


async def test_upstream_error_is_json_for_non_stream_clients(tctx):
    _, addon = tctx
    f = responses_flow(codex_body(stream=False))
    addon.request(f)
    f.response = tutils.tresp(status_code=401, headers=http.Headers(content_type="application/json"),
                              content=b'{"error":{"message":"Invalid API Key","param":"Please provide valid API Key","code":"401","type":"invalid_key"}}')
    addon.responseheaders(f)
    await addon.response(f)
    err = json.loads(f.response.content)["error"]
    assert f.response.status_code == 401 and "MIMO_API_KEY" in err["message"] and KEY not in f.response.text


async def test_non_stream_client_gets_a_response_object(tctx):
    _, addon = tctx
    f = responses_flow(codex_body(stream=False))
    addon.request(f)
    f.response = tutils.tresp(headers=http.Headers(content_type="text/event-stream"), content=TEXT_STREAM)
    addon.responseheaders(f)
    await addon.response(f)
    resp = json.loads(f.response.content)
    assert resp["object"] == "response" and resp["status"] == "completed"
    assert resp["output"][-1]["content"][0]["text"] == "Hello" and resp["usage"]["total_tokens"] == 15


def test_bad_json_is_a_400_with_the_parser_message(tctx):
    _, addon = tctx
    f = responses_flow(b"{nope")
    addon.request(f)
    assert f.response.status_code == 400
    assert "not valid JSON" in json.loads(f.response.content)["error"]["message"]


def test_unknown_model_lists_known_ones(tctx):
    _, addon = tctx
    f = responses_flow({**codex_body(), "model": "gpt-5"})
    addon.request(f)
    err = json.loads(f.response.content)["error"]
    assert f.response.status_code == 400 and "mimo-v2.6-pro" in err["message"] and err["code"] == "model_not_found"


def test_missing_key_fails_clearly(tctx, monkeypatch):
    _, addon = tctx
    monkeypatch.delenv("MIMO_API_KEY")
    f = responses_flow(codex_body())
    addon.request(f)
    assert "response.failed" in f.response.text and "MIMO_API_KEY" in f.response.text


def test_bad_rules_option_is_refused(tctx, tmp_path):
    tctx_, addon = tctx
    bad = tmp_path / "bad.yaml"
    bad.write_text("provider: x\nmodels:\n  list: 5\n")
    with pytest.raises(exceptions.OptionsError, match="bad.yaml:3: models.list"):
        tctx_.configure(addon, mimo_rules=str(bad))


def test_without_valid_rules_every_request_is_a_clear_503(monkeypatch, tmp_path):
    # mitmdump refuses to start with broken rules, and a broken edit under a running proxy keeps the
    # old rules; but a script reload builds a new instance that meets the broken file with none.
    monkeypatch.setenv("LOCAL_API_KEY", KEY)
    path = tmp_path / "mine.yaml"
    path.write_text((rules.RULES_DIR / "local.yaml").read_text())
    addon = MimoTranslate()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, mimo_rules=str(path))
        path.write_text("provider: x\nmodels:\n  list: 5\n")
        reloaded = MimoTranslate()
        with pytest.raises(exceptions.OptionsError):
            reloaded.configure(set(tctx.options.keys()))
        assert reloaded.rules is None
        for f in (responses_flow(codex_body()), responses_flow(b"", "/healthz", "GET")):
            reloaded.request(f)
            err = json.loads(f.response.content)["error"]
            assert f.response.status_code == 503 and "mine.yaml:3: models.list" in err["message"], err


def test_script_loads_like_mitmdump_s(monkeypatch):
    monkeypatch.setenv("MIMO_API_KEY", KEY)
    with taddons.context() as tctx:
        script = tctx.script("addon/mimo.py")
        assert any(type(a).__name__ == "MimoTranslate" for a in script.addons)


def test_options_frozen_once_running(tctx):
    """Unit view of addon/webguard.py's freeze (tests/test_web_security.py attacks a real mitmweb)."""
    tctx_, addon = tctx
    webguard.FrozenOptions().running()
    for name, value in (("mimo_base_url", "http://127.0.0.1:1/v1"), ("mode", ["reverse:http://evil.test@127.0.0.1:9"]),
                        ("mimo_api_key_env", "HOME"), ("ssl_insecure", True), ("mimo_verbose", True)):
        with pytest.raises(exceptions.OptionsError, match=f"{name} cannot change"):
            tctx_.options.update(**{name: value})
    assert tctx_.options.mimo_base_url == UPSTREAM and tctx_.options.ssl_insecure is False  # rolled back
    tctx_.options.update(mimo_rules="mimo", showhost=True)  # same value / display option: fine
    assert tctx_.options.showhost is True


def test_local_answers_carry_a_reason_phrase(tctx):
    _, addon = tctx
    f = responses_flow(b"{nope")
    addon.request(f)
    assert (f.response.status_code, f.response.reason) == (400, "Bad Request")


def test_websocket_upgrade_is_refused_with_426_so_codex_uses_http_at_once(tctx):
    _, addon = tctx
    f = responses_flow(b"", method="GET")
    f.request.headers.update({"upgrade": "websocket", "connection": "Upgrade", "sec-websocket-version": "13",
                              "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="})
    addon.request(f)
    assert f.response.status_code == 426  # Codex 0.171 falls back on 426 only; 404/405/501 cost six reconnects
    err = json.loads(f.response.content)["error"]
    assert err["code"] == "websocket_unsupported" and "supports_websockets = false" in err["message"]


@pytest.mark.parametrize("relayed", [True, False])
def test_a_connection_closed_before_any_answer_names_the_hop_that_closed(monkeypatch, relayed):
    # The relay answers every provider failure itself (addon/relay.py), so a relayed flow whose
    # upstream connection closed without an answer lost the hop to the relay, not the provider.
    from addon import guard as guard_mod
    from mitmproxy import flow as mflow
    written: list[bytes] = []
    monkeypatch.setattr(guard_mod, "write_to_client", lambda f, data: written.append(data) or True)
    g = guard_mod.Guard()
    with taddons.context(g):
        f = tflow.tflow()
        f.request.host, f.request.port = "127.0.0.1", 40000
        f.metadata.update({"m2c.model": "mimo-v2.6-pro", "m2c.stream": False})
        if relayed:
            f.metadata["m2c.upstream_url"] = "https://api.example.test/v1/chat/completions"
        f.error = mflow.Error("server closed connection")
        g.error(f)
    message = json.loads(written[0].split(b"\r\n\r\n", 1)[1])["error"]["message"]
    if relayed:
        assert "relay closed its connection" in message and "api.example.test" in message, message
    else:
        assert message == "mimo2codex got no answer from http://127.0.0.1:40000: server closed connection"
    assert "server closed connection" in message


def test_remote_compaction_endpoint_is_a_clear_404(tctx):
    _, addon = tctx
    f = responses_flow(codex_body(), path="/v1/responses/compact")
    addon.request(f)
    assert f.response.status_code == 404
    err = json.loads(f.response.content)["error"]
    assert err["code"] == "unsupported_endpoint" and "inline" in err["message"]
def test_base_url_variable_reaches_the_plain_addon_for_the_main_provider(monkeypatch):
    # `mitmdump -s addon/mimo.py` with MIMO_BASE_URL set and no mimo_base_url: the same rule as routes and launch.py.
    monkeypatch.setenv("MIMO_API_KEY", KEY)
    monkeypatch.setenv("MIMO_BASE_URL", "http://127.0.0.1:9/plan/v1/")
    monkeypatch.setenv("DEEPSEEK_BASE_URL", "http://127.0.0.1:9/ds")
    addon = MimoTranslate()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, mimo_rules="mimo", mimo_routes="deepseek")
        assert addon.base_url() == "http://127.0.0.1:9/plan/v1"
        assert addon.routes["deepseek"].base_url == "http://127.0.0.1:9/ds"
        f = responses_flow(codex_body())
        addon.request(f)
        assert f.request.url == "http://127.0.0.1:9/plan/v1/chat/completions"
        tctx.configure(addon, mimo_base_url="http://127.0.0.1:8/v1")  # the explicit option still wins
        assert addon.base_url() == "http://127.0.0.1:8/v1"
        with pytest.raises(exceptions.OptionsError, match="mimo_base_url must start with http"):
            tctx.configure(addon, mimo_base_url="api.example.test/v1")
    monkeypatch.setenv("MIMO_BASE_URL", "api.xiaomimimo.com/v1")
    bad = MimoTranslate()
    with taddons.context(bad) as tctx, pytest.raises(exceptions.OptionsError, match=r"\$MIMO_BASE_URL must start"):
        tctx.configure(bad, mimo_rules="mimo")


def test_a_route_base_url_without_a_scheme_is_refused_at_start(monkeypatch):
    # Its requests could not be pointed at it: half-translated, they would reach the main provider instead.
    monkeypatch.setenv("DEEPSEEK_BASE_URL", "api.deepseek.com/v1")
    addon = MimoTranslate()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError, match=r"\$DEEPSEEK_BASE_URL must start"):
        tctx.configure(addon, mimo_rules="mimo", mimo_routes="deepseek")


@pytest.mark.parametrize("option, value, says", [("mimo_keepalive", -3, "mimo_keepalive must be >= 0"),
                                                 ("mimo_upstream_timeout", 0, "mimo_upstream_timeout must be > 0")])
def test_timing_options_out_of_range_are_refused(option, value, says):
    from addon import relay

    translate, rel = MimoTranslate(), relay.Relay()
    with taddons.context(translate, rel) as tctx:
        with pytest.raises(exceptions.OptionsError, match=says):
            tctx.configure(rel if option == "mimo_keepalive" else translate, **{option: value})
        tctx.configure(rel if option == "mimo_keepalive" else translate, **{option: 0 if option == "mimo_keepalive" else 1})


def test_the_translated_request_keeps_the_clients_connection_header_as_sent(tctx):
    # The provider's headers are built as bytes: a value that is not UTF-8 neither raises nor changes.
    _, addon = tctx
    f = responses_flow(codex_body())
    f.request.headers.fields += ((b"connection", b"keep-alive\xff"),)
    addon.request(f)
    assert f.response is None
    assert (b"connection", b"keep-alive\xff") in f.request.headers.fields
    assert f.request.url == UPSTREAM + "/chat/completions"
    assert f.request.headers["host"] == UPSTREAM.split("/")[2]
    assert f.request.headers["content-length"] == str(len(f.request.raw_content))


def test_the_addon_under_mitmdump_never_loads_tornado():
    """mitmweb's web stack (tornado, its handlers: ~5 MB) is imported by addon/webui.py, only under mitmweb."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, sys.argv[1]); import addon.mimo; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tornado' or m.startswith('mitmproxy.tools.web')))")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent.parent)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr[-2000:])
