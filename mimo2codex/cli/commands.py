"""`python3 launch.py ...`: start the proxy, print client configs, run the offline demo, check rules.

Runs inside the project venv (launch.py sees to that) or as the `mimo2codex` command of an
installed copy. This module holds the flags and the small subcommands; running the proxy is
cli/launcher.py, what Codex needs to reach it cli/client_config.py, the recorded-session
subcommands cli/sessions.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from mimo2codex import __version__
from mimo2codex.cli import doctor, service, sessions, setup_codex
from mimo2codex.cli.launcher import access_token, cmd_run, load_rules
from mimo2codex.cli.client_config import auth_json, codex_config, model_catalog
from mimo2codex.paths import ADDON, COMMAND
from mimo2codex.translate import rules
from mimo2codex.translate.secrets import TOKEN_ENV, WEB_PASSWORD_ENV

DEFAULT_PORT = 8788
DEFAULT_HOST = "127.0.0.1"
DEFAULT_WEB_PORT = 8081


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


def parser(prog: str = "launch.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="mimo2codex: the OpenAI Codex CLI/app on Xiaomi MiMo, via mitmproxy.")
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
    sub.add_parser("addon-path", help="print the addon script for `mitmdump -s` (this checkout's or the installed copy's)")
    sessions.add_parsers(sub, lambda sp: (add_common(sp, sub=True), add_run(sp, sub=True)))  # record, replay, show, compare
    setup_codex.add_parser(sub, add_common)
    doctor.add_parser(sub, lambda sp: (add_common(sp, sub=True), add_token(sp, sub=True)))
    service.add_parser(sub, lambda sp: (add_common(sp, sub=True), add_run(sp, sub=True)))
    return p


def catalog_step(r: rules.Rules, spec: str, path: str | None) -> tuple[str, str]:
    """(the catalog file, the step that creates it): without the catalog Codex edits files by shell, not apply_patch.

    `spec` is the --provider as given: the step must write this provider's models, not the default's."""
    if path:
        path = str(Path(path).expanduser().resolve())
        try:
            Path(path).write_text(json.dumps(model_catalog(r), indent=1))
        except OSError as e:
            sys.exit(f"mimo2codex: cannot write the catalog {path}: {e.strerror or e}")
        return path, f"# model catalog written to {path} (it gives Codex its apply_patch tool)"
    path = str(setup_codex.catalog_path(setup_codex.codex_home(), r.provider))
    provider = "" if spec == "mimo" else f" --provider {shlex.quote(spec)}"
    return path, (f"# write the model catalog first (it gives Codex its apply_patch tool; Codex will not start if the\n"
                  f"# file named in config.toml is missing):\n{COMMAND} print-config{provider} --catalog {shlex.quote(path)}")


def cmd_print_config(args: argparse.Namespace) -> int:
    r = load_rules(args.rules)
    catalog, step = catalog_step(r, args.rules, args.catalog)
    token = bool(access_token(args))
    print(f"# `{COMMAND} setup-codex` does all of this for you (merges, keeps backups, --dry-run shows the diff)\n")
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
    print(f"# Keep `{COMMAND}` running; cc-switch only switches configs.\n")
    print("# auth.json")
    print(auth_json(bool(access_token(args))))
    catalog, step = catalog_step(r, args.rules, None)
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


def cmd_demo(args: argparse.Namespace) -> int:
    from mimo2codex.cli import demo

    return demo.run(args.rules)


def cmd_addon_path(args: argparse.Namespace) -> int:
    print(ADDON)
    return 0


COMMANDS = {
    "addon-path": cmd_addon_path,
    "print-config": cmd_print_config,
    "print-cc-switch": cmd_print_cc_switch,
    "check-rules": cmd_check_rules,
    "demo": cmd_demo,
    "doctor": doctor.run,
    "service": service.run,
    **sessions.COMMANDS,
    "setup-codex": setup_codex.cmd_setup_codex,
}


def main(argv: list[str], prog: str = "launch.py") -> int:
    args = parser(prog).parse_args(argv)
    try:
        return COMMANDS.get(args.command, cmd_run)(args)
    except BrokenPipeError:  # `print-config | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def run() -> None:
    """The `mimo2codex` command of an installed copy: launch.py's commands without the venv bootstrap."""
    sys.exit(main(sys.argv[1:], prog="mimo2codex"))
