"""mitmproxy's listener (addon/backlog.py) and the relay's queue a burst of connections, behaviourally:
with nobody accepting (the proxy stopped, or the relay's event loop busy), the kernel completes
handshakes only up to the listen queue's length."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import time

import pytest

from addon import relay
from mimo2codex import proxyproc
from mimo2codex.fakes.mimo import FakeMimo
from tests.support import faults as F

BURST = 300  # over asyncio's default queue of 100, under the raised one


def completed_handshakes(port: int) -> int:
    socks = []
    try:
        for _ in range(BURST):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        deadline = time.monotonic() + 3
        done: set[int] = set()
        while time.monotonic() < deadline and len(done) < BURST:
            _, writable, _ = select.select([], [s for s in socks if s.fileno() not in done], [], 0.2)
            done |= {s.fileno() for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0}
        return len(done)
    finally:
        for s in socks:
            s.close()


def somaxconn() -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 4096


def test_a_burst_of_connections_waits_in_the_queue_instead_of_being_dropped():
    expected = min(BURST, somaxconn() + 1)  # the kernel caps any listen queue at somaxconn
    if expected <= 101:
        pytest.skip(f"net.core.somaxconn is {somaxconn()}: no queue here can be longer than asyncio's default")
    with FakeMimo(keys=("sk-test",)).start() as fake:
        with proxyproc.start(fake.base_url) as px:
            # mitmproxy 12 listens before the script's `running` hook: one answered turn says it ran.
            fake.queue({"text": "up"})
            assert F.output_text(F.call(px.port, F.responses_body())) == "up"
            os.kill(px.proc.pid, signal.SIGSTOP)  # nothing accepted: only the kernel's queue holds them
            try:
                queued = completed_handshakes(px.port)
            finally:
                os.kill(px.proc.pid, signal.SIGCONT)
            assert queued == expected, f"{queued} of {BURST} connections completed (asyncio's default queue holds 101)"
            fake.queue({"text": "still serving"})
            a = F.call(px.port, F.responses_body())
            assert F.check_answer(a)[0] == "completed" and F.output_text(a) == "still serving"


def test_the_relay_queues_a_burst_too():
    # Every translated flow in flight connects to the relay; asyncio.start_server(sock=...) listened
    # again with its default queue of 100 whatever the socket was created with.
    expected = min(BURST, somaxconn() + 1)
    if expected <= 101:
        pytest.skip(f"net.core.somaxconn is {somaxconn()}")

    async def burst() -> int:
        saved = relay.STATE.server, relay.STATE.port, relay.STATE.sock
        relay.STATE.server = None
        relay.Relay().running()
        task = relay.STATE.server
        try:
            await asyncio.sleep(0.1)  # serving
            return completed_handshakes(relay.STATE.port)  # blocks the loop: nothing is accepted meanwhile
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            relay.STATE.sock.close()
            relay.STATE.server, relay.STATE.port, relay.STATE.sock = saved

    loop = asyncio.new_event_loop()  # not asyncio.run: it leaves no current loop for the tests after this one
    try:
        assert loop.run_until_complete(burst()) == expected
    finally:
        loop.close()
