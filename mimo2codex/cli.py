"""`python3 launch.py ...`: start the proxy, print client configs, run the offline demo, check rules.

Runs inside the project venv (launch.py sees to that). The proxy itself is plain mitmdump/mitmweb
with `-s addon/mimo.py`: this module only builds their command line, so `launch.py` and the
README's mitmdump recipe are one code path.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from mimo2codex import __version__, doctor, nodump, rules, service, sessions, setup_codex
from mimo2codex.secrets import TOKEN_ENV, WEB_PASSWORD_ENV

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "addon" / "mimo.py"
CONFDIR = ROOT / ".cache" / "mitmproxy"  # keeps a user's ~/.mitmproxy/config.yaml out of our behaviour
DEFAULT_PORT = 8788
DEFAULT_HOST = "127.0.0.1"
DEFAULT_WEB_PORT = 8081
LOCAL_PLACEHOLDER_KEY = "mimo2codex-local"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_list(name: str) -> list[str]:
    return [s.strip() for s in os.environ.get(name, "").split(",") if s.strip()]


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {port}")
    return port


def _default(value, sub: bool):
    # Subcommands repeat the global flags with no default of their own, so `--port 9 record F` and
    # `record F --port 9` both work (a subparser default would overwrite the global value).
    return argparse.SUPPRESS if sub else value


def add_common(p: argparse.ArgumentParser, sub: bool = False) -> None:
    p.add_argument("-p", "--port", type=port_number, default=_default(os.environ.get("MIMO2CODEX_PORT", str(DEFAULT_PORT)), sub),
                   help=f"listen port (env MIMO2CODEX_PORT, default {DEFAULT_PORT})")
    p.add_argument("--host", default=_default(os.environ.get("MIMO2CODEX_HOST", DEFAULT_HOST), sub),
                   help=f"bind address (env MIMO2CODEX_HOST, default {DEFAULT_HOST}; keep it on loopback)")
    p.add_argument("--provider", "--rules", dest="rules", default=_default(os.environ.get("MIMO2CODEX_RULES", "mimo"), sub),
                   help="provider name from rules/ or a rules YAML file (env MIMO2CODEX_RULES, default mimo)")


def add_token(p: argparse.ArgumentParser, sub: bool = False) -> None:
    p.add_argument("--access-token", default=_default(None, sub), metavar="TOKEN",
                   help=f"require this local token from every client, sent as its API key (env {TOKEN_ENV}; "
                   "default: none). Use it whenever --host is not loopback")


def add_run(p: argparse.ArgumentParser, sub: bool = False) -> None:
    """Flags of a running proxy: the default command, `record` and `replay`."""
    flag = lambda name: _default(env_flag(name), sub)  # noqa: E731
    p.add_argument("--base-url", default=_default(None, sub), help="upstream Chat Completions base URL (env MIMO_BASE_URL; default from the rules)")
    p.add_argument("--api-key", default=_default(None, sub), help="upstream API key (env MIMO_API_KEY, or the rules' auth.env)")
    add_token(p, sub)
    p.add_argument("--no-reasoning", action="store_true", default=flag("MIMO2CODEX_NO_REASONING"),
                   help="turn the provider's thinking off (env MIMO2CODEX_NO_REASONING=1)")
    p.add_argument("--hide-reasoning", action="store_true", default=flag("MIMO2CODEX_HIDE_REASONING"),
                   help="keep thinking on but do not show it in Codex; it is still passed back between turns (env MIMO2CODEX_HIDE_REASONING=1)")
    p.add_argument("--web-search", action="store_true", default=flag("MIMO2CODEX_WEB_SEARCH"),
                   help="offer the provider's web search builtin (MiMo: activate the Web Search plugin first; env MIMO2CODEX_WEB_SEARCH=1)")
    p.add_argument("-v", "--verbose", action="store_true", default=flag("MIMO2CODEX_VERBOSE"),
                   help="log one line per translated request (env MIMO2CODEX_VERBOSE=1); no bodies, no keys")
    p.add_argument("--web", action="store_true", default=_default(False, sub),
                   help="run under mitmweb: watch every translated exchange in the browser (open it with the ?token= address "
                   f"printed on start, or set a fixed token in env {WEB_PASSWORD_ENV})")
    p.add_argument("--web-port", type=port_number, default=_default(DEFAULT_WEB_PORT, sub),
                   help=f"mitmweb's port with --web (default {DEFAULT_WEB_PORT})")
    p.add_argument("--route", dest="routes", action="append", default=_default(_env_list("MIMO2CODEX_ROUTES"), sub),
                   metavar="PROVIDER", help="also serve PROVIDER in this proxy, chosen by model prefix: --route deepseek "
                   "sends model 'deepseek/<id>' to DeepSeek with DEEPSEEK_API_KEY (repeatable; env MIMO2CODEX_ROUTES=a,b)")
    p.add_argument("--set", dest="mitm_sets", action="append", default=_default([], sub), metavar="OPTION=VALUE",
                   help="pass a mitmproxy or addon option through, e.g. --set mimo_stream_idle_timeout=120 (repeatable)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch.py", description="mimo2codex: the OpenAI Codex CLI/app on Xiaomi MiMo, via mitmproxy.")
    p.add_argument("--version", action="version", version=f"mimo2codex {__version__}")
    add_common(p)
    add_run(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    pc = sub.add_parser("print-config", help="print the ~/.codex/config.toml and auth.json snippets")
    add_common(pc, sub=True)
    add_token(pc, sub=True)
    pc.add_argument("--env-key", action="store_true", help="use env_key instead of auth.json (Codex CLI only)")
    pc.add_argument("--catalog", metavar="FILE", help="also write a Codex model catalog to FILE (enables the apply_patch tool)")
    pcc = sub.add_parser("print-cc-switch", help="print the auth.json and config.toml blocks for cc-switch")
    add_common(pcc, sub=True)
    add_token(pcc, sub=True)
    demo = sub.add_parser("demo", help="run the whole chain offline (a strict fake provider + proxy + a Codex-shaped session)")
    demo.add_argument("--provider", "--rules", dest="rules", default=argparse.SUPPRESS,
                      help="provider whose rules and strict fake the demo uses (default: the global --provider, mimo)")
    cr = sub.add_parser("check-rules", help="validate rules files (default: every file in rules/)")
    cr.add_argument("files", nargs="*", metavar="FILE")
    sessions.add_parsers(sub, lambda sp: (add_common(sp, sub=True), add_run(sp, sub=True)))  # record, replay, show, compare
    setup_codex.add_parser(sub, add_common)
    doctor.add_parser(sub, lambda sp: (add_common(sp, sub=True), add_token(sp, sub=True)))
    service.add_parser(sub, lambda sp: (add_common(sp, sub=True), add_run(sp, sub=True)))
    return p


# ----------------------------------------------------------------------------------------------


def load_rules(spec: str) -> rules.Rules:
    try:
        return rules.load(spec)
    except rules.RulesError as e:
        sys.exit(f"mimo2codex: bad rules: {e}")


def proxy_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    return f"http://{shown}:{port}/v1"


def codex_config(r: rules.Rules, host: str, port: int, *, env_key: bool = False, catalog: str | None = None) -> str:
    lines = [f'model = "{r.default_model}"', f'model_provider = "{r.provider}"']
    if catalog:
        lines.append(f"model_catalog_json = {json.dumps(catalog)}")  # a JSON string is a TOML basic string
    lines += ["", f"[model_providers.{r.provider}]", f'name = "{r.name} (via mimo2codex)"',
              f'base_url = "{proxy_url(host, port)}"', 'wire_api = "responses"']
    lines.append('env_key = "MIMO2CODEX_KEY"' if env_key else "requires_openai_auth = true")
    # Retrying is the proxy's job (bounded, Retry-After aware); Codex's own loop would multiply it.
    lines.append("request_max_retries = 1")
    # Said explicitly: a Codex that tries a websocket first only learns from a refusal that we speak HTTP.
    lines.append("supports_websockets = false")
    return "\n".join(lines)


def auth_json(token: bool = False) -> str:
    # The token itself is never printed: this text ends up in terminals and logs.
    return json.dumps({"OPENAI_API_KEY": f"<your {TOKEN_ENV}>" if token else LOCAL_PLACEHOLDER_KEY}, indent=2)


def access_token(args: argparse.Namespace) -> str:
    return (getattr(args, "access_token", None) or os.environ.get(TOKEN_ENV, "")).strip()


def export_access_token(args: argparse.Namespace) -> str:
    """Hand the local token to the in-process addon the way the key goes: an option would show in mitmweb."""
    token = access_token(args)
    if token:
        os.environ[TOKEN_ENV] = token
    print(f"local access token: {'required' if token else 'none'}")
    return token


def model_catalog(r: rules.Rules) -> dict:
    """A Codex model catalog: with `apply_patch_tool_type: freeform` Codex offers its real apply_patch tool."""
    levels = {"low": "Fast responses with lighter reasoning", "medium": "Balances speed and reasoning depth",
              "high": "Greater reasoning depth for complex problems"}
    models = []
    for i, m in enumerate(r.models.values()):
        efforts = [e for e in m.efforts if e in levels] or ["medium"]
        models.append({
            "slug": m.id, "display_name": m.id, "description": f"{r.name} via mimo2codex",
            "apply_patch_tool_type": "freeform", "shell_type": "shell_command", "visibility": "list",
            "supported_in_api": True, "priority": i + 1, "context_window": m.context or 128000,
            "supported_reasoning_levels": [{"effort": e, "description": levels.get(e, e)} for e in efforts],
            "default_reasoning_level": "medium" if "medium" in efforts else efforts[0],
            "truncation_policy": {"mode": "tokens", "limit": 10000}, "supports_parallel_tool_calls": True,
            "input_modalities": ["text", "image"] if m.vision else ["text"], "supports_reasoning_summaries": True,
            "default_reasoning_summary": "none", "support_verbosity": False, "experimental_supported_tools": [],
            "base_instructions": "You are Codex, a coding agent. Be precise, safe and helpful.",
        })
    return {"models": models}


def catalog_step(r: rules.Rules, path: str | None) -> tuple[str, str]:
    """(the catalog file, the step that creates it): without the catalog Codex edits files by shell, not apply_patch."""
    if path:
        path = str(Path(path).expanduser().resolve())
        Path(path).write_text(json.dumps(model_catalog(r), indent=1))
        return path, f"# model catalog written to {path} (it gives Codex its apply_patch tool)"
    path = str(setup_codex.catalog_path(setup_codex.codex_home(), r.provider))
    return path, (f"# write the model catalog first (it gives Codex its apply_patch tool; Codex will not start if the\n"
                  f"# file named in config.toml is missing):\npython3 launch.py print-config --catalog {path}")


def cmd_print_config(args: argparse.Namespace) -> int:
    r = load_rules(args.rules)
    catalog, step = catalog_step(r, args.catalog)
    token = bool(access_token(args))
    print("# `python3 launch.py setup-codex` does all of this for you (merges, keeps backups, --dry-run shows the diff)\n")
    print("# Step 1 - " + step.removeprefix("# ") + "\n")
    if args.env_key:
        value = f"\"${TOKEN_ENV}\"" if token else "anything"
        print(f"# Codex CLI only: export MIMO2CODEX_KEY={value} in the shell that runs codex\n")
        print("# Step 2 - append to ~/.codex/config.toml")
        print(codex_config(r, args.host, args.port, env_key=True, catalog=catalog))
    else:
        print("# Step 2 - write ~/.codex/auth.json")
        print(auth_json(token))
        print("\n# Step 3 - append to ~/.codex/config.toml")
        print(codex_config(r, args.host, args.port, catalog=catalog))
    return 0


def cmd_print_cc_switch(args: argparse.Namespace) -> int:
    r = load_rules(args.rules)
    print("# cc-switch → Codex → + → App-specific Provider → Custom")
    print("# Keep `python3 launch.py` running; cc-switch only switches configs.\n")
    print("# auth.json")
    print(auth_json(bool(access_token(args))))
    catalog, step = catalog_step(r, None)
    print("\n# model catalog (once, outside cc-switch)\n" + step)
    print("\n# config.toml")
    print(codex_config(r, DEFAULT_HOST if args.host in ("0.0.0.0", "::") else args.host, args.port, catalog=catalog))
    print(f"\n# name: {r.name} (via mimo2codex) — \"Fetch Models\" lists: {', '.join(r.listed_models())}")
    return 0


def cmd_check_rules(args: argparse.Namespace) -> int:
    files = args.files or [str(rules.RULES_DIR / f"{n}.yaml") for n in rules.provider_names()]
    bad = 0
    for f in files:
        try:
            r = rules.load(f)
            print(f"ok   {f}: {r.name}, {len(r.models)} models, default {r.default_model}")
        except rules.RulesError as e:
            bad += 1
            print(f"FAIL {e}")
    return 1 if bad else 0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mitm_argv(args: argparse.Namespace, r: rules.Rules, base_url: str) -> list[str]:
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base_url))
    host = f"[{args.host}]" if ":" in args.host else args.host
    argv = ["-s", str(ADDON), "--mode", f"reverse:{origin}@{host}:{args.port}",
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
                 f"  No key yet? `python3 launch.py demo` shows the whole chain offline.")
    if not port_free(args.host, args.port):
        sys.exit(f"mimo2codex: {args.host}:{args.port} is already in use; pick another with --port (and update base_url in Codex's config)")
    if args.web and not port_free(args.host, args.web_port):
        sys.exit(f"mimo2codex: mitmweb's port {args.web_port} is already in use; pick another with --web-port")
    if key:
        os.environ[r.auth_env] = key  # the addon reads it from the environment: never an option, never logged
    CONFDIR.mkdir(parents=True, exist_ok=True)
    print(f"mimo2codex v{__version__} listening on http://{args.host}:{args.port}  ({'mitmweb' if args.web else 'mitmdump'})")
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
    print("\n# Point Codex at it: python3 launch.py setup-codex writes this (and the model catalog) into ~/.codex for you")
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


def cmd_demo(args: argparse.Namespace) -> int:
    from mimo2codex import demo

    return demo.run(args.rules)


COMMANDS = {
    "print-config": cmd_print_config,
    "print-cc-switch": cmd_print_cc_switch,
    "check-rules": cmd_check_rules,
    "demo": cmd_demo,
    "doctor": doctor.run,
    "service": service.run,
    **sessions.COMMANDS,
    "setup-codex": setup_codex.cmd_setup_codex,
}


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS.get(args.command, cmd_run)(args)
    except BrokenPipeError:  # `print-config | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
