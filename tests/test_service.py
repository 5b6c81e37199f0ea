"""`launch.py service`: the generated systemd unit / launchd plist / Task Scheduler text, the 0600 key file,
the service-manager commands issued, and the generated commands really starting a working proxy."""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mimo2codex import proxyproc
from mimo2codex.cli import commands as cli, service
from mimo2codex.translate import rules
from mimo2codex.fakes.mimo import FakeMimo

KEY = "sk-service-secret-7d21c4"
TOKEN = "tok-service-local-55a0"


def parse(*argv: str):
    return cli.parser().parse_args(["service", *argv])


class Recorder:
    """Stands in for subprocess.call: the service-manager commands, in order."""

    def __init__(self, codes: dict[str, int] | None = None):
        self.calls: list[list[str]] = []
        self.codes = codes or {}

    def __call__(self, cmd: list[str]) -> int:
        self.calls.append(cmd)
        return self.codes.get(" ".join(cmd[:3]), 0)


def install(home: Path, env: dict, *argv: str, platform: str = "linux", runner: Recorder | None = None) -> tuple[int, Recorder]:
    runner = runner or Recorder()
    code = service.run(parse("install", "--platform", platform, *argv), home=home, environ=env, runner=runner)
    return code, runner


def test_systemd_unit_runs_the_chosen_flags_and_holds_no_secret(tmp_path):
    env = {"MIMO_API_KEY": KEY, "MIMO2CODEX_ACCESS_TOKEN": TOKEN, "DEEPSEEK_API_KEY": "sk-ds-secret"}
    code, runner = install(tmp_path, env, "--port", "9100", "--route", "deepseek", "--hide-reasoning",
                           "--set", "mimo_stream_idle_timeout=120")
    assert code == 0
    unit = (tmp_path / ".config/systemd/user/mimo2codex.service").read_text()
    secrets_file = tmp_path / ".config/mimo2codex/env"
    assert f"EnvironmentFile={secrets_file}\n" in unit
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert shlex.split(exec_start.removeprefix("ExecStart=")) == [
        sys.executable, str(service.LAUNCH), "--port", "9100", "--host", "127.0.0.1", "--provider", "mimo",
        "--hide-reasoning", "--route", "deepseek", "--set", "mimo_stream_idle_timeout=120"]
    assert "Restart=on-failure" in unit and "WantedBy=default.target" in unit
    for secret in (KEY, TOKEN, "sk-ds-secret"):
        assert secret not in unit
    assert runner.calls == [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", service.UNIT],
                            ["systemctl", "--user", "restart", service.UNIT]]


def test_key_file_is_0600_and_reused_by_a_reinstall(tmp_path):
    secrets_file = tmp_path / ".config/mimo2codex/env"
    secrets_file.parent.mkdir(parents=True)
    secrets_file.write_text("old\n")
    secrets_file.chmod(0o644)  # a file someone made readable: install must close it
    assert install(tmp_path, {"MIMO_API_KEY": KEY, "MIMO_BASE_URL": "http://127.0.0.1:9/v1"})[0] == 0
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert service.read_env(secrets_file) == {"MIMO_API_KEY": KEY, "MIMO_BASE_URL": "http://127.0.0.1:9/v1"}
    # Re-install from a shell without the key (flags changed): the file's key stays, the unit changes.
    assert install(tmp_path, {}, "--port", "9200")[0] == 0
    assert service.read_env(secrets_file)["MIMO_API_KEY"] == KEY
    assert "--port 9200" in (tmp_path / ".config/systemd/user/mimo2codex.service").read_text()


def test_web_service_keeps_a_fixed_ui_token_in_the_key_file_not_the_unit(tmp_path):
    # mitmweb prints a new token on every start unless MIMO2CODEX_WEB_PASSWORD is set: the service log would hold it.
    assert install(tmp_path, {"MIMO_API_KEY": KEY}, "--web")[0] == 0
    secrets_file = tmp_path / ".config/mimo2codex/env"
    token = service.read_env(secrets_file)["MIMO2CODEX_WEB_PASSWORD"]
    assert len(token) >= 24 and token not in (tmp_path / ".config/systemd/user/mimo2codex.service").read_text()
    assert install(tmp_path, {}, "--web")[0] == 0  # a re-install keeps the token the user already has
    assert service.read_env(secrets_file)["MIMO2CODEX_WEB_PASSWORD"] == token
    assert install(tmp_path / "plain", {"MIMO_API_KEY": KEY})[0] == 0  # no UI, no token
    assert "MIMO2CODEX_WEB_PASSWORD" not in service.read_env(tmp_path / "plain/.config/mimo2codex/env")


def test_install_without_any_key_says_how_and_writes_nothing(tmp_path):
    with pytest.raises(SystemExit, match="export MIMO_API_KEY=sk-"):
        install(tmp_path, {})
    assert not (tmp_path / ".config").exists()
    assert install(tmp_path, {}, "--provider", "local")[0] == 0  # a provider that needs no key


def test_a_key_sh_or_systemd_would_misread_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="quote or a line break"):
        install(tmp_path, {"MIMO_API_KEY": "sk-it's"})


def test_api_key_flag_goes_to_the_file_not_the_unit(tmp_path):
    assert install(tmp_path, {}, "--api-key", KEY, "--access-token", TOKEN)[0] == 0
    assert stat.S_IMODE((tmp_path / ".config/mimo2codex").stat().st_mode) == 0o700  # created private
    assert stat.S_IMODE((tmp_path / ".config/mimo2codex/env").stat().st_mode) == 0o600
    assert service.read_env(tmp_path / ".config/mimo2codex/env") == {"MIMO_API_KEY": KEY, "MIMO2CODEX_ACCESS_TOKEN": TOKEN}
    unit = (tmp_path / ".config/systemd/user/mimo2codex.service").read_text()
    assert KEY not in unit and TOKEN not in unit and "--api-key" not in unit


def test_dry_run_prints_and_changes_nothing(tmp_path, capsys):
    code, runner = install(tmp_path, {"MIMO_API_KEY": KEY}, "--print")
    out = capsys.readouterr().out
    assert code == 0 and runner.calls == [] and not (tmp_path / ".config").exists()
    assert "ExecStart=" in out and "$ systemctl --user enable mimo2codex.service" in out and KEY not in out


def test_failed_systemctl_is_reported(tmp_path, capsys):
    runner = Recorder({"systemctl --user enable": 1})
    code, _ = install(tmp_path, {"MIMO_API_KEY": KEY}, runner=runner)
    assert code == 1 and "systemctl --user enable mimo2codex.service` failed" in capsys.readouterr().err


def test_status_logs_uninstall_drive_systemctl_and_journalctl(tmp_path, capsys):
    runner = Recorder()
    run = lambda *argv: service.run(parse(*argv, "--platform", "linux"), home=tmp_path, environ={}, runner=runner)  # noqa: E731
    assert run("status") == 3 and "not installed" in capsys.readouterr().out and runner.calls == []
    install(tmp_path, {"MIMO_API_KEY": KEY}, runner=runner)
    runner.calls.clear()
    assert run("status") == 0 and run("logs", "-n", "20", "-f") == 0
    assert runner.calls == [["systemctl", "--user", "status", service.UNIT, "--no-pager"],
                            ["journalctl", "--user", "-u", service.UNIT, "-n", "20", "--no-pager", "-f"]]
    runner.calls.clear()
    assert run("uninstall") == 0
    assert runner.calls == [["systemctl", "--user", "disable", "--now", service.UNIT], ["systemctl", "--user", "daemon-reload"]]
    assert not (tmp_path / ".config/systemd/user/mimo2codex.service").exists()
    secrets_file = tmp_path / ".config/mimo2codex/env"
    assert secrets_file.exists() and "--purge" in capsys.readouterr().out
    assert run("uninstall", "--purge") == 0 and not secrets_file.exists()
    assert "nothing is installed" in capsys.readouterr().out


@pytest.mark.parametrize("platform", ["linux", "macos"])
def test_uninstall_with_nothing_installed_drives_no_service_manager(tmp_path, capsys, platform):
    runner = Recorder()
    assert service.run(parse("uninstall", "--platform", platform), home=tmp_path, environ={}, runner=runner) == 0
    assert runner.calls == [] and "nothing is installed" in capsys.readouterr().out


def test_launchd_plist_sources_the_key_file_and_holds_no_secret(tmp_path):
    code, runner = install(tmp_path, {"MIMO_API_KEY": KEY}, "--port", "9300", platform="macos")
    assert code == 0
    path = tmp_path / "Library/LaunchAgents/com.mimo2codex.proxy.plist"
    raw = path.read_bytes()
    assert KEY not in raw.decode()
    plist = plistlib.loads(raw)
    secrets_file = tmp_path / ".config/mimo2codex/env"
    assert plist["Label"] == service.LABEL and plist["RunAtLoad"] is True
    assert plist["ProgramArguments"][:4] == ["/bin/sh", "-c", service.SOURCE_AND_EXEC, str(secrets_file)]
    assert plist["ProgramArguments"][4:8] == [sys.executable, str(service.LAUNCH), "--port", "9300"]
    assert plist["StandardOutPath"] == str(tmp_path / "Library/Logs/mimo2codex.log")
    domain = f"gui/{os.getuid()}"
    assert runner.calls == [["launchctl", "bootout", f"{domain}/{service.LABEL}"], ["launchctl", "bootstrap", domain, str(path)]]


def test_launchd_status_logs_uninstall(tmp_path, capsys):
    runner = Recorder()
    run = lambda *argv: service.run(parse(*argv, "--platform", "macos"), home=tmp_path, environ={}, runner=runner)  # noqa: E731
    assert run("status") == 3 and runner.calls == []
    install(tmp_path, {"MIMO_API_KEY": KEY}, "--web", platform="macos", runner=runner)
    assert plistlib.loads(service.plist_path(tmp_path).read_bytes())["ProgramArguments"][-2:] == ["--set", "web_open_browser=false"]
    runner.calls.clear()
    assert run("status") == 0 and run("logs", "-n", "5") == 0 and run("uninstall") == 0
    service_id = f"gui/{os.getuid()}/{service.LABEL}"
    assert runner.calls == [["launchctl", "print", service_id], ["tail", "-n", "5", str(tmp_path / "Library/Logs/mimo2codex.log")],
                            ["launchctl", "bootout", service_id]]
    assert not service.plist_path(tmp_path).exists()


def test_windows_prints_the_task_scheduler_command_without_the_key(tmp_path, capsys):
    code, runner = install(tmp_path, {"MIMO_API_KEY": KEY}, "--port", "9400", platform="windows")
    out = capsys.readouterr().out
    assert code == 0 and runner.calls == [] and not (tmp_path / ".config").exists()
    assert "schtasks /Create /TN mimo2codex /SC ONLOGON" in out and "--port 9400" in out
    assert "setx MIMO_API_KEY sk-..." in out and KEY not in out
    for action, says in (("status", "schtasks /Query"), ("uninstall", "schtasks /Delete"), ("logs", "not kept")):
        assert service.run(parse(action, "--platform", "windows"), home=tmp_path, environ={}, runner=runner) == 0
        assert says in capsys.readouterr().out
    assert runner.calls == []


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit_even_with_awkward_paths(tmp_path):
    odd = tmp_path / "my home %h $USER"
    unit = service.systemd_unit([sys.executable, str(service.LAUNCH), "--set", "x=a b"], odd / "env", rules.load("mimo"))
    path = tmp_path / service.UNIT
    path.write_text(unit)
    r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "mimo2codex.service" not in r.stderr, r.stderr
    env_line = next(line for line in unit.splitlines() if line.startswith("EnvironmentFile="))
    assert env_line == f"EnvironmentFile={tmp_path}/my home %%h $USER/env"  # a path as is; % would be a specifier
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith(' --set "x=a b"')


# ------------------------------------------------------------------------------------------------
# The generated commands really run the proxy with the key from the file


def start_like_a_service_manager(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=str(service.paths.HOME))


def bare_env() -> dict:
    """What a service manager hands its child: no key, no MIMO_* from this shell."""
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}


@pytest.mark.e2e
@pytest.mark.parametrize("platform", ["linux", "macos"])
def test_generated_service_command_serves_with_the_key_from_the_file(tmp_path, platform):
    port = proxyproc.free_port()
    with FakeMimo(keys=(KEY,)).start() as fake:
        fake.queue({"text": "hello from the service"})
        env = {"MIMO_API_KEY": KEY, "MIMO_BASE_URL": fake.base_url}
        assert install(tmp_path, env, "--port", str(port), platform=platform)[0] == 0
        secrets_file = tmp_path / ".config/mimo2codex/env"
        child_env = bare_env()
        if platform == "linux":  # systemd: EnvironmentFile= then ExecStart=
            unit = (tmp_path / ".config/systemd/user/mimo2codex.service").read_text()
            argv = shlex.split(next(line for line in unit.splitlines() if line.startswith("ExecStart=")).split("=", 1)[1])
            child_env.update(service.read_env(secrets_file))
        else:  # launchd: ProgramArguments as they are (the sh wrapper sources the file)
            argv = plistlib.loads((tmp_path / "Library/LaunchAgents/com.mimo2codex.proxy.plist").read_bytes())["ProgramArguments"]
        proc = start_like_a_service_manager(argv, child_env, tmp_path / "service.log")
        try:
            proxyproc.wait_port(port, proc, timeout=60)
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read())
            assert health["key"] == "set" and health["upstream"] == fake.base_url
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/responses", json.dumps(
                {"model": "mimo-v2.5-pro", "input": "hi", "stream": False}).encode(), {"content-type": "application/json"})
            answer = json.loads(urllib.request.urlopen(req, timeout=30).read())
            assert answer["output"][-1]["content"][0]["text"] == "hello from the service"
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(15)
    assert KEY not in (tmp_path / "service.log").read_text(errors="replace")


def systemd_user_works() -> bool:
    try:
        return subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform != "linux" or not systemd_user_works(),
                    reason="no systemd user manager here (`systemctl --user` does not answer): the real install is not tested")
def test_real_systemd_install_status_uninstall(tmp_path):
    port = proxyproc.free_port()
    home = Path.home()
    unit = service.unit_path(home, os.environ)
    if unit.exists():
        pytest.skip(f"{unit} exists: a real mimo2codex service is installed here, not touching it")
    with FakeMimo(keys=(KEY,)).start() as fake:
        args = parse("install", "--port", str(port), "--platform", "linux")
        secrets_file = service.env_file(home, os.environ)
        kept = secrets_file.read_bytes() if secrets_file.exists() else None
        try:
            assert service.run(args, environ={**os.environ, "MIMO_API_KEY": KEY, "MIMO_BASE_URL": fake.base_url}) == 0
            proxyproc.wait_port(port, timeout=60)
            assert service.run(parse("status", "--platform", "linux")) == 0
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read())
            assert health["key"] == "set"
        finally:
            service.run(parse("uninstall", "--platform", "linux"))
            if kept is None:
                secrets_file.unlink(missing_ok=True)
            else:
                secrets_file.write_bytes(kept)
    assert not unit.exists()
