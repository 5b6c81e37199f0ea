"""Drive the real OpenAI Codex CLI headless from pytest.

`ensure_codex()` installs the pinned `@openai/codex` from npm into `.cache/codex/<version>/` (once,
under a file lock, so parallel test sessions share one install; keyed by version so checkouts
pinned to different versions can share `.cache/` without reinstalling over each other). `run_codex()` runs one `codex exec` turn
against a Responses endpoint (our proxy, or `responses_server` while testing this harness) following
the headless recipe measured in `../shared/contracts/codex-responses.md` section 1, and returns what
the user saw (`--json` events, final message, exit code, error lines).

Isolation: every run gets a fresh CODEX_HOME, the provider key lives in a variable of our own whose
value is a dummy (real OPENAI_/MIMO_ keys from the caller's environment are removed), proxy
variables are dropped so 127.0.0.1 is reached directly, and the whole process tree is killed when
the run times out or leaves something behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

# The version the contract was measured on. Bump together with a re-measurement of the contract.
CODEX_VERSION = "0.171.0"

ROOT = Path(__file__).resolve().parents[2]
CACHE_ROOT = ROOT / ".cache" / "codex"
CACHE_DIR = CACHE_ROOT / CODEX_VERSION
LOCK_FILE = ROOT / ".cache" / "codex.install.lock"
# Fresh CODEX_HOMEs go here, not in /tmp: Codex refuses to create its helper PATH aliases
# (apply_patch & co. for shell use) under a temp dir and warns on every run.
HOMES_DIR = ROOT / ".cache" / "codex-homes"
NPM_TIMEOUT_S = 600

DEFAULT_MODEL = "mimo-v2.5-pro"
DUMMY_KEY = "codex-local-dummy"
# Our own variable name for the provider's env_key: a real MIMO_API_KEY in the developer's shell
# can then never be the one Codex sends.
KEY_VAR = "MIMO2CODEX_HARNESS_KEY"
PROVIDER_ID = "mimo"
# Every Codex process (and whatever it spawns) carries this variable; leftovers are found by it.
MARKER_VAR = "MIMO2CODEX_HARNESS_RUN"

_SANDBOX_FLAGS = {
    "read-only": ["-s", "read-only"],
    "workspace-write": ["-s", "workspace-write"],
    "danger-full-access": ["-s", "danger-full-access"],
    "bypass": ["--dangerously-bypass-approvals-and-sandbox"],
    None: [],  # Codex's own default for exec: read-only
}

# Dropped from the child's environment: credentials, a caller's Codex config, and proxies
# (reqwest honours HTTP(S)_PROXY; a test must talk to 127.0.0.1 directly).
_SCRUB_PREFIXES = ("OPENAI_", "MIMO_", "CODEX_", "AZURE_OPENAI")
_SCRUB_NAMES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}

# npm platform packages of @openai/codex (aliases of @openai/codex@<ver>-<plat>) and the Rust
# target triple inside them; mirrors the table in the package's bin/codex.js.
_PLATFORMS = {
    ("linux", "x86_64"): ("linux-x64", "x86_64-unknown-linux-musl"),
    ("linux", "arm64"): ("linux-arm64", "aarch64-unknown-linux-musl"),
    ("darwin", "x86_64"): ("darwin-x64", "x86_64-apple-darwin"),
    ("darwin", "arm64"): ("darwin-arm64", "aarch64-apple-darwin"),
}


class CodexUnavailable(RuntimeError):
    """Codex cannot run here (no node/npm, install failed, unsupported platform)."""


# ------------------------------------------------------------------------------------------------
# Install
# ------------------------------------------------------------------------------------------------


def _platform() -> tuple[str, str]:
    machine = platform.machine().lower()
    key = (sys.platform, {"amd64": "x86_64", "aarch64": "arm64"}.get(machine, machine))
    if key not in _PLATFORMS:
        raise CodexUnavailable(f"no @openai/codex platform package for {key[0]}/{key[1]}")
    return _PLATFORMS[key]


def entry_script(prefix: Path = CACHE_DIR) -> Path:
    return prefix / "node_modules" / "@openai" / "codex" / "bin" / "codex.js"


def native_binary(prefix: Path = CACHE_DIR) -> Path:
    suffix, triple = _platform()
    return (prefix / "node_modules" / "@openai" / f"codex-{suffix}" / "vendor" / triple / "bin"
            / "codex")


def _installed_version(prefix: Path) -> str | None:
    """Version of the installed wrapper if it AND its native platform package are complete."""
    try:
        wrapper = json.loads((entry_script(prefix).parent.parent / "package.json").read_text())
        suffix, _ = _platform()
        plat_pkg = prefix / "node_modules" / "@openai" / f"codex-{suffix}" / "package.json"
        plat = json.loads(plat_pkg.read_text())
    except (OSError, ValueError):
        return None
    if plat.get("version") != f"{wrapper.get('version')}-{suffix}":
        return None
    if not (entry_script(prefix).is_file() and os.access(native_binary(prefix), os.X_OK)):
        return None
    return wrapper.get("version")


@contextlib.contextmanager
def _install_lock():
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: no concurrent-session safety, still works alone
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)  # a concurrent session finishing its install waits here
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_ensured: dict[str, Any] = {}


def ensure_codex(version: str = CODEX_VERSION, prefix: Path | None = None) -> Path:
    """Install (if needed) and verify the pinned Codex CLI; return the `bin/codex.js` entry.

    Raises CodexUnavailable with a human-readable reason; the result (either way) is cached for the
    rest of the Python process so a broken set-up costs one attempt, not one per test.
    """
    prefix = CACHE_ROOT / version if prefix is None else prefix
    key = f"{prefix}@{version}"
    cached = _ensured.get(key)
    if isinstance(cached, Exception):
        raise cached
    if cached:
        return cached
    try:
        _ensured[key] = _ensure(version, prefix)
    except CodexUnavailable as exc:
        _ensured[key] = exc
        raise
    return _ensured[key]


def _ensure(version: str, prefix: Path) -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if not p)
        raise CodexUnavailable(f"{missing} not found on PATH (the Codex CLI tests need Node.js and npm)")
    _platform()
    if _installed_version(prefix) != version:
        with _install_lock():
            if _installed_version(prefix) != version:  # another session may have just done it
                _npm_install(npm, version, prefix)
    if _installed_version(prefix) != version:
        raise CodexUnavailable(
            f"npm installed @openai/codex into {prefix} but the native platform package "
            f"@openai/codex-{_platform()[0]} is missing or not executable "
            f"(optional dependencies omitted by npm config?)")
    entry = entry_script(prefix)
    try:
        out = subprocess.run([node, str(entry), "--version"], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL, env=_base_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CodexUnavailable(f"`codex --version` failed: {exc}") from exc
    if out.returncode != 0 or version not in out.stdout:
        raise CodexUnavailable(f"`codex --version` printed {out.stdout.strip()!r} "
                               f"(rc {out.returncode}, stderr {out.stderr.strip()[-300:]!r}), "
                               f"expected {version}")
    return entry


def _npm_install(npm: str, version: str, prefix: Path) -> None:
    prefix.mkdir(parents=True, exist_ok=True)
    cmd = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--save-exact",
           "--include=optional", "--loglevel=error", f"@openai/codex@{version}"]
    env = dict(os.environ, npm_config_update_notifier="false")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, env=env, cwd=prefix)
    except subprocess.TimeoutExpired as exc:
        raise CodexUnavailable(f"`{' '.join(cmd[1:])}` timed out after {NPM_TIMEOUT_S}s") from exc
    except OSError as exc:
        raise CodexUnavailable(f"cannot run npm: {exc}") from exc
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        tail = lines[:3] + (["..."] + lines[-1:] if len(lines) > 3 else [])
        raise CodexUnavailable(f"npm install @openai/codex@{version} failed "
                               f"(rc {proc.returncode}): " + " | ".join(tail))


_skip_reason: list[str] = []


def require_codex() -> Path:
    """ensure_codex() for tests: skip (with the reason) instead of erroring when Codex can't run."""
    import pytest

    try:
        return ensure_codex()
    except CodexUnavailable as exc:
        pytest.skip(f"Codex CLI {CODEX_VERSION} unavailable: {exc}")


# ------------------------------------------------------------------------------------------------
# Model catalog (gives the freeform apply_patch tool, contract section 1)
# ------------------------------------------------------------------------------------------------


def mimo_catalog(model: str = DEFAULT_MODEL, **overrides: Any) -> dict:
    """A minimal catalog that Codex 0.169 parses; mirrors codex-samples/model_catalog_mimo.json."""
    entry = {
        "slug": model,
        "display_name": model,
        "description": "MiMo via proxy",
        "apply_patch_tool_type": "freeform",
        "shell_type": "shell_command",
        "visibility": "list",
        "supported_in_api": True,
        "priority": 1,
        "context_window": 1000000,
        "supported_reasoning_levels": [
            {"effort": e, "description": f"{e} reasoning"} for e in ("low", "medium", "high", "xhigh")
        ],
        "default_reasoning_level": "medium",
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "supports_parallel_tool_calls": True,
        "input_modalities": ["text"],
        "supports_reasoning_summaries": True,
        "default_reasoning_summary": "none",
        "support_verbosity": False,
        "experimental_supported_tools": [],
        "base_instructions": "You are Codex, a coding agent running in the Codex CLI. "
                             "Be precise, safe and helpful.",
    }
    entry.update(overrides)
    return {"models": [entry]}


# ------------------------------------------------------------------------------------------------
# Run
# ------------------------------------------------------------------------------------------------


@dataclass
class CodexResult:
    returncode: int | None
    stdout: str
    stderr: str
    events: list[dict]
    final_message: str | None
    usage: dict | None
    error_messages: list[str]
    duration: float
    timed_out: bool = False
    argv: list[str] = field(default_factory=list)
    leftovers_killed: list[int] = field(default_factory=list)
    marker: str = ""  # value of MARKER_VAR in this run's processes (see still_running())

    def still_running(self) -> list[int]:
        """Pids of this run's processes that are still alive (should always be empty)."""
        return sorted(p for p in _marked(self.marker) if _alive(p)) if self.marker else []

    def items(self, type_: str | None = None) -> list[dict]:
        """Completed items (`item.completed`), optionally of one type (agent_message, reasoning,
        command_execution, file_change, error, ...)."""
        return [e["item"] for e in self.events
                if e.get("type") == "item.completed" and isinstance(e.get("item"), dict)
                and (type_ is None or e["item"].get("type") == type_)]

    @property
    def agent_messages(self) -> list[str]:
        return [i.get("text", "") for i in self.items("agent_message")]

    @property
    def turn_failed(self) -> bool:
        return any(e.get("type") == "turn.failed" for e in self.events)

    @property
    def reconnects(self) -> list[str]:
        """The "Reconnecting... n/N" lines Codex prints while retrying."""
        return [m for m in self.error_messages if m.startswith("Reconnecting")]

    def __str__(self) -> str:  # shown by pytest when an assert on the result fails
        tail = "\n".join(self.stderr.strip().splitlines()[-15:])
        return (f"CodexResult(rc={self.returncode}, timed_out={self.timed_out}, "
                f"{self.duration:.1f}s, final={self.final_message!r}, errors={self.error_messages!r})"
                f"\n--- stderr tail ---\n{tail}")


def _toml(value: Any) -> str:
    """Python value -> TOML literal for `-c key=value` (JSON strings are valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot express {value!r} in TOML")


def _base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(_SCRUB_PREFIXES) and k.lower() not in _SCRUB_NAMES}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env.update(extra or {})
    return env


def codex_argv(entry: Path, base_url: str, prompt: str, *, workdir: Path, model: str,
               catalog_path: Path | None, sandbox: str | None, extra_config: Iterable,
               extra_args: Iterable[str], provider_extra: Mapping[str, Any],
               ephemeral: bool, resume_last: bool, json_output: bool, home_config: bool = False) -> list[str]:
    provider = {"name": "MiMo", "base_url": base_url, "env_key": KEY_VAR, "wire_api": "responses",
                **provider_extra}
    argv = [shutil.which("node") or "node", str(entry), "exec", "--skip-git-repo-check"]
    if ephemeral:
        argv.append("--ephemeral")
    if json_output:
        argv.append("--json")
    # `exec resume` has no -C/-s of its own: keep exec-level options before the subcommand.
    argv += ["-C", str(workdir), *_SANDBOX_FLAGS[sandbox], "-m", model]
    if not home_config:  # else the provider comes from CODEX_HOME/config.toml (e.g. written by setup-codex)
        argv += ["-c", f"model_provider={PROVIDER_ID}", "-c", f"model_providers.{PROVIDER_ID}={_toml(provider)}"]
    argv += ["-c", "analytics.enabled=false", "--disable", "plugins"]
    if catalog_path is not None:
        argv += ["-c", f"model_catalog_json={_toml(str(catalog_path))}"]
    for item in extra_config:
        kv = item if isinstance(item, str) else f"{item[0]}={_toml(item[1])}"
        argv += ["-c", kv]
    argv += list(extra_args)
    if resume_last:
        argv += ["resume", "--last"]
    argv.append(prompt)
    return argv


def run_codex(
    base_url: str,
    prompt: str,
    *,
    workdir: Path | str,
    model: str = DEFAULT_MODEL,
    catalog: bool | Mapping | Path | str = False,
    sandbox: str | None = "workspace-write",
    extra_config: Iterable[str | tuple[str, Any]] = (),
    extra_args: Iterable[str] = (),
    timeout: float = 60,
    env_key_value: str = DUMMY_KEY,
    stream_max_retries: int | None = None,
    request_max_retries: int | None = None,
    stream_idle_timeout_ms: int | None = None,
    home: Path | str | None = None,
    ephemeral: bool = True,
    resume_last: bool = False,
    json_output: bool = True,
    env: Mapping[str, str] | None = None,
    home_config: bool = False,
) -> CodexResult:
    """Run `codex exec` once, headless, against `base_url` (…/v1) and return what happened.

    catalog: False (fallback metadata, no apply_patch tool), True (`mimo_catalog(model)`), a
      catalog dict, or the path of an existing catalog file (e.g. from the proxy's print-config).
    sandbox: "workspace-write" | "read-only" | "danger-full-access" | "bypass" | None (Codex default).
    stream_max_retries / request_max_retries / stream_idle_timeout_ms: provider keys; None keeps
      Codex's defaults (5 / 4 / 300 s). Lower them for failure scenarios to finish fast.
    home: a CODEX_HOME to reuse across runs (needed for `resume_last`, with ephemeral=False);
      default is a fresh temp dir removed afterwards.
    home_config: take the provider from `home`'s config.toml instead of pointing Codex at base_url.
    timeout: wall-clock seconds; the process group is then killed and `timed_out` is set.
    """
    entry = ensure_codex()
    workdir = Path(workdir).resolve()
    own_home = home is None
    if own_home:
        HOMES_DIR.mkdir(parents=True, exist_ok=True)
        home_dir = Path(tempfile.mkdtemp(prefix="home-", dir=HOMES_DIR))
    else:
        home_dir = Path(home)
    home_dir.mkdir(parents=True, exist_ok=True)
    try:
        catalog_path: Path | None = None
        if catalog is True:
            catalog = mimo_catalog(model)
        if isinstance(catalog, Mapping):
            catalog_path = home_dir / "model_catalog.json"
            catalog_path.write_text(json.dumps(catalog, indent=1))
        elif isinstance(catalog, (str, Path)):
            catalog_path = Path(catalog).resolve()
        provider_extra = {k: v for k, v in (("stream_max_retries", stream_max_retries),
                                            ("request_max_retries", request_max_retries),
                                            ("stream_idle_timeout_ms", stream_idle_timeout_ms))
                          if v is not None}
        argv = codex_argv(entry, base_url, prompt, workdir=workdir, model=model,
                          catalog_path=catalog_path, sandbox=sandbox, extra_config=extra_config,
                          extra_args=extra_args, provider_extra=provider_extra,
                          ephemeral=ephemeral, resume_last=resume_last, json_output=json_output,
                          home_config=home_config)
        marker = uuid.uuid4().hex
        child_env = _base_env({"CODEX_HOME": str(home_dir), KEY_VAR: env_key_value,
                               MARKER_VAR: marker, **(env or {})})
        return _execute(argv, workdir, child_env, timeout, marker)
    finally:
        if own_home:
            shutil.rmtree(home_dir, ignore_errors=True)


def _execute(argv: list[str], cwd: Path, env: dict[str, str], timeout: float,
             marker: str) -> CodexResult:
    start = time.monotonic()
    timed_out = False
    # stdin=/dev/null: with a pipe Codex waits for EOF and appends it to the prompt (contract 1).
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # If Codex itself already exited, a leftover grandchild was holding our pipes.
            timed_out = proc.poll() is None
            _kill_tree(proc, marker, grace=2.0)
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # a grandchild still holds the pipes
                proc.kill()
                out, err = b"", b""
    except BaseException:  # KeyboardInterrupt etc.: still leave nothing running
        _kill_tree(proc, marker, grace=0)
        proc.wait()
        raise
    duration = time.monotonic() - start
    leftovers = _kill_tree(proc, marker, grace=0.5)
    result = _parse(out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
    result.returncode = proc.returncode
    result.duration = duration
    result.timed_out = timed_out
    result.argv = argv
    result.leftovers_killed = leftovers
    result.marker = marker
    return result


def _parse(stdout: str, stderr: str) -> CodexResult:
    events: list[dict] = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if isinstance(ev, dict):
                    events.append(ev)
    final = None
    usage = None
    errors: list[str] = []
    for ev in events:
        kind = ev.get("type")
        item = ev.get("item") if isinstance(ev.get("item"), dict) else {}
        if kind == "item.completed" and item.get("type") == "agent_message":
            final = item.get("text")
        elif kind == "item.completed" and item.get("type") == "error":
            errors.append(str(item.get("message", "")))
        elif kind == "error":
            errors.append(str(ev.get("message", "")))
        elif kind == "turn.failed":
            errors.append(str((ev.get("error") or {}).get("message", "")))
        elif kind == "turn.completed":
            usage = ev.get("usage")
    if not events:  # plain (non --json) mode: stdout is the last agent message
        final = stdout.strip() or None
        errors = [ln[len("ERROR: "):] for ln in stderr.splitlines() if ln.startswith("ERROR: ")]
    return CodexResult(None, stdout, stderr, events, final, usage, errors, 0.0)


# ------------------------------------------------------------------------------------------------
# Process clean-up
# ------------------------------------------------------------------------------------------------


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # comm may contain spaces/parens: the ppid is the 2nd field after the last ')'
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _marked(marker: str) -> set[int]:
    """Processes that inherited this run's marker (catches setsid'd / re-parented ones)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    pids: set[int] = set()
    me = os.getpid()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(environ.parent.name)
            if pid != me and needle in environ.read_bytes().split(b"\0"):
                pids.add(pid)
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is "alive" for kill(0) but harmless; its parent (us or init) reaps it
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _kill_tree(proc: subprocess.Popen, marker: str, grace: float) -> list[int]:
    """SIGTERM, then SIGKILL, everything this run started: the Codex process group while Codex
    is unreaped (its pid is then still ours), its descendants, and any process carrying the run's
    marker (catches setsid'd or re-parented ones, e.g. a login shell's background job).
    Returns the pids other than Codex itself that had to be signalled."""
    have_proc = Path("/proc/self/stat").exists()

    def scan() -> set[int]:
        pids = _marked(marker) if have_proc else set()
        if proc.poll() is None and have_proc:
            pids |= _descendants(proc.pid)
        return {p for p in pids if _alive(p)}

    victims = scan()
    signalled = set(victims)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        elif not victims:
            break
        for v in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(v, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (proc.poll() is None or any(map(_alive, victims))):
            time.sleep(0.05)
        victims = scan()
        signalled |= victims
        if proc.poll() is not None and not victims:
            break
    return sorted(signalled - {proc.pid})
