"""mimo2codex benchmarks: ratios against plain mitmdump, measured in one run on this machine.

    .venv/3.11/bin/python bench/run.py            # everything, mitmproxy 11 (about 10 minutes)
    .venv/3.12/bin/python bench/run.py ttfb long  # some sections, mitmproxy 12
    .venv/3.11/bin/python bench/run.py --quick    # fewer rounds (a few minutes)
    .venv/3.11/bin/python bench/run.py --peer 'node /path/to/proxy.js --port {port} --upstream {upstream}'

Sections:
  ttfb        added time to first body byte over a direct connection: mimo2codex vs plain mitmdump
  long        one 5000-chunk stream: throughput and proxy CPU per chunk, mimo2codex vs plain mitmdump
              (plus two diagnostic rows on the MiMo upstream: "translate-only", plain mitmdump + just the
              stream translator, bench/translate_only.py; "translate-general", the same with the
              translator's fast path for plain pieces switched off, bench/translate_general.py)
  concurrent  256 and 1024 concurrent streams (--streams): errors, TTFB p50/p99, throughput, proxy CPU
              per stream, RSS idle and peak, each as a ratio to plain's
  request     a Codex request of 0.1 (also as ~500 small items) / 1 / 4 (also with Chinese tool
              outputs, "zh") / 16 MB end to end: added ms and ms/MB over plain mitmdump, and the
              addon's own request hook
  profile     cProfile of the hot paths (stream translation per chunk, request translation)

Row sets: every section runs once per upstream framing (--framing, default both): "mimo" (MiMo's
chunks: explicit nulls, one HTTP chunk per event) and "other" (other providers': a delta holding
only what is set, more envelope fields, `data:` without a space, events split across reads), see
bench/fast_upstream.py. Rows, all against the same fake upstream: "direct" (the client talks to
the upstream), "plain" (mitmdump reverse proxy with streaming on, bench/passthrough.py),
"plain-buffered" (mitmdump without any addon: it holds the whole answer back), "mimo2codex"
(mitmdump -s addon/mimo.py, translating both ways) and one "peer:" row per --peer command line
(any other Responses proxy; {port}, {upstream} and {origin} are filled in). Each measurement runs
in interleaved rounds (5, or 3 with --quick); TTFB is the median of the round medians, so a noisy
neighbour hits every configuration alike; where noise can only add time (throughput, CPU, the
request hook) the best round is reported next to the median. Proxy CPU comes from
/proc/<pid>/stat. bench/instructions.py counts instructions of the hot paths instead, for a busy
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import fast_upstream  # noqa: E402
from mimo2codex import proxyproc  # noqa: E402

PY = sys.executable
HZ = os.sysconf("SC_CLK_TCK")
TARGETS = {"ttfb": 1.5, "long": 0.8, "request_ms": 100.0}
# As long as a real provider key: the proxy searches every stored body for the key (secret scrubbing),
# and a substring search takes about ten times longer for an 8-character needle than for this one.
KEY = "sk-" + "bench0key" * 5 + "abc"


# ----------------------------------------------------------------------------------------------
# Processes


class Upstream:
    def __init__(self, framing: str = "mimo") -> None:
        self.framing = framing
        self.proc = subprocess.Popen([PY, str(ROOT / "bench" / "fast_upstream.py"), "--port", "0", "--framing", framing],
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        self.base_url = line.split()[-1]
        self.port = int(self.base_url.rsplit(":", 1)[1].split("/")[0])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start_plain(upstream: Upstream, script: str | None = "passthrough.py", prefix: tuple[str, ...] = ()) -> proxyproc.Proxy:
    port = proxyproc.free_port()
    argv = [*prefix, PY, "-c", proxyproc.MITMDUMP, "--mode", f"reverse:http://127.0.0.1:{upstream.port}@127.0.0.1:{port}",
            "--set", "connection_strategy=lazy", "--set", f"confdir={proxyproc.CONFDIR}", "--set", "flow_detail=0"]
    if script:
        argv[len(prefix) + 3:len(prefix) + 3] = ["-s", str(ROOT / "bench" / script)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    p = proxyproc.Proxy(proc, port)
    proxyproc.wait_port(port, proc)
    return p


def start_m2c(upstream: Upstream, prefix: tuple[str, ...] = ()) -> proxyproc.Proxy:
    return proxyproc.start(upstream.base_url, key=KEY, sets=("flow_detail=0", "mimo_stats=true"), prefix=prefix)


def start_peer(cmd: str, upstream: Upstream) -> proxyproc.Proxy:
    """Any other Responses proxy, from a command line with {port} (where it must listen),
    {upstream} (the Chat Completions base URL, http://127.0.0.1:<port>/v1) and {origin} (the same
    without /v1) filled in; the fake key is in MIMO_API_KEY and OPENAI_API_KEY. `exec` makes the
    proxy itself the process whose CPU and RSS are read (a wrapper that forks would hide them)."""
    port = proxyproc.free_port()
    line = cmd.replace("{port}", str(port)).replace("{upstream}", upstream.base_url).replace("{origin}", upstream.base_url[:-3])
    env = dict(os.environ, MIMO_API_KEY=KEY, OPENAI_API_KEY=KEY)
    proc = subprocess.Popen(["/bin/sh", "-c", "exec " + line], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    p = proxyproc.Proxy(proc, port)
    try:
        proxyproc.wait_port(port, proc, timeout=60)
    except Exception:
        p.stop()
        raise
    return p


def is_peer(name: str) -> bool:
    return name.startswith("peer:")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def listen_drops() -> int:
    """The kernel's count of connections dropped because a listen queue was full (all sockets)."""
    try:
        lines = [ln.split() for ln in open("/proc/net/netstat") if ln.startswith("TcpExt:")]
        return int(dict(zip(lines[0], lines[1]))["ListenDrops"])
    except (OSError, IndexError, KeyError, ValueError):
        return -1


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ----------------------------------------------------------------------------------------------
# Requests


def chat_body(marker: str) -> bytes:
    return json.dumps({"model": "mimo-v2.6-pro", "stream": True, "messages": [{"role": "user", "content": marker}]}).encode()


def responses_body(marker: str) -> bytes:
    return json.dumps({"model": "mimo-v2.6-pro", "stream": True, "store": False,
                       "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": marker}]}]}).encode()


class Target:
    """One configuration: where to send what, and how to tell a complete answer."""

    def __init__(self, name: str, port: int, pid: int | None, responses: bool, answers_responses: bool | None = None) -> None:
        self.name, self.port, self.pid, self.responses = name, port, pid, responses
        self.answers_responses = responses if answers_responses is None else answers_responses
        self.idle_rss = rss_mb(pid) if pid else 0.0

    def request(self, marker: str, body: bytes | None = None) -> bytes:
        path = "/v1/responses" if self.responses else "/v1/chat/completions"
        body = body if body is not None else (responses_body(marker) if self.responses else chat_body(marker))
        return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode() + body

    def ok(self, tail: bytes) -> bool:
        return (b"response.completed" in tail) if self.answers_responses else (b"[DONE]" in tail)


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> tuple[float, float, int, bytes]:
    """(seconds to the first body byte, seconds to the end, body bytes, last bytes) for one request."""
    t0 = time.perf_counter()
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    chunked = b"chunked" in head.lower()
    length = None
    if not chunked:
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
    first = None
    n = 0
    tail = b""
    while True:
        data = await reader.read(262144)
        if not data:
            raise ConnectionError("closed mid-answer")
        if first is None:
            first = time.perf_counter()
        n += len(data)
        tail = (tail + data)[-65536:]
        if chunked and tail.endswith(b"\r\n0\r\n\r\n"):
            break
        if length is not None and n >= length:
            break
    return first - t0, time.perf_counter() - t0, n, tail


async def sequential(target: Target, marker: str, count: int, keepalive: bool, body: bytes | None = None) -> list[tuple]:
    out = []
    conn = None
    req = target.request(marker, body)
    for _ in range(count):
        if conn is None:
            conn = await asyncio.open_connection("127.0.0.1", target.port)
        ttfb, total, n, tail = await exchange(*conn, req)
        if not target.ok(tail):
            raise RuntimeError(f"{target.name}: bad answer {tail[-300:]!r}")
        out.append((ttfb, total, n))
        if not keepalive:
            conn[1].close()
            conn = None
    if conn:
        conn[1].close()
    return out


def med(values) -> float:
    return statistics.median(values)


def rounds(targets: list[Target], n_rounds: int, measure) -> dict[str, list]:
    """measure(target) per target, n_rounds times, the order rotated every round."""
    results: dict[str, list] = {t.name: [] for t in targets}
    for r in range(n_rounds):
        order = targets[r % len(targets):] + targets[:r % len(targets)]
        for t in order:
            results[t.name].append(measure(t))
    return results


def show(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 90 - len(title)), flush=True)


# ----------------------------------------------------------------------------------------------
# Sections


def bench_ttfb(targets: list[Target], n_rounds: int, count: int) -> dict:
    show(f"ttfb: tiny streams, {count} per round, {n_rounds} rounds (ms, median of round medians)")
    targets = [t for t in targets if not t.name.startswith("translate-")]
    summary = {}
    for keepalive in (True, False):
        res = rounds(targets, n_rounds, lambda t: asyncio.run(sequential(t, "bench:tiny", count, keepalive)))
        per_round = {name: [med([x[0] for x in rnd]) * 1000 for rnd in runs] for name, runs in res.items()}
        row = {name: med(v) for name, v in per_round.items()}
        best = {name: min(v) for name, v in per_round.items()}
        label = "keep-alive" if keepalive else "new connection per request"
        print(f"  {label}:")
        for name, v in row.items():
            print(f"    {name:18s} TTFB {v:7.3f} ms (best round {best[name]:7.3f})   added over direct {v - row['direct']:7.3f} ms"
                  f"  = {(v - row['direct']) / max(1e-9, row['plain'] - row['direct']):5.2f}x plain's")
        ratio = (row["mimo2codex"] - row["direct"]) / max(1e-9, row["plain"] - row["direct"])
        ratio_best = (best["mimo2codex"] - best["direct"]) / max(1e-9, best["plain"] - best["direct"])
        print(f"    ratio added TTFB mimo2codex / plain mitmdump = {ratio:.2f} (best rounds: {ratio_best:.2f})"
              f"  (target <= {TARGETS['ttfb']})")
        summary[label] = (row, ratio)
    return summary


def bench_long(targets: list[Target], n_rounds: int, chunks: int, per_round: int) -> dict:
    show(f"long: one stream of {chunks} chunks, {per_round} per round, {n_rounds} rounds")
    targets = [t for t in targets if t.name != "plain-buffered"]

    def measure(t: Target):
        c0 = cpu_seconds(t.pid) if t.pid else 0.0
        runs = asyncio.run(sequential(t, f"bench:long:{chunks}", per_round, True))
        c1 = cpu_seconds(t.pid) if t.pid else 0.0
        return med([x[1] for x in runs]), (c1 - c0) / per_round, runs[0][2]

    res = rounds(targets, n_rounds, measure)
    # Noise from other processes only ever adds time: the best round is the steadiest estimate
    # on a shared machine; the median is printed alongside.
    row, medians = {}, {}
    for name, runs in res.items():
        total, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        row[name] = (total, cpu)
        medians[name] = med([r[0] for r in runs])
        cpu_s = f"proxy CPU {cpu * 1000:7.1f} ms = {cpu / chunks * 1e6:5.1f} µs/chunk" if name != "direct" else ""
        print(f"  {name:18s} {total * 1000:8.1f} ms (median {medians[name] * 1000:6.1f})  {chunks / total:9.0f} chunks/s  "
              f"{runs[0][2] / 1e6:5.2f} MB to client  {cpu_s}")
    for name in row:
        if name not in ("direct", "plain"):
            print(f"  throughput {name} / plain: best rounds {row['plain'][0] / row[name][0]:.2f}, "
                  f"median rounds {medians['plain'] / medians[name]:.2f}")
    ratio = row["plain"][0] / row["mimo2codex"][0]
    cpu_ratio = row["plain"][1] / max(1e-9, row["mimo2codex"][1])
    if "translate-only" in row:
        per = lambda name: (row[name][1] - row["plain"][1]) / chunks * 1e6  # noqa: E731
        print(f"  added proxy CPU per chunk over plain: stream translation alone {per('translate-only'):.1f} µs, "
              f"all of mimo2codex {per('mimo2codex'):.1f} µs, stream translation without its fast path "
              f"(bench/translate_general.py) {per('translate-general'):.1f} µs")
        print(f"  throughput / plain: translate-only {row['plain'][0] / row['translate-only'][0]:.2f}, "
              f"translate-general {row['plain'][0] / row['translate-general'][0]:.2f}")
    print(f"  throughput mimo2codex / plain mitmdump = {ratio:.2f} (best rounds)  (target >= {TARGETS['long']});"
          f" by proxy CPU per stream: {cpu_ratio:.2f}")
    return {"row": row, "ratio": ratio, "cpu_ratio": cpu_ratio}


def bench_paced(targets: list[Target], n_rounds: int, streams: int, chunks: int) -> dict:
    """Proxy CPU per chunk when every read holds one chunk, as with a provider generating tokens.

    `long` and `concurrent` get their chunks written all at once, so a proxy that passes on a whole
    read at a time (mimo2codex's relay) pays its per-chunk cost once per read there; here it pays it
    per event, as plain mitmdump always does."""
    show(f"paced: {streams} streams of {chunks} chunks, {fast_upstream.PACE * 1000:g} ms apart, at once")
    targets = [t for t in targets if t.name not in ("direct", "plain-buffered") and not t.name.startswith("translate-")]

    def measure(t: Target):
        async def run_all():
            async def one():
                reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
                try:
                    return await asyncio.wait_for(exchange(reader, writer, t.request(f"bench:paced:{chunks}")), 60)
                finally:
                    writer.close()
            return await asyncio.gather(*[one() for _ in range(streams)])

        c0 = cpu_seconds(t.pid)
        results = asyncio.run(run_all())
        bad = sum(not t.ok(r[3]) for r in results)
        return (cpu_seconds(t.pid) - c0) / (streams * chunks), bad

    res = rounds(targets, n_rounds, measure)
    row = {name: min(r[0] for r in runs) for name, runs in res.items()}
    for name, runs in res.items():
        print(f"  {name:18s} proxy CPU {row[name] * 1e6:5.1f} µs/chunk (median {med([r[0] for r in runs]) * 1e6:5.1f})"
              f"  bad answers {sum(r[1] for r in runs)}")
    for name in row:
        if name != "plain":
            print(f"  CPU per chunk plain / {name} = {row['plain'] / max(1e-12, row[name]):.2f} (best rounds;"
                  f" the throughput ratio when the proxy is the bottleneck and reads hold one chunk)")
    return row


def bench_concurrent(targets: list[Target], streams: int, chunks: int) -> dict:
    show(f"concurrent: {streams} streams of {chunks} chunks at once (loopback, one client process)")
    out = {}
    for t in targets:
        if t.name in ("direct", "plain-buffered") or t.name.startswith("translate-"):
            continue
        idle = t.idle_rss
        peak = [idle]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb(t.pid))
                time.sleep(0.02)

        th = threading.Thread(target=sample, daemon=True)
        th.start()

        async def run_all():
            async def one():
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", t.port), 30)
                    try:
                        ttfb, total, n, tail = await asyncio.wait_for(exchange(reader, writer, t.request(f"bench:long:{chunks}")), 60)
                    finally:
                        writer.close()
                    return (ttfb, total) if t.ok(tail) else "bad answer"
                except Exception as e:  # counted, not raised: the figure is the error count
                    return repr(e)

            t0 = time.perf_counter()
            results = await asyncio.gather(*[one() for _ in range(streams)])
            return results, time.perf_counter() - t0

        cpu0, drops0 = cpu_seconds(t.pid), listen_drops()
        results, wall = asyncio.run(run_all())
        cpu, drops = cpu_seconds(t.pid) - cpu0, listen_drops() - drops0
        stop.set()
        th.join()
        ok = [r for r in results if isinstance(r, tuple)]
        errors = [r for r in results if not isinstance(r, tuple)]
        ttfbs = sorted(r[0] * 1000 for r in ok)
        p = lambda q: ttfbs[min(len(ttfbs) - 1, int(q * len(ttfbs)))] if ttfbs else float("nan")  # noqa: E731
        time.sleep(0.5)
        after = rss_mb(t.pid)
        print(f"  {t.name:18s} errors {len(errors)}/{streams}  TTFB p50 {p(0.5):7.1f} ms  p99 {p(0.99):7.1f} ms  "
              f"wall {wall:5.2f} s ({streams * chunks / wall:6.0f} chunks/s)  proxy CPU {cpu / streams * 1000:5.2f} ms/stream  "
              f"RSS idle (after warm-up) {idle:5.1f} MB, peak under load {peak[0]:5.1f} MB, after {after:5.1f} MB")
        if drops:  # mitmproxy listens with asyncio's default backlog of 100: a client's SYN is retried after 1 s, 3 s...
            print(f"    {drops} connection attempts dropped by a full listen queue (kernel ListenDrops, any socket)")
        if errors:
            print(f"    first errors: {errors[:3]}")
        out[t.name] = {"errors": len(errors), "p50": p(0.5), "p99": p(0.99), "idle": idle, "peak": peak[0], "wall": wall, "cpu": cpu}
    if "plain" in out:
        base = out["plain"]
        for name, r in out.items():
            if name != "plain":
                print(f"  {name} / plain: TTFB p99 {r['p99'] / base['p99']:.2f}x, RSS peak {r['peak'] / base['peak']:.2f}x, "
                      f"throughput {base['wall'] / r['wall']:.2f}x, proxy CPU {r['cpu'] / max(1e-9, base['cpu']):.2f}x")
    return out


def codex_request(size: int, items: int | None = None, zh: bool = False) -> dict:
    """A Codex-shaped request of about `size` bytes: the real instructions and tools of a Codex
    0.16x session, then turns of user message, sealed reasoning, exec_command call, its output and
    an assistant message, 5 items per turn (4 MB = 500 items; `items` sets the count instead, so
    0.1 MB can be ~500 small items). `zh`: the tool outputs' comments are Chinese, as a MiMo user's
    files often are (raw UTF-8 in every output)."""
    from mimo2codex.translate import envelope

    base = json.load(open(ROOT / "tests" / "fixtures" / "codex" / "05_parallel_calls_followup.json"))
    base = base.get("body", base)
    body = {k: v for k, v in base.items() if k != "input"}
    body["model"] = "mimo-v2.6-pro"
    body["input"] = [i for i in base["input"] if i.get("role") in ("developer", "system")][:1]
    turns = max(1, round(items / 5) if items else round(100 * size / 4_000_000))
    filler = len(json.dumps(body))
    per_turn = max(200, (size - filler) // turns)
    out_len = max(20, per_turn - 1800)
    line = "def function_%d(arg):  # " + ("工具调用返回的一行源代码 — 已检查" if zh else "a line of source code returned by a tool call") + "\n"
    for t in range(turns):
        output = "".join(line % i for i in range(out_len // 70 + 1))[:out_len]
        call_id = f"call_{t:06d}"
        body["input"] += [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"Turn {t}: look at file {t}.py and fix it."}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": f"I should read file {t}."}],
             "encrypted_content": envelope.seal(f"Thinking about turn {t}: read the file first, then patch it. " * (1 if items else 8))},
            {"type": "function_call", "name": "exec_command", "call_id": call_id,
             "arguments": json.dumps({"cmd": f"sed -n 1,400p src/{t}.py", "workdir": "/work/project", "yield_time_ms": 1000})},
            {"type": "function_call_output", "call_id": call_id, "output": output},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": f"File {t}.py read; next I patch it."}]},
        ]
    return body


def codex_bytes(body: dict) -> bytes:
    """A request body as Codex writes it (serde_json: compact, non-ASCII as raw UTF-8)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


@contextlib.contextmanager
def request_hook(raw: bytes):
    """The addon's request hook in-process (taddons): yields (a fresh flow carrying `raw`, the hook)."""
    from mitmproxy import http
    from mitmproxy.proxy import mode_specs
    from mitmproxy.test import taddons, tflow, tutils

    from addon.mimo import MimoTranslate

    os.environ.setdefault("MIMO_API_KEY", KEY)
    addon = MimoTranslate()

    def flow():
        f = tflow.tflow(req=tutils.treq(method=b"POST", path=b"/v1/responses", content=raw,
                                        headers=http.Headers(host="127.0.0.1:8788", content_type="application/json")))
        f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("reverse:http://127.0.0.1:1")
        return f

    def hook(f) -> None:
        addon.request(f)
        assert f.response is None, f.response.content[:300]
        addon.turns.clear()
        addon.flow_routes.clear()

    with taddons.context(addon) as tctx:
        tctx.configure(addon, mimo_base_url="http://127.0.0.1:1/v1")
        yield flow, hook


def addon_request_ms(raw: bytes, repeat: int) -> tuple[float, float]:
    """Best and median ms of the addon's request hook (parse, to_chat, encode, metadata) on `raw`."""
    times = []
    with request_hook(raw) as (flow, hook):
        for _ in range(repeat):
            f = flow()
            t0 = time.perf_counter()
            hook(f)
            times.append(time.perf_counter() - t0)
    return min(times) * 1000, med(times) * 1000


def bench_request(targets: list[Target], sizes: list[tuple[int, int | None, bool]], repeat: int) -> dict:
    show("request: a Codex request end to end, and the addon's request hook alone (ms; 4 MB = 500 items, ~1M tokens)")
    from mimo2codex.translate import request as request_mod, rules

    r = rules.load("mimo")
    rows = [t for t in targets if t.name in ("direct", "plain", "mimo2codex") or is_peer(t.name)]
    out = {}
    print("  request sent to answer complete (a tiny answer), best of %d interleaved; 'added' is over plain mitmdump, which "
          "carries the translated Chat request (mitmdump's own cost is plain - direct)" % repeat)
    print(f"  {'size':>10s} {'items':>6s} {'hook':>7s} {'(med)':>7s} " + " ".join(f"{t.name[:14]:>14s}" for t in rows)
          + "   added by mimo2codex: ms, ms/MB" + "".join(f"; {t.name}" for t in rows if is_peer(t.name)))
    for size, items, zh in sizes:
        body = codex_request(size, items, zh)
        raw = codex_bytes(body)
        raw_marked = raw[:-1] + b',"metadata":{"m":"bench:tiny"}}'
        ms, ms_med = addon_request_ms(raw, repeat)
        chat, _ = request_mod.to_chat(body, r)
        # What plain mitmdump carries is what mimo2codex sends upstream: the same upload on the last hop.
        chat_raw = json.dumps(chat, ensure_ascii=False, separators=(",", ":")).encode()[:-1] + b', "m": "bench:tiny"}'
        e2e = {}
        for rnd in range(repeat):  # interleaved: one request per configuration per round
            for t in rows[rnd % len(rows):] + rows[:rnd % len(rows)]:
                payload = raw_marked if t.responses else chat_raw
                ttfb = asyncio.run(sequential(t, "bench:tiny", 1, True, payload))[0][1]
                e2e[t.name] = min(e2e.get(t.name, float("inf")), ttfb * 1000)
        mb = len(raw) / 1e6
        added = {t.name: e2e[t.name] - e2e["plain"] for t in rows if t.name not in ("direct", "plain")}
        print(f"  {mb:6.2f}MB{' zh' if zh else '   '} {len(body['input']):6d} {ms:6.1f}ms {ms_med:6.1f}ms " + " ".join(f"{e2e[t.name]:11.1f} ms" for t in rows)
              + "   " + "; ".join(f"{added[n]:+.1f} ms, {added[n] / mb:+.1f} ms/MB" for n in added))
        out[(size, items, zh)] = {"mb": mb, "hook": ms, "e2e": e2e, "added": added}
    return out


def bench_profile(chunks: int, size: int, framing: str = "mimo") -> None:
    show(f"profile: stream translation ({chunks} chunks, {framing} framing) and request translation ({size / 1e6:.0f} MB), top by own time")
    from bench.fast_upstream import http_chunks

    from mimo2codex.translate import request as request_mod, rules
    from mimo2codex.translate.stream import ResponsesStream

    r = rules.load("mimo")
    body = codex_request(size)
    _, turn = request_mod.to_chat(responses_body_dict(), r)
    pieces = http_chunks(chunks, framing)

    def stream_run(fast: bool = True):
        sm = ResponsesStream(turn, r)
        sm._fast = fast
        for p in pieces:
            sm.feed(p)
        sm.finish()

    for fast, label in ((True, ""), (False, ", fast path off (the general way for every chunk)")):
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            stream_run(fast)
            best = min(best, time.perf_counter() - t0)
        print(f"  stream{label}: {best / chunks * 1e6:.2f} µs per event ({len(pieces)} HTTP chunks) without the profiler "
              "(best of 5, out of the proxy)")
    raw = codex_bytes(body)

    def request_run() -> None:
        parsed, literals = request_mod.loads(raw)
        request_mod.encode(request_mod.to_chat(parsed, r)[0], literals)

    for name, fn in (("stream", stream_run), ("request", request_run)):
        prof = cProfile.Profile()
        prof.runcall(fn)
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(12)
        lines = [ln for ln in s.getvalue().splitlines() if ln.strip()]
        start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
        print(f"  -- {name}")
        for ln in lines[start:start + 13]:
            print("   " + ln.replace(str(ROOT) + "/", "")[:150])


def responses_body_dict() -> dict:
    return json.loads(responses_body("bench:tiny"))


# ----------------------------------------------------------------------------------------------


def run_set(framing: str, args, n_rounds: int) -> None:
    """Every section against one upstream: all configurations started, measured in the same rounds."""
    upstream = Upstream(framing)
    diagnostics = framing == "mimo"  # translate-only / translate-general: where the stream time goes
    procs: list[tuple[str, proxyproc.Proxy, bool, bool]] = []
    try:
        procs += [("plain", start_plain(upstream), False, False), ("plain-buffered", start_plain(upstream, None), False, False),
                  ("mimo2codex", start_m2c(upstream), True, True)]
        if diagnostics:
            procs += [("translate-only", start_plain(upstream, "translate_only.py"), False, True),
                      ("translate-general", start_plain(upstream, "translate_general.py"), False, True)]
        for i, cmd in enumerate(args.peer, 1):
            procs.append((f"peer:{cmd.split()[0].rsplit('/', 1)[-1]}#{i}", start_peer(cmd, upstream), True, True))
        targets = [Target("direct", upstream.port, None, False)]
        for name, p, responses, answers in procs:
            t = Target(name, p.port, p.proc.pid, responses, answers)
            asyncio.run(sequential(t, "bench:tiny", 20, True))  # warm-up: imports, first connections
            t.idle_rss = rss_mb(t.pid)
            targets.append(t)
        print(f"\n#### upstream framing: {framing} ({FRAMINGS[framing]}); rows: " + ", ".join(t.name for t in targets), flush=True)
        if "ttfb" in args.sections:
            bench_ttfb(targets, n_rounds, 60 if args.quick else 150)
        if "long" in args.sections:
            bench_long(targets, n_rounds + 2, 5000, 2)
        if "paced" in args.sections:
            bench_paced(targets, n_rounds, 8, 1000)
        if "concurrent" in args.sections:
            for streams in args.streams:
                bench_concurrent(targets, streams, 200)
        if "request" in args.sections:
            # Request cost does not depend on the answer's framing: the second set only repeats the two shapes the issue names.
            sizes = [(100_000, None, False), (100_000, 500, False), (1_000_000, None, False), (4_000_000, None, False),
                     (4_000_000, None, True), (16_000_000, None, False)]
            bench_request(targets, sizes if framing == "mimo" else [(100_000, 500, False), (4_000_000, None, False)],
                          5 if args.quick else 9)
        if "profile" in args.sections:
            bench_profile(5000, 4_000_000, framing)
    finally:
        for _, p, _, _ in procs:
            p.stop()
        upstream.stop()


SECTIONS = ("ttfb", "long", "paced", "concurrent", "request", "profile")
FRAMINGS = {"mimo": "MiMo's: explicit nulls, one HTTP chunk per event",
            "other": "other providers': delta without nulls, more envelope fields, 'data:' without a space, events split across reads"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="mimo2codex benchmarks (ratios against plain mitmdump, one run)")
    ap.add_argument("sections", nargs="*", default=list(SECTIONS), help=f"any of: {' '.join(SECTIONS)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="fewer rounds and repetitions")
    ap.add_argument("--peer", action="append", default=[], metavar="'CMD {port} {upstream}'",
                    help="another Responses proxy as a row in every section, started by this shell command line with "
                         "{port} (where it must listen) and {upstream} (Chat Completions base URL) filled in; repeatable")
    ap.add_argument("--framing", default="mimo,other", help="upstream row sets to run: mimo, other or both (default)")
    ap.add_argument("--streams", default="256,1024", help="concurrent section sizes (default 256,1024)")
    args = ap.parse_args(argv)
    # A misspelt section or framing would start every process and then measure nothing.
    if unknown := [x for x in args.sections if x not in SECTIONS] + [f for f in args.framing.split(",") if f not in FRAMINGS]:
        ap.error(f"unknown section or framing: {', '.join(unknown)} (sections: {' '.join(SECTIONS)}; framings: {','.join(FRAMINGS)})")
    try:
        args.streams = [int(n) for n in args.streams.split(",")]
    except ValueError:
        ap.error(f"--streams takes numbers separated by commas, got {args.streams!r}")
    n_rounds = 3 if args.quick else 5
    import mitmproxy.version

    print(f"mimo2codex bench: Python {sys.version.split()[0]}, mitmproxy {mitmproxy.version.VERSION}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for framing in args.framing.split(","):
        run_set(framing, args, n_rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
