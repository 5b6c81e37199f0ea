"""mitmproxy's own listeners take a burst of connections: their listen queue goes from asyncio's
default of 100 to `BACKLOG`, the relay's too.

A client that does not keep its connections alive opens one per turn; at 256 streams opened at once
the kernel dropped the connection attempts over 100 (`ListenDrops`, bench/run.py), and each dropped
one cost its client a 1 s (then 3 s) retransmit before mitmproxy saw it. Linux takes a second
`listen()` on a listening socket as its new queue length (capped by net.core.somaxconn).
"""

from __future__ import annotations

import logging
import socket

from mitmproxy import ctx

# The relay's listener takes every translated flow in flight at once (1024 streams: 1024 connects in a
# burst). asyncio's default backlog of 100 overflowed, and the kernel then dropped handshakes it had
# already completed for mitmproxy, which saw the request's connection reset before any answer.
BACKLOG = 4096  # the kernel caps it at net.core.somaxconn

log = logging.getLogger("mimo2codex")


def listening_sockets() -> list:
    """The sockets mitmproxy listens on (private structure of its proxyserver: none if it moved)."""
    found = []
    for instance in getattr(ctx.master.addons.get("proxyserver"), "servers", None) or []:
        for server in getattr(instance, "_servers", None) or []:
            found += [s for s in getattr(server, "sockets", None) or () if s.type == socket.SOCK_STREAM]
    return found


class Backlog:
    """Raises the listen queue of mitmproxy's TCP listeners once they are up (they are, at `running`)."""

    def running(self) -> None:
        for s in listening_sockets():
            try:
                with s.dup() as own:  # the same listening socket under a second descriptor
                    own.listen(BACKLOG)
            except OSError as e:  # the queue stays as mitmproxy made it
                log.debug("listen backlog of %s not raised: %r", s.getsockname(), e)
