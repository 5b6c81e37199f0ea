"""`python3 launch.py service install|uninstall|status|logs`: keep the proxy running in the background.

Linux: a systemd user unit (`~/.config/systemd/user/mimo2codex.service`, `systemctl --user`).
macOS: a launchd agent (`~/Library/LaunchAgents/com.mimo2codex.proxy.plist`, `launchctl`).
Windows: the Task Scheduler command is printed (run it yourself).

The unit runs `launch.py` with the flags given to `service install`. Secrets (the provider key, route
keys, the local access token) and URL overrides never go into the unit text: install copies them from
the environment (or --api-key/--access-token) into `~/.config/mimo2codex/env`, mode 0600, which
systemd reads as its EnvironmentFile and launchd's agent sources before starting the proxy.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import re
import secrets
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from mimo2codex import paths
from mimo2codex.translate import rules
from mimo2codex.translate.secrets import LOCAL_SECRET_ENVS, TOKEN_ENV, WEB_PASSWORD_ENV

NAME = "mimo2codex"
UNIT = f"{NAME}.service"
LABEL = "com.mimo2codex.proxy"
LAUNCH = paths.HOME / "launch.py"
# A checkout runs launch.py (its venv bootstrap); an installed copy has no launch.py: its own module.
START = [str(LAUNCH)] if paths.IN_CHECKOUT else ["-m", "mimo2codex"]
Runner = Callable[[list[str]], int]


def platform_name() -> str:
    return {"darwin": "macos", "win32": "windows"}.get(sys.platform, "linux")


def config_dir(home: Path, environ: Mapping[str, str]) -> Path:
    return Path(environ.get("XDG_CONFIG_HOME") or home / ".config")


def env_file(home: Path, environ: Mapping[str, str]) -> Path:
    return config_dir(home, environ) / NAME / "env"


def unit_path(home: Path, environ: Mapping[str, str]) -> Path:
    return config_dir(home, environ) / "systemd" / "user" / UNIT


def plist_path(home: Path) -> Path:
    return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def log_path(home: Path) -> Path:
    return home / "Library" / "Logs" / f"{NAME}.log"


# ----------------------------------------------------------------------------------------------
# What the service runs, and the secrets it needs


def proxy_command(args: argparse.Namespace, r: rules.Rules, python: str = sys.executable) -> list[str]:
    """The proxy command with the user's chosen flags, spelled out (env defaults at install time become flags)."""
    spec = args.rules if Path(args.rules).suffix == "" and not Path(args.rules).is_file() else str(Path(args.rules).resolve())
    argv = [python, *START, "--port", str(args.port), "--host", args.host, "--provider", spec]
    if args.base_url:
        argv += ["--base-url", args.base_url]
    for flag in ("no_reasoning", "hide_reasoning", "web_search", "verbose"):
        if getattr(args, flag):
            argv.append("--" + flag.replace("_", "-"))
    if args.web:  # no one is at the screen to open a browser for
        argv += ["--web", "--web-port", str(args.web_port), "--set", "web_open_browser=false"]
    for route in args.routes:
        argv += ["--route", route]
    for option in args.mitm_sets:
        argv += ["--set", option]
    return argv


def secret_names(r: rules.Rules, routes: list[rules.Rules]) -> list[str]:
    """The variables the service reads from its env file: keys, URL overrides, the local and web UI tokens."""
    names = []
    for x in (r, *routes):
        names += [x.auth_env, x.base_url_env()]
    return list(dict.fromkeys([*names, *LOCAL_SECRET_ENVS]))


_SAFE = re.compile(r"[^'\n\r\0]*")


def env_text(values: Mapping[str, str]) -> str:
    """NAME='value' lines: read the same by systemd's EnvironmentFile and by `sh -c '. FILE'`."""
    for name, value in values.items():
        if not _SAFE.fullmatch(value):
            raise SystemExit(f"mimo2codex: {name} contains a quote or a line break; write {NAME}'s env file by hand")
    return "# mimo2codex service secrets (mode 0600); written by `launch.py service install`\n" + \
        "".join(f"{name}='{value}'\n" for name, value in values.items())


def read_env(path: Path) -> dict[str, str]:
    values = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)='([^']*)'", line.strip())
            if m:
                values[m.group(1)] = m.group(2)
    return values


def write_private(path: Path, text: str) -> None:
    """Create or replace `path` readable by its owner only (0600, directory 0700) before any byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def secrets_for(args: argparse.Namespace, r: rules.Rules, routes: list[rules.Rules], environ: Mapping[str, str],
                existing: Mapping[str, str]) -> dict[str, str]:
    """What goes into the env file: this shell's values, else what the file already held; exits if the key is nowhere."""
    given = {r.auth_env: (args.api_key or "").strip(), TOKEN_ENV: (args.access_token or "").strip()}
    values = {}
    for name in secret_names(r, routes):
        value = given.get(name) or environ.get(name, "").strip() or existing.get(name, "")
        if value:
            values[name] = value
    if getattr(args, "web", False) and WEB_PASSWORD_ENV not in values:
        # A fixed UI token kept in the file: otherwise every start prints a fresh one into the service log.
        values[WEB_PASSWORD_ENV] = secrets.token_urlsafe(24)
    if r.auth_required and r.auth_env not in values:  # like the proxy itself: a route's key may come later
        raise SystemExit(f"mimo2codex: no API key for {r.name}: export {r.auth_env}=sk-... and run `service install` "
                         f"again (it is copied into a 0600 file, never into the unit)")
    return values


# ----------------------------------------------------------------------------------------------
# Unit texts


def systemd_quote(arg: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", arg) and "%" not in arg:
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"'


def systemd_path(path: Path) -> str:
    """EnvironmentFile= and WorkingDirectory= take one path as is (no quotes, no $): only specifiers need escaping."""
    return str(path).replace("%", "%%")


def systemd_unit(command: list[str], secrets_file: Path, r: rules.Rules) -> str:
    return f"""[Unit]
Description=mimo2codex: Codex on {r.name} through mitmproxy
Documentation=file://{paths.HOME / 'README.md'}
After=network-online.target
Wants=network-online.target
# A port taken by another program is not fixed by restarting forever.
StartLimitIntervalSec=60
StartLimitBurst=5

[Service]
Type=simple
# Keys and tokens live in this file (mode 0600), never in this unit.
EnvironmentFile={systemd_path(secrets_file)}
WorkingDirectory={systemd_path(paths.HOME)}
ExecStart={' '.join(systemd_quote(a) for a in command)}
Restart=on-failure
RestartSec=5

[Install]
WantedBy=default.target
"""


# `sh -c SCRIPT FILE COMMAND...`: $0 is the env file, "$@" the proxy command; the key stays out of the plist.
SOURCE_AND_EXEC = 'set -a; . "$0"; set +a; exec "$@"'


def launchd_plist(command: list[str], secrets_file: Path, log: Path) -> bytes:
    return plistlib.dumps({
        "Label": LABEL,
        "ProgramArguments": ["/bin/sh", "-c", SOURCE_AND_EXEC, str(secrets_file), *command],
        "WorkingDirectory": str(paths.HOME),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 5,
        "StandardOutPath": str(log),
        "StandardErrorPath": str(log),
    })


def windows_text(command: list[str], r: rules.Rules, routes: list[rules.Rules]) -> str:
    run = subprocess.list2cmdline(command)
    others = ", ".join(x.auth_env for x in routes if x.auth_required)
    return "\n".join([
        "# Windows: no service manager is driven from here. In a PowerShell or cmd window:",
        f"# 1. keep the key in your user environment (not in the task): setx {r.auth_env} sk-..." + (f"   (and {others})" if others else ""),
        "# 2. start mimo2codex at logon:",
        f'schtasks /Create /TN {NAME} /SC ONLOGON /RL LIMITED /F /TR "{run.replace(chr(34), chr(92) + chr(34))}"',
        f"# start now: schtasks /Run /TN {NAME}   status: schtasks /Query /TN {NAME} /V /FO LIST",
        f"# remove:    schtasks /End /TN {NAME} & schtasks /Delete /TN {NAME} /F",
    ])


# ----------------------------------------------------------------------------------------------
# The subcommands


def add_parser(sub, add_common) -> None:
    s = sub.add_parser("service", help="run the proxy in the background: systemd (Linux), launchd (macOS), Task Scheduler (Windows)")
    ss = s.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    inst = ss.add_parser("install", help="install and start the service with these proxy flags (the key comes from the environment)")
    add_common(inst)
    inst.add_argument("--print", dest="dry_run", action="store_true", help="print the unit and the commands; change nothing")
    un = ss.add_parser("uninstall", help="stop and remove the service")
    un.add_argument("--purge", action="store_true", help="also delete the 0600 file holding the key")
    ss.add_parser("status", help="is it running? (systemctl --user status / launchctl print)")
    logs = ss.add_parser("logs", help="the service's log")
    logs.add_argument("-n", "--lines", type=int, default=100, help="last N lines (default 100)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    for p in (inst, un, ss.choices["status"], logs):
        p.add_argument("--platform", choices=("linux", "macos", "windows"), default=platform_name(), help=argparse.SUPPRESS)


@dataclass(frozen=True)
class Manager:
    """One platform's service manager: where the unit goes and the commands that drive it."""

    target: Path
    load: tuple[tuple[str, ...], ...]      # after writing the unit; a failure is reported
    unload: tuple[tuple[str, ...], ...]    # before removing it; failures ignored (it may not be loaded)
    forget: tuple[tuple[str, ...], ...]    # after removing it
    status: tuple[str, ...]
    logs: Callable[[int, bool], tuple[str, ...]]
    note: str = ""


def manager(platform: str, home: Path, env: Mapping[str, str]) -> Manager:
    if platform == "macos":
        service = f"gui/{os.getuid()}/{LABEL}"
        return Manager(plist_path(home),
                       load=(("launchctl", "bootout", service), ("launchctl", "bootstrap", f"gui/{os.getuid()}", str(plist_path(home)))),
                       unload=(("launchctl", "bootout", service),), forget=(), status=("launchctl", "print", service),
                       logs=lambda n, follow: ("tail", "-n", str(n), *(("-F",) if follow else ()), str(log_path(home))))
    ctl = ("systemctl", "--user")
    # restart, not start: a re-install with new flags takes effect now
    return Manager(unit_path(home, env), load=((*ctl, "daemon-reload"), (*ctl, "enable", UNIT), (*ctl, "restart", UNIT)),
                   unload=((*ctl, "disable", "--now", UNIT),), forget=((*ctl, "daemon-reload"),),
                   status=(*ctl, "status", UNIT, "--no-pager"),
                   logs=lambda n, follow: ("journalctl", "--user", "-u", UNIT, "-n", str(n), "--no-pager", *(("-f",) if follow else ())),
                   note="(user services stop at logout unless lingering is on: loginctl enable-linger $USER)")


WINDOWS = {"uninstall": f"schtasks /End /TN {NAME} & schtasks /Delete /TN {NAME} /F",
           "status": f"schtasks /Query /TN {NAME} /V /FO LIST",
           "logs": "The task's output is not kept; run the command from `service install` in a window to see it."}


def run(args: argparse.Namespace, *, home: Path | None = None, environ: Mapping[str, str] | None = None,
        runner: Runner = subprocess.call) -> int:
    env = os.environ if environ is None else environ
    home = home or Path.home()
    if args.platform == "windows" and args.service_command != "install":
        print(WINDOWS[args.service_command])  # nothing is driven from here on Windows
        return 0
    action = {"install": install, "uninstall": uninstall, "status": status, "logs": logs}[args.service_command]
    return action(args, home, env, runner)


def install(args, home: Path, env: Mapping[str, str], runner: Runner) -> int:
    from mimo2codex.cli import client_config, launcher

    r = launcher.load_rules(args.rules)
    routes = [launcher.load_rules(spec) for spec in args.routes]
    command = proxy_command(args, r)
    secrets_file = env_file(home, env)
    if args.platform == "windows":
        print(windows_text(command, r, routes))
        return 0
    values = secrets_for(args, r, routes, env, read_env(secrets_file))
    m = manager(args.platform, home, env)
    text = (launchd_plist(command, secrets_file, log_path(home)) if args.platform == "macos"
            else systemd_unit(command, secrets_file, r).encode())
    if args.dry_run:
        print(f"# {m.target}\n{text.decode()}\n# {secrets_file} (mode 0600): {', '.join(values)} (values not shown)")
        print("\n".join("$ " + shlex.join(step) for step in m.load))
        return 0
    write_private(secrets_file, env_text(values))
    m.target.parent.mkdir(parents=True, exist_ok=True)
    m.target.write_bytes(text)
    print(f"wrote {m.target}\nwrote {secrets_file} (mode 0600: {', '.join(values)})")
    for step in m.load:
        code = runner(list(step))
        if code != 0 and step not in m.unload:  # unloading what was not loaded fails: fine
            print(f"mimo2codex: `{shlex.join(step)}` failed (exit {code}); the files are in place, see `service status`",
                  file=sys.stderr)
            return 1
    print(f"mimo2codex runs as a service on {client_config.proxy_url(args.host, args.port)}; "
          f"`{paths.COMMAND} service status`, `{paths.COMMAND} service logs`, `{paths.COMMAND} doctor`")
    if m.note:
        print(m.note)
    return 0


def uninstall(args, home: Path, env: Mapping[str, str], runner: Runner) -> int:
    m = manager(args.platform, home, env)
    if m.target.exists():
        for step in m.unload:
            runner(list(step))
        m.target.unlink()
        for step in m.forget:
            runner(list(step))
        print(f"removed {m.target}")
    else:  # nothing to stop: systemctl/launchctl would only fail on a unit they never knew
        print(f"nothing is installed ({m.target} does not exist)")
    secrets_file = env_file(home, env)
    if args.purge and secrets_file.exists():
        secrets_file.unlink()
        print(f"removed {secrets_file}")
    elif secrets_file.exists():
        print(f"kept {secrets_file} (holds the key; `service uninstall --purge` deletes it)")
    return 0


def status(args, home: Path, env: Mapping[str, str], runner: Runner) -> int:
    m = manager(args.platform, home, env)
    if not m.target.exists():
        print(f"not installed ({m.target} does not exist)")
        return 3  # systemctl's own "not running" code
    return runner(list(m.status))


def logs(args, home: Path, env: Mapping[str, str], runner: Runner) -> int:
    return runner(list(manager(args.platform, home, env).logs(args.lines, args.follow)))
