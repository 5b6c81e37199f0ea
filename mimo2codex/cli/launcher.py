"""Run the proxy: check the rules, key and ports, then hand mitmdump/mitmweb its command line.

`mitm_argv` is the one place that turns the command's flags into mitmproxy options, so launch.py,
`record`/`replay` and the README's mitmdump recipe stay one code path.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import sys
from urllib.parse import urlsplit

from mimo2codex import __version__, nodump
from mimo2codex.cli.client_config import auth_json, codex_config, url_host
from mimo2codex.paths import ADDON, COMMAND, CONFDIR
from mimo2codex.translate import rules
from mimo2codex.translate.secrets import TOKEN_ENV, WEB_PASSWORD_ENV


def load_rules(spec: str) -> rules.Rules:
    try:
        return rules.load(spec)
    except rules.RulesError as e:
        sys.exit(f"mimo2codex: bad rules: {e}")


def access_token(args: argparse.Namespace) -> str:
    return (getattr(args, "access_token", None) or os.environ.get(TOKEN_ENV, "")).strip()


def export_access_token(args: argparse.Namespace) -> str:
    """Hand the local token to the in-process addon the way the key goes: an option would show in mitmweb."""
    token = access_token(args)
    if token:
        os.environ[TOKEN_ENV] = token
    print(f"local access token: {'required' if token else 'none'}")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mitm_argv(args: argparse.Namespace, r: rules.Rules, base_url: str) -> list[str]:
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base_url))
    # mitmproxy splits the listen spec at its last ":" and takes the host as is: an IPv6 literal goes
    # in without brackets (with them it is looked up as a name and the start fails).
    argv = ["-s", str(ADDON), "--mode", f"reverse:{origin}@{args.host}:{args.port}",
            "--set", "connection_strategy=lazy", "--set", f"confdir={CONFDIR}",
            "--set", f"mimo_rules={args.rules}", "--set", f"mimo_base_url={base_url}"]
    if args.no_reasoning:
        argv += ["--set", "mimo_reasoning=false"]
    if args.hide_reasoning:
        argv += ["--set", "mimo_show_reasoning=false"]
    if args.web_search:
        argv += ["--set", "mimo_web_search=true"]
    if args.verbose:
        argv += ["--set", "mimo_verbose=true"]
    else:
        argv += ["--set", "flow_detail=0"]
    if args.web:
        argv += ["--set", f"web_host={args.host}", "--set", f"web_port={args.web_port}"]
    if args.routes:
        argv += ["--set", f"mimo_routes={','.join(args.routes)}"]
    for option in args.mitm_sets:
        argv += ["--set", option]
    return argv + getattr(args, "mitm_extra", [])  # e.g. `record`'s -w FILE


def port_free(host: str, port: int) -> bool:
    """False if something listens there already; exits with the reason if the address is unusable."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            sys.exit(f"mimo2codex: cannot listen on {host}:{port}: {e.strerror or e}")
    return True


def cmd_run(args: argparse.Namespace) -> int:
    nodump.forbid()  # before anything else: this process holds the key (the addon does it again at load)
    r = load_rules(args.rules)
    base_url = r.upstream_url(args.base_url)
    if not base_url.startswith(("http://", "https://")):
        sys.exit(f"mimo2codex: --base-url must start with http:// or https://, got {base_url!r}")
    key = (args.api_key or os.environ.get(r.auth_env, "")).strip()
    if not key and r.auth_required:
        sys.exit(f"mimo2codex: no API key for {r.name}.\n"
                 f"  Set it with:  export {r.auth_env}=sk-...   (or pass --api-key sk-...)\n"
                 f"  No key yet? `{COMMAND} demo` shows the whole chain offline.")
    if not port_free(args.host, args.port):
        sys.exit(f"mimo2codex: {args.host}:{args.port} is already in use; pick another with --port (and update base_url in Codex's config)")
    if args.web and not port_free(args.host, args.web_port):
        sys.exit(f"mimo2codex: mitmweb's port {args.web_port} is already in use; pick another with --web-port")
    if key:
        os.environ[r.auth_env] = key  # the addon reads it from the environment: never an option, never logged
    CONFDIR.mkdir(parents=True, exist_ok=True)
    print(f"mimo2codex v{__version__} listening on http://{url_host(args.host)}:{args.port}  ({'mitmweb' if args.web else 'mitmdump'})")
    source = ("--api-key" if args.api_key else r.auth_env) + ": set" if key else "none (not required)"
    print(f"upstream: {r.name} at {base_url}  (key: {source})")
    for spec in args.routes:
        routed = load_rules(spec)
        have = "set" if os.environ.get(routed.auth_env) or not routed.auth_required else f"MISSING: export {routed.auth_env}=..."
        print(f"route: model '{routed.provider}/<id>' → {routed.name} at {routed.upstream_url()}"
              f"  (key {routed.auth_env}: {have})")
    token = export_access_token(args)
    if not is_loopback(args.host):
        print(f"WARNING: listening on {args.host}, not loopback: anyone who can reach this port spends your {r.name} quota"
              + ("." if token else "; require a local token with --access-token."), file=sys.stderr)
    print(f"\n# Point Codex at it: {COMMAND} setup-codex writes this (and the model catalog) into ~/.codex for you")
    print("# ~/.codex/auth.json\n" + auth_json(bool(token)))
    print("# ~/.codex/config.toml\n" + codex_config(r, args.host, args.port) + "\n", flush=True)
    from mitmproxy.tools import main as mitm_main

    argv = mitm_argv(args, r, base_url)
    if args.web:
        # In-process argv, so not in `ps`; an unattended proxy (a service) gets a fixed token instead
        # of a fresh one printed into its log on every start.
        password = os.environ.get(WEB_PASSWORD_ENV, "").strip()
        mitm_main.mitmweb(argv + (["--set", f"web_password={password}"] if password else []))
    else:
        mitm_main.mitmdump(argv)
    return 0
