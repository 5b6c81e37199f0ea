"""`launch.py record | replay | show | compare`: recorded Codex sessions (mitmproxy flow files).

    python3 launch.py record session.mitm     # the normal proxy, also writing every exchange (secrets redacted)
    python3 launch.py show session.mitm       # read it as a transcript
    python3 launch.py replay session.mitm     # serve the recorded answers: no key, no network
    python3 launch.py compare session.mitm    # re-send the requests through the current rules, diff

`record` is `mitmdump -s addon/mimo.py -w FILE` (addon/recorder.py makes the file complete and
secret-free); `replay` is the same proxy with `--set mimo_replay=FILE` (addon/replay.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mimo2codex import paths


def _milliseconds(text: str) -> int:
    """--pace: a whole number of milliseconds, 0 or more (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of milliseconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_parsers(sub, add_common) -> None:
    rec = sub.add_parser("record", help="run the proxy and record the session to a mitmproxy flow file (secrets redacted)")
    add_common(rec)
    rec.add_argument("file", metavar="FILE", help="flow file to write (e.g. session.mitm)")
    rec.add_argument("--append", action="store_true", help="append to FILE instead of overwriting it")

    rep = sub.add_parser("replay", help="serve a recorded session's answers offline (no key, no network)")
    add_common(rep)
    rep.add_argument("file", metavar="FILE", help="flow file from `record` (or mitmdump -w)")
    rep.add_argument("--pace", type=_milliseconds, default=0, metavar="MS", help="milliseconds between replayed upstream events (default 0)")
    rep.add_argument("--save", metavar="OUT", help="also record the replayed session to OUT")

    show = sub.add_parser("show", help="print a recorded session as a readable transcript")
    show.add_argument("file", metavar="FILE")
    show.add_argument("--full", action="store_true", help="do not shorten long texts, tool outputs and system prompts")

    cmp_ = sub.add_parser("compare", help="re-send a recording's requests through the current rules and diff the results")
    cmp_.add_argument("file", metavar="FILE")
    cmp_.add_argument("--provider", "--rules", dest="rules", default=argparse.SUPPRESS,
                      help="rules to test (default: the global --provider, mimo)")
    where = cmp_.add_mutually_exclusive_group()
    where.add_argument("--live", action="store_true", help="send to the live provider (needs its key) instead of the recorded answers")
    where.add_argument("--base-url", dest="compare_url", metavar="URL", help="send to this Chat Completions base URL (e.g. a fake)")


def _flowfile():
    return paths.addon_module("flowfile")  # mitmproxy.io; we run inside the venv here


def _exchanges(path: str):
    if Path(path).is_dir():
        names = sorted(p.name for p in Path(path).iterdir() if p.is_file() and not p.name.startswith("."))
        inside = f"; files in it: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}" if names else ", and it holds no file"
        sys.exit(f"mimo2codex: {path} is a directory, not a flow file (`record FILE` writes one file){inside}")
    if not Path(path).is_file():
        sys.exit(f"mimo2codex: no such flow file: {path}")
    try:
        return _flowfile().load(path)
    except ValueError as e:
        sys.exit(f"mimo2codex: {e}")


def _output(name: str) -> Path:
    """A flow file to write, its folder made: a path that cannot be is a message, not mitmproxy's bare errno."""
    path = Path(name).expanduser().resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        sys.exit(f"mimo2codex: cannot write a flow file at {path}: {e.strerror or e}")
    return path


def cmd_record(args: argparse.Namespace) -> int:
    from mimo2codex.cli import launcher

    path = _output(args.file)
    args.mitm_extra = ["-w", ("+" if args.append else "") + str(path)]
    print(f"recording to {path} (api keys, Authorization and cookies are redacted before they are written)")
    print(f"afterwards: {paths.COMMAND} show {args.file}   |   {paths.COMMAND} replay {args.file}")
    return launcher.cmd_run(args)


def cmd_replay(args: argparse.Namespace) -> int:
    from mimo2codex.cli import client_config, launcher

    exchanges = _exchanges(args.file)
    translated = [e for e in exchanges if e.translated]
    if not translated:
        sys.exit(f"mimo2codex: {args.file} holds no translated /v1/responses exchange to replay")
    r = launcher.load_rules(args.rules)
    if not launcher.port_free(args.host, args.port):
        sys.exit(f"mimo2codex: {args.host}:{args.port} is already in use; pick another with --port")
    os.environ.pop(r.auth_env, None)  # a replay never needs the key: keep it out of the process
    paths.CONFDIR.mkdir(parents=True, exist_ok=True)
    argv = launcher.mitm_argv(args, r, r.base_url)
    argv += ["--set", f"mimo_replay={Path(args.file).resolve()}", "--set", f"mimo_replay_pace={args.pace}"]
    if args.save:
        argv += ["-w", str(_output(args.save))]
    print(f"mimo2codex replaying {len(translated)} recorded exchanges from {args.file} on http://{client_config.url_host(args.host)}:{args.port}"
          f"  ({'mitmweb' if args.web else 'mitmdump'}; no key, no network)")
    launcher.export_access_token(args)
    print("\n# Point Codex at it exactly as for a live session:")
    print("# ~/.codex/config.toml\n" + client_config.codex_config(r, args.host, args.port) + "\n", flush=True)
    from mitmproxy.tools import main as mitm_main

    (mitm_main.mitmweb if args.web else mitm_main.mitmdump)(argv)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from mimo2codex.sessions import transcript

    sys.stdout.write(transcript.render(_exchanges(args.file), full=args.full, title=args.file))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mimo2codex.cli import launcher
    from mimo2codex.sessions import compare

    launcher.load_rules(args.rules)  # a bad rules file is a one-line error here, not a traceback from inside compare
    _exchanges(args.file)
    upstream = "live" if args.live else ("url" if args.compare_url else "replay")
    return compare.run(args.file, upstream=upstream, base_url=args.compare_url, rules_name=args.rules)


COMMANDS = {"record": cmd_record, "replay": cmd_replay, "show": cmd_show, "compare": cmd_compare}
