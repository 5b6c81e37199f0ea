"""`python3 launch.py doctor`: what is wrong with this set-up, in the order it would bite, each with its fix.

Python and mitmproxy, the key variable (never printed), the provider reachable, the port, Codex's
config.toml pointing at the proxy, the model catalog, the Codex CLI. The facts about Codex's config
(provider id, base URL, catalog key) come from `cli` (print-config), so doctor checks exactly what
print-config writes. Exit code 1 when any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mimo2codex import paths
from mimo2codex.cli import client_config  # print-config's own facts
from mimo2codex.translate import rules, secrets
from mimo2codex.cli.setup_codex import catalog_path, codex_home

CATALOG_KEY = "model_catalog_json"


@dataclass
class Check:
    ok: bool
    what: str
    fix: str = ""


# ----------------------------------------------------------------------------------------------
# The checks, each independent of the others (tests call them one by one against fakes)


def versions() -> Check:
    here = f"Python {sys.version.split()[0]}"
    if sys.version_info < (3, 11):
        return Check(False, f"{here}: mimo2codex needs 3.11+", "install Python 3.11 or newer and run launch.py with it")
    try:
        import mitmproxy.version
    except ImportError:
        return Check(False, f"{here}, mitmproxy not installed", "run `python3 launch.py` (it creates .venv/ with mitmproxy)")
    have = mitmproxy.version.VERSION
    want = "11.0.2" if sys.version_info < (3, 12) else "12.3+"
    major = int(have.split(".")[0])
    if (sys.version_info < (3, 12) and have != "11.0.2") or (sys.version_info >= (3, 12) and major != 12):
        return Check(False, f"{here}, mitmproxy {have} (expected {want})",
                     "use `python3 launch.py`: its .venv/ holds the mitmproxy this Python needs")
    return Check(True, f"{here}, mitmproxy {have}")


def key(r: rules.Rules, environ: dict | None = None) -> Check:
    env = os.environ if environ is None else environ
    if env.get(r.auth_env, "").strip():
        return Check(True, f"{r.auth_env} is set (not shown)")
    if not r.auth_required:
        return Check(True, f"{r.auth_env} not set; {r.name} needs no key")
    return Check(False, f"{r.auth_env} is not set", f"export {r.auth_env}=sk-...  (a service reads it from its key file)")


def upstream(r: rules.Rules, base_url: str, api_key: str, timeout: float) -> Check:
    """One cheap GET <base_url>/models: does the provider answer, and does it take the key?"""
    url = base_url.rstrip("/") + "/models"
    headers = {r.auth_header: r.auth_value(api_key)} if api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (urllib.error.URLError, OSError, ValueError) as e:
        why = secrets.scrub(str(getattr(e, "reason", e)), api_key)
        return Check(False, f"{base_url} is not reachable ({why}; timeout {timeout:g}s)",
                     f"check the network, or the URL: --base-url / {r.base_url_env()}")
    if status in (401, 403):
        others = ", ".join(r.alt_base_urls.values())
        return Check(False, f"{base_url} answers, but refused the key (HTTP {status})" if api_key
                     else f"{base_url} answers and wants a key (HTTP {status})",
                     f"check {r.auth_env} is a {r.name} key for this URL" + (f" (other hosts: {others})" if others else ""))
    detail = "key accepted" if api_key and status < 300 else f"GET /models → HTTP {status}"
    return Check(True, f"{base_url} reachable ({detail})")


def port(host: str, port_: int, token: str, timeout: float) -> Check:
    """Free, or held by a mimo2codex proxy (its /healthz says so); anything else there is in the way."""
    target = client_config.connect_host(host)
    try:
        socket.create_connection((target, port_), timeout=timeout).close()
    except OSError:
        return Check(True, f"{host}:{port_} is free (the proxy is not running; start it with `{paths.COMMAND}`)")
    req = urllib.request.Request(f"http://{client_config.url_host(target)}:{port_}/healthz", headers={"authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            health = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        if e.code == 401 and b"mimo2codex requires its local access token" in e.read():
            return Check(False, f"{host}:{port_} is a mimo2codex proxy that requires an access token",
                         f"export MIMO2CODEX_ACCESS_TOKEN=<its token> for doctor, and in Codex's auth.json")
        health = {}
    except (OSError, ValueError):
        health = {}
    if not isinstance(health, dict) or health.get("name") != "mimo2codex":
        return Check(False, f"{host}:{port_} is held by another program (no mimo2codex /healthz)",
                     "stop it, or run mimo2codex on another --port (and point Codex's base_url there)")
    what = f"{host}:{port_} is mimo2codex {health.get('version', '?')} ({health.get('provider')} at {health.get('upstream')})"
    if health.get("key") != "set":
        return Check(False, what + " running without its key", "restart it with the key variable set in its environment")
    return Check(True, what)


def selector(spec: str | None, r: rules.Rules) -> str:
    """The flag that picks these rules again in a fix line: a rules file by its path, a bundled one by name
    (`--provider mimo` for a user's own file whose provider is mimo would check the wrong rules)."""
    if spec and rules.resolve_path(spec).resolve().parent != paths.RULES_DIR.resolve():
        return f"--rules {shlex.quote(spec)}"
    return f"--provider {r.provider}"


def codex_config(home: Path, r: rules.Rules, proxy_url: str, token: str, select: str = "") -> tuple[Check, dict]:
    """config.toml selects a provider whose base_url is this proxy, with wire_api "responses"; its auth is in place."""
    path = home / "config.toml"
    fix = f"{paths.COMMAND} print-config {select or selector(None, r)} (or setup-codex) and put its lines in {path}"
    if not path.is_file():
        return Check(False, f"{path} does not exist", fix), {}
    try:
        config = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        return Check(False, f"{path} is not valid TOML: {e}", "fix the line named, or rewrite it: " + fix), {}
    providers = config.get("model_providers") if isinstance(config.get("model_providers"), dict) else {}
    ours = [name for name, p in providers.items() if isinstance(p, dict) and same_url(p.get("base_url"), proxy_url)]
    chosen = config.get("model_provider")
    if chosen not in ours:
        if ours:
            return Check(False, f"{path}: [model_providers.{ours[0]}] points at {proxy_url} but model_provider is {chosen!r}",
                         f'set model_provider = "{ours[0]}" (or run codex -c model_provider={ours[0]})'), config
        return Check(False, f"{path}: no model provider points at {proxy_url} (model_provider is {chosen!r})", fix), config
    entry = providers[chosen]
    if entry.get("wire_api") != "responses":
        return Check(False, f"{path}: [model_providers.{chosen}] has wire_api = {entry.get('wire_api')!r}",
                     'set wire_api = "responses" (Codex speaks Responses to the proxy)'), config
    what = f'{path}: model_provider "{chosen}" → {proxy_url}, wire_api = "responses"'
    if entry.get("env_key"):
        return Check(True, what + f" (key from ${entry['env_key']} in Codex's shell)"), config
    if entry.get("requires_openai_auth"):
        auth = home / "auth.json"
        try:
            sent = json.loads(auth.read_text()).get("OPENAI_API_KEY") or ""
        except (OSError, ValueError, AttributeError):
            sent = ""
        if not sent:
            return Check(False, what + f", but {auth} has no OPENAI_API_KEY",
                         f"write {auth}: {client_config.auth_json(bool(token))}"), config
        if token and sent != token:
            return Check(False, what + f", but {auth}'s OPENAI_API_KEY is not the proxy's access token",
                         f"put $MIMO2CODEX_ACCESS_TOKEN's value in {auth}"), config
    return Check(True, what), config


def same_url(a: object, b: str) -> bool:
    if not isinstance(a, str):
        return False
    norm = lambda u: u.rstrip("/").replace("://localhost:", "://127.0.0.1:")  # noqa: E731
    return norm(a) == norm(b)


def catalog(home: Path, r: rules.Rules, config: dict, select: str = "") -> Check:
    """The model catalog config.toml names exists and lists the configured model (Codex then offers apply_patch)."""
    fix = (f"{paths.COMMAND} setup-codex {select or selector(None, r)} "
           f"(writes it as {catalog_path(home, r.provider)} and the config line)")
    name = config.get(CATALOG_KEY)
    if not name:
        return Check(False, f"no {CATALOG_KEY} in config.toml: Codex falls back to metadata without apply_patch", fix)
    path = Path(str(name)).expanduser()
    try:
        slugs = [m.get("slug") for m in json.loads(path.read_text())["models"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return Check(False, f"{CATALOG_KEY} = {str(path)!r} cannot be read as a catalog ({type(e).__name__})", fix)
    model = str(config.get("model") or r.default_model)
    if model not in slugs:
        return Check(False, f"{path} does not list model {model!r} ({len(slugs)} models)", fix)
    return Check(True, f"{path}: {len(slugs)} models, including {model}")


def codex_cli(path: str | None = None) -> Check:
    exe = shutil.which("codex", path=path)
    fix = "npm install -g @openai/codex  (the desktop app needs no CLI; then ignore this)"
    if not exe:
        return Check(False, "no `codex` on PATH", fix)
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check(False, f"{exe} does not run ({type(e).__name__})", fix)
    text = (out.stdout or out.stderr).strip().splitlines()
    if out.returncode != 0 or not text:
        return Check(False, f"{exe} --version failed (exit {out.returncode})", fix)
    return Check(True, f"{text[0]} ({exe})")


# ----------------------------------------------------------------------------------------------


def seconds(text: str) -> float:
    """A positive number of seconds (argparse type): 0 or less is no timeout a socket takes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 86400:  # also refuses nan and inf, which sockets refuse with a traceback
        raise argparse.ArgumentTypeError(f"must be more than 0 and less than a day, got {text}")
    return value


def add_parser(sub, add_common) -> None:
    d = sub.add_parser("doctor", help="check the set-up (Python, mitmproxy, key, provider, port, Codex config, catalog, Codex CLI)")
    add_common(d)
    d.add_argument("--base-url", default=argparse.SUPPRESS, help="upstream to check (default: as the proxy would pick it)")
    d.add_argument("--timeout", type=seconds, default=5.0, help="seconds for each network check (default 5)")


def mark(ok: bool) -> str:
    sign = "✓" if ok else "✗"
    try:
        sign.encode(sys.stdout.encoding or "utf-8")
    except UnicodeEncodeError:
        sign = "ok" if ok else "XX"
    return sign


def run(args: argparse.Namespace, environ: dict | None = None, codex_path: str | None = None) -> int:
    from mimo2codex.cli import launcher

    env = os.environ if environ is None else environ
    r = launcher.load_rules(args.rules)
    base_url = r.upstream_url(getattr(args, "base_url", None))
    token = launcher.access_token(args)
    url = client_config.proxy_url(args.host, args.port)
    home = codex_home(env)
    print(f"mimo2codex doctor: provider {r.provider}, proxy {url}, Codex home {home}")
    checks = [versions(), key(r, env), upstream(r, base_url, env.get(r.auth_env, "").strip(), args.timeout),
              port(args.host, args.port, token, args.timeout)]
    select = selector(args.rules, r)
    config_check, config = codex_config(home, r, url, token, select)
    checks += [config_check, catalog(home, r, config, select), codex_cli(codex_path)]
    for c in checks:
        print(f"{mark(c.ok)} {c.what}")
        if not c.ok and c.fix:
            print(f"    fix: {c.fix}")
    bad = sum(not c.ok for c in checks)
    print("all good" if not bad else f"{bad} problem{'s' if bad > 1 else ''} found")
    return 1 if bad else 0
