"""addon/mimo.py changes under a running proxy (an edit, a `git pull`): mitmproxy executes it again.

A real mitmdump runs a stand-in script that executes addon/mimo.py afresh each time mitmproxy
(re)loads it, exactly as mitmproxy does with the file itself: new addon instances, cached imports.
Rewriting the stand-in triggers mitmproxy's own reload without touching the repository.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from mimo2codex import proxyproc
from mimo2codex.fakes.mimo import FakeMimo
from tests.support import faults as F
from tests.support.faults import call, check_answer, responses_body

pytestmark = pytest.mark.e2e

TEXT = "Answered across a reload."
GOOD = "import runpy\n# generation {n}\naddons = runpy.run_path({path!r}, run_name='__mitmproxy_script__.mimo')['addons']\n"
BROKEN = "this is not python (generation {n})\n"


def rewrite(script, template: str, n: int) -> None:
    script.write_text(template.format(n=n, path=str(proxyproc.ADDON)))
    later = time.time() + 5 * n  # mitmproxy compares mtimes: make each version unmistakably newer
    os.utime(script, (later, later))


def wait_log(proxy, text: str, count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while proxy.log().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged {count}x: {proxy.log()[-2000:]}"
        time.sleep(0.1)


@pytest.fixture
def reloadable(tmp_path):
    script = tmp_path / "mimo_standin.py"
    rewrite(script, GOOD, 0)
    with FakeMimo(keys=("sk-test",)).start() as fake:
        proxy = proxyproc.start(fake.base_url, script=script, sets=("mimo_stats=true",), log_path=tmp_path / "px.log")
        try:
            yield fake, proxy, script
        finally:
            proxy.stop()


def test_a_request_in_flight_is_translated_by_the_reloaded_addon(reloadable):
    fake, proxy, script = reloadable
    fake.queue({"text": TEXT, "header_delay": 2.0}, {"text": "after"})
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("a", call(proxy.port, responses_body(), timeout=30)))
    t.start()
    deadline = time.monotonic() + 10
    while not fake.chat_requests:  # translated and sent; the provider holds its headers back
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rewrite(script, GOOD, 1)
    wait_log(proxy, "was reloaded", 1)
    t.join(30)
    a = result["a"]
    assert check_answer(a)[0] == "completed" and F.output_text(a) == TEXT  # not the provider's raw Chat SSE
    assert "1 request(s) in flight keep their translation" in proxy.log()
    a = call(proxy.port, responses_body())
    assert check_answer(a)[0] == "completed" and F.output_text(a) == "after"
    # The watcher survived the first reload: an async `running` hook once ended it, so no later edit was reloaded.
    rewrite(script, GOOD, 2)
    wait_log(proxy, "was reloaded", 2)
    s = F.wait_idle(proxy.port)
    assert (s["turns"], s["streams"], s["watched"], s["relayed"]) == (0, 0, 0, 0), s
    assert "Traceback" not in proxy.log()


def test_a_broken_edit_answers_503_until_fixed(reloadable):
    fake, proxy, script = reloadable
    rewrite(script, BROKEN, 1)
    wait_log(proxy, "error in script", 1)
    a = call(proxy.port, responses_body(), timeout=10)
    assert a.status == 503 and "addon/mimo.py failed to load" in a.json()["error"]["message"]
    assert not fake.chat_requests  # nothing went to the provider untranslated
    rewrite(script, GOOD, 2)
    wait_log(proxy, "was reloaded", 1)
    fake.queue({"text": "fixed"})
    a = call(proxy.port, responses_body())
    assert check_answer(a)[0] == "completed" and F.output_text(a) == "fixed"


def start_with(tmp_path, value: str) -> tuple[str, bool]:
    """A proxy started with one `--set`: its log, and whether it stopped by itself (it must not serve)."""
    log_path = tmp_path / "px.log"
    try:
        proxy = proxyproc.start("http://127.0.0.1:9/v1", sets=(value,), log_path=log_path)
    except RuntimeError:  # exited before it listened
        proxy = None
    stopped = True
    if proxy is not None:
        proxy.proc.wait(20)
        stopped = proxy.proc.returncode != 0
        proxy.stop()
    return log_path.read_text(errors="replace"), stopped


def test_a_bad_set_value_stops_the_start_with_its_reason(tmp_path):
    # mitmproxy parses `--set` values of script options in its background loader, where a bad one
    # used to leave the whole script unloaded in silence: a plain proxy to the provider, untranslated.
    log, stopped = start_with(tmp_path, "mimo_keepalive=abc")
    assert "--set mimo_keepalive: " in log and "abc" in log, log  # mitmproxy 11 and 12 word the reason differently
    assert stopped


@pytest.mark.parametrize("value, reason", [
    ("mimo_keepalive=-1", "mimo_keepalive must be >= 0"),
    ("mimo_routes=no-such-provider", "no such rules file or provider"),
])
def test_a_refused_set_value_stops_the_start_in_one_line(tmp_path, value, reason):
    # The value parses, but our configure refuses it: mitmproxy's script loader logged a traceback
    # ahead of the reason, as for a bug in the script.
    log, stopped = start_with(tmp_path, value)
    line = next((x for x in log.splitlines() if "error in script" in x), log)
    assert reason in line, log
    # Not "Traceback" at large: a probe connection at shutdown makes mitmproxy 12's asyncio log one of its own.
    assert "OptionsError" not in log and 'File "' not in log.split("error in script", 1)[0], log
    assert stopped


def test_a_misspelt_mimo_option_is_named_and_the_translator_still_loads(tmp_path):
    with FakeMimo(keys=("sk-test",)).start() as fake:
        with proxyproc.start(fake.base_url, sets=("mimo_keepalvie=2", "mimo_upstream_timeout=30"),
                             log_path=tmp_path / "px.log") as proxy:
            fake.queue({"text": "translated"})
            a = call(proxy.port, responses_body())
            assert check_answer(a)[0] == "completed" and F.output_text(a) == "translated"
            assert "--set mimo_keepalvie: no such mimo2codex option; ignored" in proxy.log()
            assert "mimo_upstream_timeout" not in proxy.log()  # a good value is applied quietly
