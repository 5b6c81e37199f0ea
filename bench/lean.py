"""Exploration (issue 17 item 6): mitmdump with only the mitmproxy addons mimo2codex needs.

    python bench/lean.py -s addon/mimo.py --mode reverse:https://api.xiaomimimo.com@127.0.0.1:8788 \
        --set connection_strategy=lazy [-w flows.mitm] [--set name=value ...]

mitmproxy dispatches every hook (request, responseheaders, response, ...) to every addon of the
master, about 40 in mitmdump, each call wrapped in a context manager: a per-flow cost that plain
mitmdump pays too. This master keeps only what a reverse proxy with scripts and recording needs
(core, proxy server, next layer, TLS, scripts, save, error check, the log) and
drops the rest (browser, anticache, blocklist, client/server playback, cut, export, map
local/remote, modify body/headers, sticky auth/cookies, HAR, onboarding, upstream auth, dumper...).
bench/run.py measures it with `--peer 'python bench/lean.py -s addon/mimo.py --mode
reverse:{origin}@127.0.0.1:{port} --set mimo_base_url={upstream} --set connection_strategy=lazy'`.
Not the product: mimo2codex still runs in mitmdump and mitmweb (see bench/README.md for what it
measured).
"""

from __future__ import annotations

import argparse
import sys

from mitmproxy import master
from mitmproxy.addons import core, disable_h2c, errorcheck, next_layer, proxyserver, save, script, tlsconfig
from mitmproxy.tools import main

# mimo2codex's addon/mimo.py reads these at start-up: declared here as mitmdump's addons would.
PARSER_OPTIONS = {"mode": "m", "scripts": "s", "save_stream_file": "w", "listen_host": None, "listen_port": "p", "certs": None,
                  "ssl_insecure": "k"}


class LeanMaster(master.Master):
    def __init__(self, options, loop=None, with_termlog: bool = True) -> None:
        super().__init__(options, event_loop=loop, with_termlog=with_termlog)
        self.addons.add(core.Core(), disable_h2c.DisableH2C(), proxyserver.Proxyserver(), script.ScriptLoader(),
                        next_layer.NextLayer(), save.Save(), tlsconfig.TlsConfig(),
                        errorcheck.ErrorCheck())


def make_parser(opts) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(usage="%(prog)s [options]")
    for flag in ("version", "options", "commands", "quiet", "verbose"):
        parser.add_argument(f"--{flag}", action="store_true")
    parser.add_argument("--set", type=str, dest="setoptions", default=[], action="append", metavar="option[=value]")
    for name, short in PARSER_OPTIONS.items():
        if name in opts:
            opts.make_parser(parser, name, short=short)
    return parser


def run(argv: list[str] | None = None) -> None:
    main.run(LeanMaster, make_parser, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    run()
