"""Instruction counts of a running proxy per streamed chunk and per stream (valgrind callgrind):
mimo2codex's whole mitmdump (relay, Tee, translator, mitmproxy itself) against plain mitmdump,
figures a busy shared machine does not move.

    .venv/3.11/bin/python bench/proxy_instructions.py                 # both rows, MiMo framing (a few minutes)
    .venv/3.11/bin/python bench/proxy_instructions.py --framing other --annotate 25

Each proxy runs under callgrind against bench/fast_upstream.py; after a warm-up the counters are
zeroed (`callgrind_control -z`), `--streams` sequential streams of 200 and then of 2000 chunks are
read by a client outside valgrind (the "translate-only" row is plain mitmdump with only the
Tee and the stream translator, bench/translate_only.py: it splits mimo2codex's added cost into the
translation and the rest, relay included), each window dumped (`callgrind_control -d`). Per chunk is the
difference of the two windows over the 1800 extra chunks of each stream; per stream is what is
left of a 200-chunk stream. `--annotate N` prints the N functions of the 2000-chunk window with
the most instructions of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def _dump(pid: int, out: Path) -> tuple[int, Path]:
    before = set(out.parent.glob(out.name + "*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    for _ in range(600):
        new = [p for p in set(out.parent.glob(out.name + "*")) - before if p.stat().st_size]
        if new:
            time.sleep(0.5)  # the file is written in one go, but let it finish
            text = new[0].read_text(errors="replace")
            m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
            if m:
                return int(m.group(1)), new[0]
        time.sleep(0.2)
    raise RuntimeError("callgrind_control -d gave no dump")


def measure(name: str, upstream: run.Upstream, streams: int, annotate: int, tmp: Path) -> None:
    out = tmp / f"{name}.out"
    prefix = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}")
    port = proxyproc.free_port()
    if name in SCRIPTS:
        argv = [*prefix, run.PY, "-c", proxyproc.MITMDUMP, "-s", str(ROOT / "bench" / SCRIPTS[name]), "--mode",
                f"reverse:http://127.0.0.1:{upstream.port}@127.0.0.1:{port}", "--set", "connection_strategy=lazy",
                "--set", f"confdir={proxyproc.CONFDIR}", "--set", "flow_detail=0"]
        proxy = proxyproc.spawn(argv, port, dict(os.environ))
    else:
        proxy = proxyproc.start(upstream.base_url, key=run.KEY, port=port, sets=("flow_detail=0",), prefix=prefix)
    target = run.Target(name, port, None, name not in SCRIPTS, name != "plain")
    try:
        asyncio.run(run.sequential(target, f"bench:long:{SHORT}", 3, True))  # warm-up: imports, first connections
        pid = proxy.proc.pid
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        asyncio.run(run.sequential(target, f"bench:long:{SHORT}", streams, True))
        short, _ = _dump(pid, out)
        asyncio.run(run.sequential(target, f"bench:long:{LONG}", streams, True))
        long_, path = _dump(pid, out)
    finally:
        proxy.stop(60)
    per_chunk = (long_ - short) / (streams * (LONG - SHORT))
    per_stream = short / streams - SHORT * per_chunk
    print(f"  {name:11s} {per_chunk / 1e3:8.1f} k instructions per chunk, {per_stream / 1e6:6.2f} M per stream "
          f"(apart from its chunks), {short / streams / 1e6:6.2f} M per {SHORT}-chunk stream", flush=True)
    if annotate:
        res = subprocess.run(["callgrind_annotate", "--inclusive=no", str(path)], capture_output=True, text=True)
        lines = [ln for ln in res.stdout.splitlines() if re.match(r"\s*[\d,]+ \(", ln)]
        for ln in lines[1:annotate + 1]:
            print("     " + ln.replace(str(ROOT) + "/", "")[:170])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="*", default=["plain", "mimo2codex"])
    ap.add_argument("--framing", choices=("mimo", "other"), default="mimo")
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--annotate", type=int, default=0, metavar="N")
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
                measure(name, upstream, args.streams, args.annotate, Path(args.keep or tmp))
    finally:
        upstream.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
