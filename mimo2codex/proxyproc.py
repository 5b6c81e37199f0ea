"""Start and stop a real mitmdump running addon/mimo.py (used by the demo, tests and benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mimo2codex.paths import ADDON, CONFDIR, HOME as ROOT  # ROOT: mitmdump's working directory

MITMDUMP = "from mitmproxy.tools.main import mitmdump; mitmdump()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Proxy:
    proc: subprocess.Popen
    port: int
    log_path: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(upstream_base_url: str, *, key: str | None = "sk-test", key_env: str = "MIMO_API_KEY",
          port: int | None = None, rules: str = "mimo", sets: tuple[str, ...] = (), args: tuple[str, ...] = (),
          log_path: Path | None = None, env: dict | None = None, python: str = sys.executable, script: Path = ADDON,
          prefix: tuple[str, ...] = (), confdir: Path = CONFDIR) -> Proxy:
    """mitmdump -s addon/mimo.py (or `script`) in reverse mode on 127.0.0.1:<port> (free port by default).

    `prefix` runs it through a program that execs the rest (e.g. setpriv, to run as another user).
    """
    port = port or free_port()
    confdir.mkdir(parents=True, exist_ok=True)
    # mitmproxy refuses a reverse target with a path; the addon sets each request's real URL anyway.
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(upstream_base_url))
    argv = [*prefix, python, "-c", MITMDUMP, "-s", str(script), "--mode", f"reverse:{origin}@127.0.0.1:{port}",
            "--set", "connection_strategy=lazy", "--set", f"confdir={confdir}", "--set", f"mimo_rules={rules}",
            "--set", f"mimo_base_url={upstream_base_url}"]
    for s in sets:
        argv += ["--set", s]
    argv += list(args)
    child_env = {k: v for k, v in os.environ.items() if k != key_env}
    if key is not None:
        child_env[key_env] = key
    child_env.update(env or {})
    return spawn(argv, port, child_env, log_path)


def spawn(argv: list[str], port: int, env: dict, log_path: Path | None = None) -> Proxy:
    """Run a proxy command line (its own session, output to `log_path`) and wait until it listens on `port`."""
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True, cwd=str(ROOT))
    proxy = Proxy(proc, port, log_path)
    try:
        wait_port(port, proc)
    except Exception:
        proxy.stop()
        raise
    return proxy
