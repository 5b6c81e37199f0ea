"""mitmweb attacked the way another local process, or a web page, would (issue 16).

A real mitmweb runs the addon, started both ways a user does (`launch.py --web` and
`mitmweb -s addon/mimo.py`), on whichever mitmproxy line this interpreter has (11.0.2 on 3.11,
12 on 3.12+). Without the secret (mitmproxy 12's token; on 11 the token addon/webguard.py
prints) nothing can be read or changed; with it, the options that load code or move traffic stay
frozen, the marker script never runs, and the addon is still loaded afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mimo2codex import proxyproc
from mimo2codex.fakes.mimo import FakeMimo
from tests import test_script_reload as reload_test
from tests.support.faults import call, check_answer, responses_body

pytestmark = pytest.mark.e2e

KEY = "sk-web-sec-Zt4Lq8Wm"
XSRF = {"X-XSRFToken": "forged"}  # tornado accepts any cookie/header pair that match: no barrier for a script
XSRF_COOKIES = "_xsrf=forged; _mitmproxy_xsrf=forged"
TOKEN_IN_LOG = re.compile(r"\?token=([\w-]+)")


@dataclass
class Web:
    proc: subprocess.Popen
    port: int  # the proxy
    web: int  # mitmweb's UI
    log_path: Path
    flow_file: Path
    marker: Path  # created by the attacker's script if it ever runs
    token: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, body=None, *, auth: str | None = "bearer", headers: dict | None = None,
                cookie: str = "") -> tuple[int, bytes, http.client.HTTPResponse]:
        """One request to the UI. auth: "bearer", "query", None, or a wrong token."""
        hdrs = {**XSRF, **(headers or {})}
        cookies = [c for c in (XSRF_COOKIES, cookie) if c]
        hdrs["Cookie"] = "; ".join(cookies)
        if auth == "bearer":
            hdrs["Authorization"] = f"Bearer {self.token}"
        elif auth == "query":
            path += ("&" if "?" in path else "?") + f"token={self.token}"
        elif auth is not None:
            hdrs["Authorization"] = f"Bearer {auth}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.web, timeout=10)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, resp.read(), resp
        finally:
            conn.close()

    def option(self, name: str):
        status, body, _ = self.request("GET", "/options")
        assert status == 200, body
        return json.loads(body)[name]["value"]

    def stop(self) -> None:
        proxyproc.Proxy(self.proc, self.port).stop()


def _marker_script(tmp: Path) -> tuple[Path, Path]:
    marker = tmp / "PWNED"
    script = tmp / "attacker.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('ran inside the proxy')\n")
    return script, marker


def start(tmp: Path, fake: FakeMimo, how: str, script: Path = proxyproc.ADDON, env: dict | None = None,
          browser: bool = False, save: bool = True, sets: tuple[str, ...] = ()) -> Web:
    """mitmweb running the addon, started `how` a user does; its token read from the log."""
    port, web_port = proxyproc.free_port(), proxyproc.free_port()
    flow_file = tmp / "flows.mitm"
    quiet = ["--set", f"web_open_browser={'true' if browser else 'false'}", "--set", "termlog_verbosity=debug",
             *(["--set", f"save_stream_file={flow_file}"] if save else []), *(a for s in sets for a in ("--set", s))]
    if how.startswith("launch.py"):
        argv = [sys.executable, str(proxyproc.ROOT / "launch.py"), "--web", "--web-port", str(web_port), "--port", str(port),
                "--base-url", fake.base_url, "--api-key", KEY, *quiet]
    else:
        argv = [sys.executable, "-c", "from mitmproxy.tools.main import mitmweb; mitmweb()", "-s", str(script),
                "--mode", f"reverse:{fake.base_url.rsplit('/v1', 1)[0]}@127.0.0.1:{port}",
                "--set", "connection_strategy=lazy", "--set", f"confdir={proxyproc.CONFDIR}",
                "--set", f"mimo_base_url={fake.base_url}", "--set", f"web_port={web_port}", *quiet]
    log_path = tmp / "mitmweb.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env={**os.environ, "MIMO_API_KEY": KEY, **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=str(proxyproc.ROOT))
    w = Web(proc, port, web_port, log_path, flow_file, _marker_script(tmp)[1])
    try:
        proxyproc.wait_port(port, proc)
        proxyproc.wait_port(web_port, proc)
        if not browser and not (env or {}).get("MIMO2CODEX_WEB_PASSWORD"):
            deadline = time.monotonic() + 10
            while not (m := TOKEN_IN_LOG.search(w.log())) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert m, f"no token printed on start:\n{w.log()}"
            w.token = m.group(1)
    except BaseException:
        w.stop()
        raise
    return w


@pytest.fixture(scope="module", params=["launch.py --web", "mitmweb -s addon/mimo.py"])
def web(request, tmp_path_factory):
    fake = FakeMimo(keys=(KEY,)).start()
    try:
        w = start(tmp_path_factory.mktemp("web"), fake, request.param)
        try:
            fake.queue({"text": "a prompt worth stealing"})
            assert check_answer(call(w.port, responses_body("the user's secret prompt")))[0] == "completed"
            yield w
        finally:
            w.stop()
    finally:
        fake.stop()


def _attacker_script(w: Web) -> Path:
    return w.marker.parent / "attacker.py"


# -- attack 1: reading flows ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/flows", "/flows/dump", "/events", "/options", "/commands", "/state", "/"])
@pytest.mark.parametrize("auth", [None, "wrong-token"])
def test_nothing_readable_without_the_secret(web, path, auth):
    status, body, _ = web.request("GET", path, auth=auth)
    assert status == 403, (status, body[:300])
    assert b"secret prompt" not in body and b"chat/completions" not in body


def test_flows_readable_with_the_secret(web):
    status, body, _ = web.request("GET", "/flows")
    assert status == 200 and b"/v1/chat/completions" in body  # the same request as above, so the 403s mean something


def _login_cookie(web: Web) -> str:
    """`name=value` of the cookie the printed URL sets (mimo2codex's on 11, mitmproxy's on 12)."""
    status, _, resp = web.request("GET", "/", auth="query")
    cookies = [c for c in resp.headers.get_all("Set-Cookie") or [] if c.startswith(("mimo2codex-web-", "mitmproxy-auth-"))]
    assert status in (200, 302) and len(cookies) == 1, resp.headers
    assert "httponly" in cookies[0].lower() and "samesite=strict" in cookies[0].lower(), cookies
    return cookies[0].split(";", 1)[0]


def test_token_in_the_printed_url_becomes_a_strict_cookie(web):
    jar = _login_cookie(web)
    status, body, _ = web.request("GET", "/flows", auth=None, cookie=jar)
    assert status == 200 and b"/v1/chat/completions" in body


# -- attack 2: loading code / redirecting traffic through options and commands --------------------

def _options_put(web: Web, update: dict, auth="bearer") -> tuple[int, bytes]:
    status, body, _ = web.request("PUT", "/options", update, auth=auth)
    return status, body


@pytest.mark.parametrize("auth", [None, "bearer"])
def test_scripts_cannot_be_replaced(web, auth):
    script = _attacker_script(web)
    before = web.option("scripts")
    status, body = _options_put(web, {"scripts": [str(script)]}, auth=auth)
    assert status in (400, 403), body
    if auth:
        assert b"scripts cannot change" in body, body
    time.sleep(0.3)
    assert not web.marker.exists(), "the attacker's script ran inside the proxy"
    assert web.option("scripts") == before and "Loading script " + str(script) not in web.log()
    # Our addon is still loaded: its guard still refuses the next attempt.
    status, body = _options_put(web, {"mimo_base_url": "http://127.0.0.1:9/v1"})
    assert status == 400 and b"mimo_base_url cannot change" in body, body


@pytest.mark.parametrize("update", [
    {"mode": ["reverse:http://127.0.0.1:9@127.0.0.1:1"]}, {"mimo_base_url": "http://127.0.0.1:9/v1"},
    {"mimo_rules": "deepseek"}, {"mimo_api_key_env": "HOME"}, {"mimo_access_token": "attacker"},
    {"map_remote": ["|.*|http://127.0.0.1:9"]}, {"modify_headers": ["|~q|Authorization|x"]},
    {"upstream_cert": False}, {"ssl_insecure": True}, {"confdir": "/tmp"}, {"proxy_debug": True},
    {"save_stream_file": "/tmp/m2c-stolen.mitm"}, {"web_password": "mine"},
])
def test_frozen_options_refused_even_with_the_secret(web, update):
    (name, value), = update.items()
    before = web.option(name)
    status, body = _options_put(web, update)
    assert status == 400 and f"{name} cannot change".encode() in body, body
    assert web.option(name) == before


def test_display_options_still_change(web):
    """The freeze is not a blanket refusal: intercepting and filtering keep working."""
    status, body = _options_put(web, {"view_filter": "~u responses"})
    assert status == 200, body
    assert web.option("view_filter") == "~u responses"
    _options_put(web, {"view_filter": None})


def _command(web: Web, cmd: str, *args: str, auth="bearer") -> tuple[int, bytes]:
    status, body, _ = web.request("POST", f"/commands/{cmd}", {"arguments": list(args)}, auth=auth)
    return status, body


def test_set_command_cannot_load_a_script(web):
    script = _attacker_script(web)
    status, body = _command(web, "set", f"scripts={script}")
    assert status == 200 and b"scripts cannot change" in json.loads(body).get("error", "").encode(), body
    status, body = _command(web, "set", "mimo_base_url=http://127.0.0.1:9/v1")
    assert b"mimo_base_url cannot change" in body, body
    time.sleep(0.3)
    assert not web.marker.exists() and str(script) not in str(web.option("scripts"))


@pytest.mark.parametrize("cmd", [("script.run", "@all", "{script}"), ("options.load", "{options}"),
                                 ("options.save", "{out}"), ("save.file", "@all", "{out}"), ("options.reset",),
                                 ("export.file", "curl", "@all", "{out}"), ("cut.save", "@all", "request.content", "{out}")])
def test_commands_that_run_code_or_touch_files_refused(web, cmd):
    tmp = web.marker.parent
    (tmp / "opts.yaml").write_text(f"scripts: [{_attacker_script(web)}]\n")
    out = tmp / "written-by-attacker"
    fill = {"script": str(_attacker_script(web)), "options": str(tmp / "opts.yaml"), "out": str(out)}
    status, body = _command(web, cmd[0], *(a.format(**fill) for a in cmd[1:]))
    assert status == 403 and b"refuses it" in body, body
    time.sleep(0.2)
    assert not web.marker.exists() and not out.exists()
    assert web.option("mimo_base_url")  # options.reset did not run


def test_harmless_command_still_runs(web):
    status, body = _command(web, "flow.mark", "@all", ":star:")
    assert status == 200 and "error" not in json.loads(body), body


# -- browsers: cross-origin pages and DNS rebinding -----------------------------------------------

@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.test"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},  # a page from another port on this machine, e.g. a dev server
    {"Origin": "http://127.0.0.1:3000"},
    {"Host": "evil.test"},  # DNS rebinding: evil.test resolved to 127.0.0.1
    {"Host": "evil.test:8081", "Origin": "http://evil.test:8081"},
])
def test_cross_origin_and_rebinding_refused_even_with_the_secret(web, headers):
    for method, path, body in (("GET", "/flows", None), ("PUT", "/options", {"view_filter": "~q"})):
        status, answer, resp = web.request(method, path, body, headers=headers)
        assert status == 403, (method, path, status, answer[:200])
        assert resp.getheader("Access-Control-Allow-Origin") is None
    assert web.option("view_filter") in (None, "")


def test_cors_preflight_gets_no_permission(web):
    status, _, resp = web.request("OPTIONS", "/options", auth=None, headers={
        "Origin": "http://evil.test", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type,x-xsrftoken"})
    assert status >= 400 and resp.getheader("Access-Control-Allow-Origin") is None


def _websocket_lines(web: Web, origin: str, auth: bool, cookie: str = "") -> bytes:
    lines = ["GET /updates HTTP/1.1", f"Host: 127.0.0.1:{web.web}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13", f"Origin: {origin}"]
    if auth:
        lines.append(f"Authorization: Bearer {web.token}")
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _websocket(web: Web, origin: str, auth: bool, cookie: str = "") -> bytes:
    """The status line of a websocket handshake on /updates (mitmweb's live feed of every flow)."""
    with socket.create_connection(("127.0.0.1", web.web), timeout=10) as s:
        s.sendall(_websocket_lines(web, origin, auth, cookie))
        return s.recv(4096).split(b"\r\n", 1)[0]


def test_websocket_needs_the_secret_and_the_same_origin(web):
    own = f"http://127.0.0.1:{web.web}"
    assert b" 101 " in _websocket(web, own, auth=True)  # the real UI's handshake works
    assert b" 403 " in _websocket(web, own, auth=False)
    assert b" 403 " in _websocket(web, "http://evil.test", auth=True)
    # A browser cannot set Authorization on a websocket: the UI's own feed rides on the login cookie,
    # which a page elsewhere cannot use (SameSite=Strict, and its Origin is refused anyway).
    jar = _login_cookie(web)
    assert b" 101 " in _websocket(web, own, auth=False, cookie=jar)
    assert b" 403 " in _websocket(web, "http://localhost:3000", auth=False, cookie=jar)


def test_ui_never_shows_the_local_access_token(tmp_path):
    """Whoever has the UI must not learn the token that lets a client spend the key: not from the
    option list, nor from the live feed, also when a refused change is rolled back (which broadcasts
    the option's value again)."""
    access = "tok-local-access-Qx81vN"
    with FakeMimo(keys=(KEY,)).start() as fake:
        w = start(tmp_path, fake, "mitmweb -s addon/mimo.py", sets=(f"mimo_access_token={access}",))
        try:
            status, body, _ = w.request("GET", "/options")
            assert status == 200 and b'"mimo_access_token"' in body and access.encode() not in body, body[:300]
            assert w.option("mimo_access_token") and w.option("scripts")  # masked, not dropped; the rest as before
            with socket.create_connection(("127.0.0.1", w.web), timeout=10) as feed:
                feed.sendall(_websocket_lines(w, f"http://127.0.0.1:{w.web}", auth=True))
                got = feed.recv(4096)
                assert b" 101 " in got.split(b"\r\n", 1)[0]
                for update in ({"mimo_access_token": "x"}, {"mimo_access_token": access + "2", "view_filter": "~q"}):
                    _options_put(w, update)
                deadline = time.monotonic() + 2
                feed.settimeout(0.2)
                while time.monotonic() < deadline:
                    try:
                        got += feed.recv(65536)
                    except TimeoutError:
                        pass
            assert b"mimo_access_token" in got, got[-500:]  # the rollback was broadcast
            assert access.encode() not in got, got[-500:]
            assert call(w.port, responses_body("hi")).status == 401  # the token is still required (not sent here)
            fake.queue({"text": "ok"})
            assert call(w.port, responses_body("hi"), headers={"authorization": f"Bearer {access}"}).status == 200
        finally:
            w.stop()
    assert access not in w.log()


# -- the token itself -----------------------------------------------------------------------------

def test_token_shown_once_and_never_in_flow_file_or_log(web):
    """Last of the tests on `web`: it stops the proxy to read the complete flow file."""
    web.request("GET", "/flows", auth="query", headers={"Host": "evil.test"})  # a refused request with ?token= in it
    web.request("GET", "/flows?x=1", auth="query")
    web.request("GET", "/", auth="query")
    web.stop()
    log = web.log()
    assert log.count(web.token) == 1, [line for line in log.splitlines() if web.token in line]
    data = web.flow_file.read_bytes()
    assert b"/v1/chat/completions" in data  # the flow file does hold the flows
    assert web.token.encode() not in data and KEY.encode() not in data


def test_guard_outlives_a_script_reload_even_a_broken_one(tmp_path):
    """mitmproxy re-executes addon/mimo.py when it changes; a broken edit unloads every addon in it."""
    script = tmp_path / "mimo_standin.py"
    reload_test.rewrite(script, reload_test.GOOD, 0)
    with FakeMimo(keys=(KEY,)).start() as fake:
        w = start(tmp_path, fake, "mitmweb -s", script=script)
        try:
            for n, (template, logged) in enumerate([(reload_test.BROKEN, "error in script"),
                                                     (reload_test.GOOD, "was reloaded")], 1):
                reload_test.rewrite(script, template, n)
                reload_test.wait_log(w, logged, 1)
                assert web_request_status(w, "GET", "/flows", auth=None) == 403
                assert web_request_status(w, "GET", "/flows") == 200  # the same token as before
                status, body = _options_put(w, {"scripts": [str(_attacker_script(w))]})
                assert status == 400 and b"scripts cannot change" in body, body
                assert web_request_status(w, "GET", "/flows", headers={"Host": "evil.test"}) == 403
            assert not w.marker.exists()
            assert len(TOKEN_IN_LOG.findall(w.log())) == 1  # shown once, not again on reload
        finally:
            w.stop()


def web_request_status(w: Web, method: str, path: str, **kw) -> int:
    return w.request(method, path, **kw)[0]


def test_browser_opens_the_ui_with_the_token(tmp_path):
    """With a browser at hand the UI opens logged in: the one URL opened carries the token."""
    opened = tmp_path / "opened"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    browser = bin_dir / "wslview"  # the first browser mitmproxy's open_browser() tries on Linux
    browser.write_text(f"#!/bin/sh\necho \"$1\" >> {opened}\n")
    browser.chmod(0o755)
    with FakeMimo(keys=(KEY,)).start() as fake:
        w = start(tmp_path, fake, "mitmweb -s", env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}, browser=True)
        try:
            deadline = time.monotonic() + 10
            while not opened.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # a second, tokenless, opening would have happened by now
            urls = opened.read_text().split()
            assert len(urls) == 1 and "?token=" in urls[0], urls
            w.token = urls[0].rsplit("token=", 1)[1]
            assert web_request_status(w, "GET", "/flows") == 200
        finally:
            w.stop()


def test_fixed_token_for_a_service_is_never_printed(tmp_path):
    """launch.py --web with MIMO2CODEX_WEB_PASSWORD (what an unattended service uses): no fresh token in its log."""
    password = "fixed-web-token-Rk27"
    with FakeMimo(keys=(KEY,)).start() as fake:
        w = start(tmp_path, fake, "launch.py --web", env={"MIMO2CODEX_WEB_PASSWORD": password})
        try:
            w.token = password
            assert web_request_status(w, "GET", "/flows") == 200
            assert web_request_status(w, "GET", "/flows", auth=None) == 403
            assert web_request_status(w, "GET", "/flows", auth="wrong-token") == 403
        finally:
            w.stop()
    assert "?token=" not in w.log() and password not in w.log()


# -- attack: an intercepted flow's relay ticket ---------------------------------------------------

def test_an_intercepted_flows_ticket_cannot_be_spent_by_whoever_reads_it(tmp_path):
    """While a flow is held in mitmweb its request shows the relay ticket: a token holder (or any local
    process it is passed to) must not get the key spent with it, nor use it up before the flow resumes."""
    import threading

    fake = FakeMimo(keys=(KEY,)).start()
    w = start(tmp_path, fake, "mitmweb -s addon/mimo.py")
    try:
        assert _options_put(w, {"intercept": "~q & ~u chat/completions"})[0] == 200  # held before it is sent
        fake.queue({"text": "the owner's answer"})
        answers: list = []
        def ask():
            try:
                answers.append(call(w.port, responses_body("the owner's prompt"), timeout=60))
            except BaseException as e:
                answers.append(e)

        client = threading.Thread(target=ask)
        client.start()
        deadline, held = time.monotonic() + 20, None
        while held is None and time.monotonic() < deadline:
            held = next((f for f in json.loads(w.request("GET", "/flows")[1]) if f.get("intercepted")), None)
            time.sleep(0.05)
        assert held is not None, w.log()[-2000:]
        ticket = dict(held["request"]["headers"])["x-m2c-ticket"]
        body = json.dumps({"model": "mimo-v2.6-pro", "messages": [{"role": "user", "content": "the thief's prompt"}]}).encode()
        with socket.create_connection((held["request"]["host"], held["request"]["port"]), timeout=10) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-m2c-ticket: " + ticket.encode()
                      + b"\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            stolen = s.recv(65536)
        assert stolen.startswith(b"HTTP/1.1 403"), stolen[:300]
        assert w.request("POST", f"/flows/{held['id']}/resume")[0] == 200
        client.join(60)
        assert answers and check_answer(answers[0])[0] == "completed", (answers, w.log()[-3000:])  # not used up by the thief
        prompts = [json.dumps(r.body) for r in fake.chat_requests]
        assert len(prompts) == 1 and "owner's prompt" in prompts[0] and not any("thief" in p for p in prompts)
    finally:
        w.stop()
        fake.stop()
