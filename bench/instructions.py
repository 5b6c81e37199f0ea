"""Instruction counts of the hot paths (valgrind --tool=callgrind), out of the proxy: figures a busy
shared machine does not move, where bench/run.py's times and ratios do.

    .venv/3.11/bin/python bench/instructions.py          # about a minute
    .venv/3.11/bin/python bench/instructions.py stream   # some cases only (stream, request, hook)

Each case runs twice under callgrind, doing its work 0 and N times after the same set-up and one
warm-up repetition; the difference divided by N is the cost of one unit (one upstream event, one
request). Python's start-up, imports and first-time costs cancel out; a request counts as the
same history sent again, as Codex does every turn.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVENTS = 2000
# case -> (units of work per repetition, what a unit is)
STREAM_CASES = {f"stream:{framing}:{'fast' if fast else 'general'}": (EVENTS, "event")
                for framing in ("mimo", "other") for fast in (True, False)}
SIZES = {"request:0.1MB/500 items": (100_000, 500), "request:1MB": (1_000_000, None), "request:4MB/500 items": (4_000_000, None),
         "request:16MB": (16_000_000, None), "hook:0.1MB/500 items": (100_000, 500), "hook:4MB/500 items": (4_000_000, None)}
REQUEST_CASES = {case: (1, "request") for case in SIZES if case.startswith("request:")}
HOOK_CASES = {case: (1, "request") for case in SIZES if case.startswith("hook:")}


def setup(case: str, tmp: Path):
    """The work of one repetition, as a callable, after everything it needs is built."""
    from mimo2codex.translate import request, rules

    r = rules.load("mimo")
    if case.startswith("stream:"):
        from bench.fast_upstream import http_chunks
        from bench.run import responses_body_dict
        from mimo2codex.translate.stream import ResponsesStream

        _, framing, way = case.split(":")
        pieces = http_chunks(EVENTS, framing)
        body = responses_body_dict()

        def run() -> None:
            _, turn = request.to_chat(body, r)
            sm = ResponsesStream(turn, r)
            sm._fast = sm._fast and way == "fast"
            for p in pieces:
                sm.feed(p)
            sm.finish()

        return run
    path = tmp / (re.sub(r"\W", "_", case) + ".bin")
    raw = path.read_bytes()
    if case.startswith("hook:"):  # the whole request hook of addon/mimo.py, in-process (taddons), on a fresh flow
        from bench.run import request_hook

        flow, hook = request_hook(raw).__enter__()  # left open: the child process ends with it
        return lambda: hook(flow())

    # Older trees are kept countable: before request.encode the payload was dumped in one piece, before
    # request.loads the body was parsed by json.loads alone.
    encode = getattr(request, "encode", None) or (lambda chat: json.dumps(chat, ensure_ascii=False, separators=(",", ":")).encode())
    loads = getattr(request, "loads", None)

    def run() -> None:  # what addon/mimo.py's translate_request does with the body, without mitmproxy
        if loads is None:
            encode(request.to_chat(json.loads(raw), r)[0])
            return
        body, literals = loads(raw)
        encode(request.to_chat(body, r)[0], literals)

    return run


def child(case: str, reps: int, tmp: str) -> None:
    run = setup(case, Path(tmp))
    run()  # warm-up, also in the 0-repetition run: first-time costs (and, for requests, Codex's resent history) cancel out
    for _ in range(reps):
        run()


def count(case: str, reps: int, tmp: Path) -> int:
    out = tmp / "callgrind.out"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__, "--child", case,
           "--reps", str(reps), "--tmp", str(tmp)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    m = re.search(r"Collected : (\d+)", res.stderr)
    if not m:
        raise RuntimeError(f"callgrind gave no count for {case}: {res.stderr[-500:]}")
    return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", default=["stream", "request", "hook"])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--child")
    ap.add_argument("--tmp")
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.reps, args.tmp)
        return 0
    if not shutil.which("valgrind"):
        print("valgrind is not installed")
        return 1
    from bench.run import codex_bytes, codex_request

    cases = {**(STREAM_CASES if "stream" in args.cases else {}), **(REQUEST_CASES if "request" in args.cases else {}),
             **(HOOK_CASES if "hook" in args.cases else {})}
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        for case, (size, items) in SIZES.items():
            (tmp / (re.sub(r"\W", "_", case) + ".bin")).write_bytes(codex_bytes(codex_request(size, items)))
        print(f"instructions per unit (callgrind, Python {sys.version.split()[0]}); {EVENTS} events per stream")
        for case, (units, what) in cases.items():
            base, full = count(case, 0, tmp), count(case, args.reps, tmp)
            per = (full - base) / (args.reps * units)
            print(f"  {case:28s} {per / 1e3:10.1f} k instructions per {what}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
