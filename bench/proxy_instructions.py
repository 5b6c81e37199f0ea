"""Instruction counts of a running proxy per streamed chunk and per stream (valgrind callgrind):
mimo2codex's whole mitmdump (relay, Tee, translator, mitmproxy itself) against plain mitmdump,
figures a busy shared machine does not move.

    .venv/3.11/bin/python bench/proxy_instructions.py                 # both rows, MiMo framing (a few minutes)
    .venv/3.11/bin/python bench/proxy_instructions.py --framing other translate-only mimo2codex --keep /tmp/cg

Each proxy runs under callgrind against bench/fast_upstream.py; after a warm-up the counters are
zeroed (`callgrind_control -z`), `--streams` sequential streams of 200 and then of 2000 chunks are
read by a client outside valgrind (the "translate-only" row is plain mitmdump with only the
Tee and the stream translator, bench/translate_only.py: it splits mimo2codex's added cost into the
translation and the rest, relay included), each window dumped (`callgrind_control -d`). Per chunk is the
difference of the two windows over the 1800 extra chunks of each stream; per stream is what is
left of a 200-chunk stream. `--keep DIR` keeps the dumps (NAME.out.1: the 200-chunk window,
NAME.out.2: the 2000-chunk one); `callgrind_annotate --threshold=100 --inclusive=no` on two of
them, subtracted function by function, shows where a row's extra instructions go (C functions
only: Python 3.11 code shows as the interpreter's eval loop).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import run  # noqa: E402
from mimo2codex import proxyproc  # noqa: E402

SHORT, LONG = 200, 2000
# Rows that are plain mitmdump with a script (see bench/run.py); "mimo2codex" is addon/mimo.py.
SCRIPTS = {"plain": "passthrough.py", "translate-only": "translate_only.py"}
_wait_port = proxyproc.wait_port
# mitmdump starts some fifty times slower under valgrind than the 30 s proxyproc allows.
proxyproc.wait_port = lambda port, proc=None, timeout=0: _wait_port(port, proc, timeout=600)


def _dump(pid: int, out: Path) -> int:
    before = set(out.parent.glob(out.name + "*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    for _ in range(600):
        new = [p for p in set(out.parent.glob(out.name + "*")) - before if p.stat().st_size]
        if new:
            time.sleep(0.5)  # the file is written in one go, but let it finish
            text = new[0].read_text(errors="replace")
            m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
            if m:
                return int(m.group(1))
        time.sleep(0.2)
    raise RuntimeError("callgrind_control -d gave no dump")


def measure(name: str, upstream: run.Upstream, streams: int, tmp: Path) -> None:
    out = tmp / f"{name}.out"
    prefix = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}")
    proxy = run.start_plain(upstream, SCRIPTS[name], prefix) if name in SCRIPTS else run.start_m2c(upstream, prefix)
    target = run.Target(name, proxy.port, None, name not in SCRIPTS, name != "plain")
    try:
        asyncio.run(run.sequential(target, f"bench:long:{SHORT}", 3, True))  # warm-up: imports, first connections
        pid = proxy.proc.pid
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        asyncio.run(run.sequential(target, f"bench:long:{SHORT}", streams, True))
        short = _dump(pid, out)
        asyncio.run(run.sequential(target, f"bench:long:{LONG}", streams, True))
        long_ = _dump(pid, out)
    finally:
        proxy.stop(60)
    per_chunk = (long_ - short) / (streams * (LONG - SHORT))
    per_stream = short / streams - SHORT * per_chunk
    print(f"  {name:11s} {per_chunk / 1e3:8.1f} k instructions per chunk, {per_stream / 1e6:6.2f} M per stream "
          f"(apart from its chunks), {short / streams / 1e6:6.2f} M per {SHORT}-chunk stream", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="*", default=["plain", "mimo2codex"])
    ap.add_argument("--framing", choices=("mimo", "other"), default="mimo")
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--keep", metavar="DIR", help="keep the callgrind dumps there (for callgrind_annotate)")
    args = ap.parse_args(argv)
    if not shutil.which("callgrind_control"):
        print("valgrind is not installed")
        return 1
    upstream = run.Upstream(args.framing)
    print(f"instructions of the whole proxy process (callgrind, Python {sys.version.split()[0]}), {args.framing} framing, "
          f"{args.streams} streams per window")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.rows:
                measure(name, upstream, args.streams, Path(args.keep or tmp))
    finally:
        upstream.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
