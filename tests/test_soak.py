"""Soak: a few thousand mixed requests with fault injection through one real mitmdump.

Bounded: at most REQUESTS requests or SECONDS of wall time, local only. The mix has plain and
reasoning streams, tool calls, non-stream requests, upstream resets and clean cuts, error objects
mid-stream, a 429 answered by the proxy's retry, 503 storms, stalls ended by the idle watchdog
(1 s here), finish_reason length, invalid JSON, and clients hanging up mid-stream.

Checked: every answer is well-formed and the one its scenario calls for (0 hangs: every call has
a deadline), nothing is left in flight or half-done upstream afterwards, no asyncio task leaks,
no traceback is logged, and the proxy's RSS grows by less than RSS_GROWTH_MB between the end of
the warm-up and the end of the run.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from mimo2codex import proxyproc
from mimo2codex.fakes.mimo import FakeMimo
from tests.support import faults as F

pytestmark = pytest.mark.e2e

REQUESTS = 2500
SECONDS = 25.0
WARMUP = 300
MIN_DONE = 800  # even on a slow machine the bound in time must still leave a real soak
RSS_GROWTH_MB = 10
WORKERS = 12

TOOLS = [{"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {"command": {"type": "array"}}}}]

# scenario: (weight, upstream reply spec or None, expected (kind, code))
SCENARIOS = {
    "text": (30, {"text": "soak text answer", "reasoning": "some thinking"}, ("completed", "")),
    "tools": (12, {"tool_calls": [{"name": "shell", "arguments": {"command": ["ls", "-la"]}}]}, ("completed", "")),
    "nonstream": (10, {"text": "whole answer"}, ("completed", "")),
    "length": (4, {"text": "cut by the token limit", "finish": "length"}, ("incomplete", "max_output_tokens")),
    "rst": (5, {"text": "reset midway through", "cut_after": 3, "cut_mode": "rst"}, ("failed", "server_error")),
    "fin": (5, {"text": "closed midway through", "cut_after": 3, "cut_mode": "fin"}, ("failed", "server_error")),
    "miderr": (5, {"text": "error midway", "mid_error": {"after": 3, "status": 500}}, ("failed", "server_error")),
    "retry429": (3, None, ("completed", "")),
    "storm503": (2, {"error": {"status": 503}}, ("failed", "server_is_overloaded")),
    "stall": (2, {"text": "stalls", "stall_after": 2}, ("failed", "server_error")),
    "badjson": (5, None, ("http", "400")),
    "hangup": (5, {"text_chunks": 200, "chunk_delay": 0.005}, None),
}


class SoakFake(FakeMimo):
    """The strict fake, answering by the scenario named in the last user message."""

    def __init__(self) -> None:
        super().__init__(keys=("sk-test",))
        self.attempts: Counter = Counter()

    def _next_spec(self, turn):
        text = turn.last_user_text()
        scenario = text.split(":")[1]
        if scenario == "retry429":
            self.attempts[text] += 1
            return ({"error": {"status": 429, "retry_after": 0.1}} if self.attempts[text] == 1 else {"text": "after retry"}), True
        return dict(SCENARIOS[scenario][1]), True


def _hang_up(port: int, body: dict) -> None:
    raw = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                  % (len(raw), raw))
        got = b""
        while len(got) < 2000:
            data = s.recv(65536)
            if not data:
                raise AssertionError(f"proxy closed before the client hung up: {got[:200]!r}")
            got += data


def _one(port: int, i: int, scenario: str) -> tuple[str, object]:
    text = f"soak:{scenario}:{i}"
    if scenario == "badjson":
        a = F.call(port, b'{"model": "mimo-v2.6-pro", "input": [', timeout=15)
        return scenario, F.check_answer(a)[:2]
    body = F.responses_body(text, stream=scenario != "nonstream")
    if scenario == "tools":
        body["tools"] = TOOLS
    if scenario == "hangup":
        _hang_up(port, body)
        return scenario, None
    a = F.call(port, body, timeout=15)
    got = F.check_answer(a)
    if got[0] == "completed" and scenario in ("text", "nonstream"):
        assert F.output_text(a) == SCENARIOS[scenario][1]["text"], (scenario, F.output_text(a))
    return scenario, got[:2]


def test_soak(tmp_path):
    fake = SoakFake().start()
    log_path = tmp_path / "proxy.log"
    proxy = proxyproc.start(fake.base_url, sets=("mimo_stream_idle_timeout=1", "mimo_stats=true"), log_path=log_path)
    rng = random.Random(1234)
    names = list(SCENARIOS)
    weights = [SCENARIOS[n][0] for n in names]
    plan = rng.choices(names, weights, k=REQUESTS)
    results: Counter = Counter()
    wrong: list = []
    rss: dict[str, int] = {}
    stop = threading.Event()
    try:
        F.call(proxy.port, path="/healthz", method="GET")
        rss["idle"] = F.stats(proxy.port)["rss_kb"]
        baseline_tasks = F.wait_idle(proxy.port)["tasks"]
        start = time.monotonic()
        done = 0

        def run(i: int):
            if stop.is_set() or time.monotonic() - start > SECONDS:
                stop.set()
                return None
            return _one(proxy.port, i, plan[i])

        with ThreadPoolExecutor(WORKERS) as pool:
            for i, r in enumerate(pool.map(run, range(REQUESTS))):
                if r is None:
                    continue
                done += 1
                scenario, got = r
                expected = SCENARIOS[scenario][2]
                results[scenario] += 1
                if expected is not None and got != expected:
                    wrong.append((i, scenario, got))
                if done == WARMUP:
                    rss["warm"] = F.stats(proxy.port)["rss_kb"]
        elapsed = time.monotonic() - start
        assert fake.wait_until(lambda: all(r.done for r in fake.chat_requests), 10), "upstream requests still running"
        end = F.wait_idle(proxy.port, timeout=10, tasks=baseline_tasks)
        rss["end"] = end["rss_kb"]
        print(f"\nsoak: {done} requests in {elapsed:.1f}s ({done / elapsed:.0f}/s), {len(fake.chat_requests)} upstream; "
              f"RSS idle {rss['idle'] / 1024:.1f} MB, after warm-up {rss.get('warm', 0) / 1024:.1f} MB, "
              f"end {rss['end'] / 1024:.1f} MB; {dict(results)}")
        assert not wrong, f"{len(wrong)} unexpected answers, e.g. {wrong[:5]}"
        assert done >= MIN_DONE, f"only {done} requests in {SECONDS}s"
        assert (end["turns"], end["streams"], end["watched"], end["relayed"]) == (0, 0, 0, 0), end
        assert end["tasks"] <= baseline_tasks, f"asyncio tasks leaked: {end} vs {baseline_tasks}"
        assert (rss["end"] - rss["warm"]) / 1024 < RSS_GROWTH_MB, rss
        cancelled = sum(1 for r in fake.chat_requests if r.cancelled)
        assert cancelled >= results["hangup"] + results["stall"], "hang-ups and stalls must close the upstream request"
    finally:
        stop.set()
        proxy.stop()
        fake.stop()
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log and "crashed" not in log, log[-3000:]
