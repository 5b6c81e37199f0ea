"""The proxy's memory is closed to other processes of the same user (addon/keyguard.py).

The attack is real: a process of the proxy's own user (what a command Codex runs for the model is)
reads `/proc/<pid>/environ`, `/proc/<pid>/mem` and tries ptrace on a running proxy (started both
ways: `mitmdump -s addon/mimo.py`, and launch.py's `cli/commands.main` running mitmdump in-process), which
holds a key the fake provider checks.
The same attack against a plain `sleep` of that user with the key in its environment must succeed:
it shows the attack works on this machine, so the refusal is the hardening's doing.
A browser mitmweb opens does not inherit the key, though the proxy's own /proc/<pid>/environ
(root's to read now) still shows it: unsetting a variable does not rewrite that block.

Root passes every such check, so when the suite runs as root the proxy and the attacker run as
`nobody` if that user can run this interpreter, else as root without any capability (same uid,
no CAP_SYS_PTRACE: the kernel's rule for non-dumpable processes is the same).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mimo2codex import nodump, proxyproc
from mimo2codex.translate import secrets
from mimo2codex.fakes.mimo import FakeMimo
from tests.support.faults import call, check_answer, responses_body

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_DUMPABLE and /proc are Linux's")]

KEY = "sk-nodump-" + os.urandom(8).hex()
NOBODY = 65534
DROP_CAPS = ("--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs")

# What a same-user process can try. The key comes on stdin so it is in no command line.
ATTACK = r"""
import ctypes, json, sys
pid, key = int(sys.argv[1]), sys.stdin.read().encode()
out = {}
try:
    out["environ"] = key in open(f"/proc/{pid}/environ", "rb").read()
except OSError as e:
    out["environ"] = e.strerror
try:  # the environment block sits at the top of the stack: read it back through /proc/<pid>/mem
    stack = next(line.split()[0] for line in open(f"/proc/{pid}/maps") if line.rstrip().endswith("[stack]"))
    lo, hi = (int(x, 16) for x in stack.split("-"))
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(lo)
        out["mem"] = key in mem.read(hi - lo)
except OSError as e:
    out["mem"] = e.strerror
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_SEIZE = 0x4206  # attaches without stopping the tracee; our exit detaches
out["ptrace"] = libc.ptrace(PTRACE_SEIZE, pid, None, None) == 0 or ctypes.get_errno()
print(json.dumps(out))
"""


def _runs_as(prefix: list[str]) -> bool:
    try:
        return subprocess.run([*prefix, sys.executable, "-c", "import mitmproxy, mimo2codex"], cwd=str(proxyproc.ROOT),
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def identity() -> tuple[list[str], int | None]:
    """(prefix that runs a program as the unprivileged identity, uid to own its files or None)."""
    if os.geteuid() != 0:
        return [], None
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and no setpriv to drop privileges with")
    nobody = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if _runs_as(nobody):
        return nobody, NOBODY
    capless = [setpriv, *DROP_CAPS]  # e.g. the interpreter lives under /root, which nobody cannot enter
    if _runs_as(capless):
        return capless, None
    pytest.skip("cannot run this interpreter as an unprivileged identity (neither nobody nor root without capabilities)")


@pytest.fixture
def home(identity) -> Path:
    """A HOME / mitmproxy confdir the identity can write."""
    d = Path(tempfile.mkdtemp(prefix="m2c-nodump-"))
    if identity[1] is not None:
        os.chown(d, identity[1], identity[1])
    yield d
    shutil.rmtree(d, ignore_errors=True)


def attack(identity, pid: int) -> dict:
    r = subprocess.run([*identity[0], sys.executable, "-c", ATTACK, str(pid)], input=KEY, capture_output=True,
                       text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_attack_works_on_a_dumpable_process_of_the_same_user(identity):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MIMO_API_KEY": KEY}
    control = subprocess.Popen([*identity[0], "sleep", "60"], env=env, start_new_session=True)
    try:
        time.sleep(0.2)  # let setpriv exec sleep: the pid is then sleep's
        assert attack(identity, control.pid) == {"environ": True, "mem": True, "ptrace": True}
    finally:
        control.kill()
        control.wait()


# launch.py's own path (cli/launcher.cmd_run running mitmdump in-process), with a confdir the identity can write.
LAUNCH = ("import sys; from pathlib import Path; from mimo2codex.cli import commands, launcher; "
          "launcher.CONFDIR = Path(sys.argv[1]); sys.exit(commands.main(sys.argv[2:]))")


def _launch_py(identity, home: Path, upstream: str, log: Path) -> proxyproc.Proxy:
    port = proxyproc.free_port()
    argv = [*identity[0], sys.executable, "-c", LAUNCH, str(home), "--port", str(port), "--base-url", upstream]
    return proxyproc.spawn(argv, port, {**os.environ, "MIMO_API_KEY": KEY, "HOME": str(home)}, log)


def _mitmdump(identity, home: Path, upstream: str, log: Path) -> proxyproc.Proxy:
    return proxyproc.start(upstream, key=KEY, confdir=home, env={"HOME": str(home)}, log_path=log, prefix=tuple(identity[0]))


@pytest.mark.parametrize("start", [_mitmdump, _launch_py], ids=["mitmdump-s-addon", "launch.py-in-process"])
def test_a_same_user_process_cannot_read_the_key_from_the_running_proxy(identity, home, start):
    with FakeMimo(keys=(KEY,)).start() as fake:
        fake.queue({"text": "served with the key"})
        proxy = start(identity, home, fake.base_url, home / "proxy.log")
        try:
            answer = call(proxy.port, responses_body())  # the fake refuses any other key with a 401
            assert check_answer(answer)[0] == "completed", proxy.log()
            assert "served with the key" in answer.body.decode()
            got = attack(identity, proxy.proc.pid)
            assert got["environ"] is not True and got["mem"] is not True and got["ptrace"] is not True, got
            assert got["environ"] == "Permission denied", got
            assert got["ptrace"] == 1, got  # EPERM
        finally:
            proxy.stop()
        assert KEY not in proxy.log()


def test_forbid_clears_the_dumpable_flag_of_its_own_process_only():
    code = ("from mimo2codex import nodump; import subprocess, sys; before = nodump.dumpable(); ok = nodump.forbid(); "
            "child = subprocess.run([sys.executable, '-c', 'from mimo2codex import nodump; print(nodump.dumpable())'], "
            "capture_output=True, text=True).stdout.strip(); print(before, ok, nodump.dumpable(), child)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(proxyproc.ROOT), timeout=60)
    assert out.stdout.split() == ["True", "True", "False", "True"], out.stderr  # execve resets it for children


def test_forbid_is_a_logged_no_op_where_there_is_no_prctl(monkeypatch, caplog):
    monkeypatch.setattr(sys, "platform", "darwin")
    with caplog.at_level("DEBUG", logger="mimo2codex"):
        assert nodump.forbid() is False
    assert "no PR_SET_DUMPABLE on darwin" in caplog.text
    assert nodump.dumpable() is None


def test_a_browser_mitmweb_opens_inherits_no_key_nor_token(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "browser-env"
    browser = bin_dir / "wslview"  # the first browser mitmproxy's open_browser() tries on Linux
    browser.write_text(f"#!/bin/sh\nenv > {seen}.part && mv {seen}.part {seen}\n")
    browser.chmod(0o755)
    token = "local-token-" + os.urandom(6).hex()
    with FakeMimo(keys=(KEY,)).start() as fake:
        port, web_port = proxyproc.free_port(), proxyproc.free_port()
        argv = [sys.executable, "-c", "from mitmproxy.tools.main import mitmweb; mitmweb()", "-s", str(proxyproc.ADDON),
                "--mode", f"reverse:{fake.base_url.rsplit('/v1', 1)[0]}@127.0.0.1:{port}", "--set", "connection_strategy=lazy",
                "--set", f"confdir={proxyproc.CONFDIR}", "--set", f"mimo_base_url={fake.base_url}",
                "--set", f"web_port={web_port}", "--set", "web_open_browser=true"]
        env = {**os.environ, "MIMO_API_KEY": KEY, secrets.TOKEN_ENV: token, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        proxy = proxyproc.spawn(argv, port, env, tmp_path / "log")
        try:
            deadline = time.monotonic() + 20
            while not seen.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert seen.exists(), f"no browser opened:\n{proxy.log()}"
            browser_env = seen.read_text()
            assert f"{bin_dir}:" in browser_env  # it is the proxy's environment...
            assert KEY not in browser_env and token not in browser_env  # ...without the secrets
            fake.queue({"text": "still has the key"})
            answer = call(port, responses_body(), headers={"authorization": f"Bearer {token}"})
            assert "still has the key" in answer.body.decode(), proxy.log()
            if os.geteuid() == 0:  # only root may read it now, and the kernel still shows the start-up block
                assert KEY in open(f"/proc/{proxy.proc.pid}/environ", "rb").read().decode("latin-1")
        finally:
            proxy.stop()


def test_held_variables_leave_the_environment_children_inherit(monkeypatch):
    monkeypatch.setattr(secrets, "_held", {})
    monkeypatch.setenv("M2C_TEST_KEY", KEY)
    secrets.hold_env("M2C_TEST_KEY", "M2C_TEST_UNSET")
    assert "M2C_TEST_KEY" not in os.environ and secrets.getenv("M2C_TEST_KEY") == KEY
    assert secrets.getenv("M2C_TEST_UNSET") == ""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('M2C_TEST_KEY'))"],
                           capture_output=True, text=True, timeout=60)
    assert child.stdout.strip() == "None"
    monkeypatch.setenv("M2C_TEST_KEY", "set-again")  # an explicit setting (replay's placeholder key) wins
    assert secrets.getenv("M2C_TEST_KEY") == "set-again"
