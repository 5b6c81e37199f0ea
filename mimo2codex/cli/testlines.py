"""`python3 launch.py test` on both mitmproxy lines: 11 (Python 3.11) here, 12 (Python 3.12+) beside it.

Python 3.11 can only have mitmproxy 11.0.2, so covering mitmproxy 12 needs a second interpreter.
After the suite has run under a 3.11 interpreter, the same command is run again under the first
3.12+ interpreter found (PATH, then pyenv), in its own `.venv/<version>`. `MIMO2CODEX_TEST_PYTHON`
picks that interpreter (a path) or, set to `0`/`none`, skips the second run.

Standard library only: it runs before and outside the venvs it launches.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

ENV = "MIMO2CODEX_TEST_PYTHON"
SKIP = ("0", "no", "none", "off", "false")
SECOND_LINE = (3, 12)  # mitmproxy 12 needs Python 3.12+
LAUNCH = Path(__file__).resolve().parents[2] / "launch.py"


def version_of(python: str) -> tuple[int, int] | None:
    """(major, minor) of an interpreter, or None when it does not run (e.g. a pyenv shim of a version not selected)."""
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def candidates(path: str | None = None, pyenv_root: str | None = None) -> list[str]:
    """pythonX.Y on PATH, then pyenv's installed versions; lowest version first (3.12 is the line CI pins)."""
    found = [p for minor in range(SECOND_LINE[1], 20) if (p := shutil.which(f"python3.{minor}", path=path))]
    root = Path(pyenv_root or os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found += [str(p) for p in sorted(root.glob("versions/3.*/bin/python3"), key=lambda p: _numeric(p.parent.parent.name))]
    return list(dict.fromkeys(found))


def _numeric(version: str) -> tuple:
    return tuple(int(x) if x.isdigit() else -1 for x in version.split("."))


def second_python(environ: dict | None = None, path: str | None = None, pyenv_root: str | None = None) -> tuple[str, str]:
    """(interpreter, why): the interpreter for the mitmproxy 12 run, or "" and the reason there is none."""
    env = os.environ if environ is None else environ
    choice = env.get(ENV, "").strip()
    if choice.lower() in SKIP:
        return "", f"skipped: {ENV}={choice}"
    if choice:
        version = version_of(choice)
        if version is None:
            return "", f"{ENV}={choice} does not run"
        if version < SECOND_LINE:
            return "", f"{ENV}={choice} is Python {version[0]}.{version[1]}; mitmproxy 12 needs 3.12+"
        return choice, ""
    for python in candidates(path, pyenv_root):
        if (version_of(python) or (0, 0)) >= SECOND_LINE:
            return python, ""
    return "", "no Python 3.12+ found on PATH or under pyenv (mitmproxy 12 is not tested)"


def banner(text: str) -> None:
    print(f"\n{'=' * 12} {text} {'=' * 12}", flush=True)


def run(args: list[str], primary: Callable[[list[str]], int], *, environ: dict | None = None) -> int:
    """Run `primary(args)` (pytest here), then the same tests under the second interpreter; fail if either fails."""
    import mitmproxy.version  # inside the venv: the line this run covers

    here = f"Python {sys.version.split()[0]} / mitmproxy {mitmproxy.version.VERSION}"
    env = dict(os.environ if environ is None else environ)
    second, why = ("", "") if sys.version_info >= SECOND_LINE else second_python(env)
    banner(f"tests on {here}")
    results = [(here, primary(args))]
    if sys.version_info >= SECOND_LINE:
        return results[0][1]
    if second:
        banner(f"the same tests on {second} (mitmproxy 12 line)")
        env[ENV] = "0"  # the second run covers its own line only
        results.append((f"{second} (mitmproxy 12 line)", subprocess.call([second, str(LAUNCH), "test", *args], env=env)))
    banner("summary")
    for where, code in results:
        print(f"{'passed' if code == 0 else f'FAILED (exit {code})'}: {where}")
    if not second:
        print(f"not run: the mitmproxy 12 line — {why}")
    return next((code for _, code in results if code), 0)
