"""One proxy, several providers: the model prefix picks the provider (mimo_routes / --route)."""

from __future__ import annotations

import json
import urllib.request

import pytest

from mimo2codex import proxyproc
from mimo2codex.fakes import providers
from mimo2codex.fakes.mimo import FakeMimo

pytestmark = pytest.mark.e2e
MIMO_KEY = "sk-routing-mimo-key"


def post(proxy, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(proxy.url + "/v1/responses", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    ds_key = providers.default_key("deepseek")
    log = tmp_path_factory.mktemp("routing") / "proxy.log"
    with FakeMimo(keys=(MIMO_KEY,)).start() as mimo:
        deepseek = providers.fake_server("deepseek").start()
        try:
            env = {"DEEPSEEK_API_KEY": ds_key, "DEEPSEEK_BASE_URL": deepseek.base_url}
            with proxyproc.start(mimo.base_url, key=MIMO_KEY, sets=("mimo_routes=deepseek,kimi",), env=env, log_path=log) as proxy:
                yield proxy, mimo, deepseek, ds_key
        finally:
            deepseek.stop()


def test_prefix_selects_the_provider_with_its_own_key(chain):
    proxy, mimo, deepseek, ds_key = chain
    deepseek.queue({"text": "from deepseek"})
    status, resp = post(proxy, {"model": "deepseek/deepseek-v4-pro", "input": "hi"})
    assert status == 200 and resp["output"][-1]["content"][0]["text"] == "from deepseek"
    assert resp["model"] == "deepseek/deepseek-v4-pro"  # the client's own spelling comes back
    sent = deepseek.requests[-1]
    assert sent.body["model"] == "deepseek-v4-pro" and sent.headers["Authorization"] == f"Bearer {ds_key}"
    assert MIMO_KEY not in json.dumps(dict(sent.headers))
    mimo.queue({"text": "from mimo"})
    status, resp = post(proxy, {"model": "mimo-v2.5-pro", "input": "hi"})
    assert status == 200 and resp["output"][-1]["content"][0]["text"] == "from mimo"
    assert ds_key not in json.dumps(dict(mimo.requests[-1].headers))


def test_models_lists_routed_ids_and_missing_key_is_named(chain):
    proxy, *_ = chain
    ids = [m["id"] for m in json.loads(urllib.request.urlopen(proxy.url + "/v1/models", timeout=10).read())["data"]]
    assert "mimo-v2.6-pro" in ids and "deepseek/deepseek-v4-pro" in ids and any(i.startswith("kimi/") for i in ids)
    status, resp = post(proxy, {"model": "kimi/kimi-k3", "input": "hi"})  # no MOONSHOT_API_KEY in the proxy's env
    assert status == 401 and "MOONSHOT_API_KEY" in resp["error"]["message"]


def test_unknown_prefix_is_just_an_unknown_model(chain):
    proxy, *_ = chain
    status, resp = post(proxy, {"model": "nosuch/model", "input": "hi"})
    assert status == 400 and resp["error"]["code"] == "model_not_found"


def test_routed_keys_never_in_the_log(chain):
    proxy, _, _, ds_key = chain
    assert ds_key not in proxy.log() and MIMO_KEY not in proxy.log()
