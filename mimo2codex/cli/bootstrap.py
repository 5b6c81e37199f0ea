"""First-run set-up: a project-local virtualenv per Python version, built from pyproject.toml.

Standard library only: this runs under whatever `python3` the user has, before any dependency exists.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYVER = f"{sys.version_info.major}.{sys.version_info.minor}"
VENV = ROOT / ".venv" / PYVER


def venv_python(path: Path = VENV) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def requirements(extras: tuple[str, ...] = ()) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return reqs


def applies(requirement: str) -> bool:
    """Whether a requirement's `python_version` marker (the only kind pyproject uses) holds here."""
    _, _, marker = requirement.partition(";")
    m = re.fullmatch(r"\s*python_version\s*(<=|>=|<|>|==|!=)\s*['\"](\d+)\.(\d+)['\"]\s*", marker)
    if not m:
        return True
    here, there = sys.version_info[:2], (int(m.group(2)), int(m.group(3)))
    return {"<": here < there, "<=": here <= there, ">": here > there, ">=": here >= there,
            "==": here == there, "!=": here != there}[m.group(1)]


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def ensure(extras: tuple[str, ...] = ()) -> Path:
    """Create/refresh the venv so it satisfies pyproject (+ extras); return its python."""
    reqs = requirements(extras)
    stamp = VENV / ".mimo2codex-stamp"
    digest = hashlib.sha256("\n".join(sorted(reqs)).encode()).hexdigest()
    have = stamp.read_text().split() if stamp.exists() else []
    if digest in have:
        return venv_python()
    if not venv_python().exists():
        print(f"mimo2codex: first run - creating {VENV.relative_to(ROOT)} (Python {PYVER})", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    shown = [r.split(";")[0].strip() for r in reqs if applies(r)]
    print(f"mimo2codex: installing {', '.join(shown)}", file=sys.stderr)
    cmd = [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q", *reqs]
    if subprocess.call(cmd) != 0:
        sys.exit("mimo2codex: dependency installation failed (see pip's output above)")
    stamp.write_text("\n".join([*have, digest]))
    return venv_python()


def reexec_in_venv(extras: tuple[str, ...] = ()) -> None:
    """Make sure we run inside the project venv; re-exec this command there if not."""
    python = ensure(extras)
    if not in_venv():
        os.execv(str(python), [str(python), *sys.argv])
