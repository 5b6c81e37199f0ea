"""`launch.py setup-codex`: write Codex's config.toml, auth.json and model catalog for the proxy.

The stdlib reads TOML but cannot write it, and a user's config.toml carries comments and tables
of their own, so the merge is textual: the top-level keys of `client_config.codex_config` (model, provider,
catalog) are replaced in place or added before the first table, and our `[model_providers.<id>]` table is replaced whole or
appended. Everything else stays byte for byte. Each changed file is first copied to a backup;
`--dry-run` prints the diffs and writes nothing.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import sys
import time
import tomllib
from pathlib import Path

from mimo2codex import paths

DIFF_LINES = 60
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")


def codex_home(environ: dict | None = None) -> Path:
    """Codex's own rule: $CODEX_HOME, else ~/.codex (doctor passes the environment it checks)."""
    env = os.environ if environ is None else environ
    return Path(env.get("CODEX_HOME") or Path.home() / ".codex").expanduser()


def catalog_path(home: Path, provider: str) -> Path:
    return home / f"mimo2codex-{provider}-catalog.json"


def _table_name(line: str) -> str | None:
    m = _HEADER.match(line)
    return None if m is None else ".".join(p.strip().strip("\"'") for p in m.group(1).split("."))


def merge_config(existing: str, top: dict[str, str], table: str, body: list[str]) -> str:
    """`existing` with the `top` keys (name -> TOML literal) and the whole `[table]` set to ours."""
    lines = existing.splitlines()
    first_table = next((i for i, ln in enumerate(lines) if _table_name(ln) is not None), len(lines))
    head, rest = lines[:first_table], lines[first_table:]
    todo = dict(top)
    for i, ln in enumerate(head):
        m = _KEY.match(ln)
        name = m.group(1).strip("\"'") if m else None
        if name in todo:
            head[i] = f"{name} = {todo.pop(name)}"
    while head and not head[-1].strip():
        head.pop()
    head += [f"{k} = {v}" for k, v in todo.items()]
    # our table and its sub-tables go; a table of the user's between them stays
    starts = [i for i, ln in enumerate(rest) if _table_name(ln) is not None]
    kept: list[str] = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(rest)
        name = _table_name(rest[start])
        if name != table and not name.startswith(table + "."):
            kept += rest[start:end]
    while kept and not kept[-1].strip():
        kept.pop()
    out = head + [""] + ([*kept, ""] if kept else []) + [f"[{table}]", *body]
    return "\n".join(out).lstrip("\n") + "\n"


def planned(r, host: str, port: int, home: Path, token: str = "") -> dict[Path, str]:
    """The new text of each file setup-codex writes (existing files merged)."""
    from mimo2codex.cli import client_config

    cat = catalog_path(home, r.provider)
    snippet = client_config.codex_config(r, host, port, catalog=str(cat)).splitlines()
    split = snippet.index("")
    top = dict(ln.split(" = ", 1) for ln in snippet[:split])
    table, body = snippet[split + 1].strip("[]"), snippet[split + 2:]
    config = home / "config.toml"
    old = config.read_text() if config.exists() else ""
    if old:
        try:
            parsed = tomllib.loads(old)
        except tomllib.TOMLDecodeError as e:
            raise SystemExit(f"mimo2codex: {config} is not valid TOML ({e}); fix it first, nothing was changed")
        if "model_providers" in parsed and not any(_table_name(ln) and _table_name(ln).startswith("model_providers")
                                                   for ln in old.splitlines()):
            raise SystemExit(f"mimo2codex: {config} sets model_providers inline; move it to [model_providers.<id>] "
                             "tables so setup-codex can merge ours, nothing was changed")
    auth = home / "auth.json"
    try:
        current = json.loads(auth.read_text()) if auth.exists() else {}
    except ValueError:
        current = {}
    current = current if isinstance(current, dict) else {}
    # requires_openai_auth sends this value as the bearer; the proxy checks it only with an access token
    current["OPENAI_API_KEY"] = token or client_config.LOCAL_PLACEHOLDER_KEY
    return {config: merge_config(old, top, table, body),
            auth: json.dumps(current, indent=2) + "\n",
            cat: json.dumps(client_config.model_catalog(r), indent=1) + "\n"}


def _shown(path: Path, text: str, token: str) -> str:
    return text.replace(token, "<access token>") if token and path.name == "auth.json" else text


def _write(path: Path, text: str) -> None:
    if path.name != "auth.json":
        path.write_text(text)
        return
    # Created 0600, not chmod-ed after: the key Codex sends is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)  # an existing file keeps its mode through O_TRUNC


def apply(files: dict[Path, str], *, dry_run: bool, token: str = "", out=sys.stdout) -> list[Path]:
    """Print a diff per changed file; unless dry_run, back each one up and write it. Returns the changed paths."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    changed = []
    for path, new in files.items():
        old = path.read_text() if path.exists() else ""
        if old == new:
            print(f"unchanged: {path}", file=out)
            continue
        changed.append(path)
        diff = list(difflib.unified_diff(_shown(path, old, token).splitlines(True), _shown(path, new, token).splitlines(True),
                                         str(path) if old else "/dev/null", str(path)))
        out.writelines(line if line.endswith("\n") else line + "\n" for line in diff[:DIFF_LINES])
        if len(diff) > DIFF_LINES:  # the catalog: a few hundred lines of generated JSON
            print(f"... ({len(diff) - DIFF_LINES} more diff lines)", file=out)
        if dry_run:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            why = "a file is in the way" if isinstance(e, FileExistsError) else e.strerror or e
            raise SystemExit(f"mimo2codex: cannot create the Codex home {path.parent}: {why} (CODEX_HOME names a directory)")
        if path.exists():
            backup = path.with_name(f"{path.name}.bak-{stamp}")
            shutil.copy2(path, backup)
            print(f"backup: {backup}", file=out)
        try:
            _write(path, new)
        except OSError as e:
            raise SystemExit(f"mimo2codex: cannot write {path}: {e.strerror or e}"
                             + (f" (already written: {', '.join(map(str, changed[:-1]))})" if changed[:-1] else ""))
        print(f"wrote: {path}", file=out)
    if dry_run:
        print("dry run: nothing written", file=out)
    return changed


def add_parser(sub, add_common) -> None:
    p = sub.add_parser("setup-codex", help="write ~/.codex/config.toml, auth.json and the model catalog "
                                           "(merges, keeps backups; honours CODEX_HOME)")
    add_common(p, sub=True)
    p.add_argument("--dry-run", action="store_true", help="print the changes as a diff and write nothing")


def cmd_setup_codex(args: argparse.Namespace) -> int:
    from mimo2codex.cli import client_config, launcher

    r = launcher.load_rules(args.rules)
    home = codex_home()
    token = launcher.access_token(args)
    print(f"Codex home: {home}" + ("  (from CODEX_HOME)" if os.environ.get("CODEX_HOME") else ""))
    apply(planned(r, args.host, args.port, home, token), dry_run=args.dry_run, token=token)
    if not args.dry_run:
        print(f"\nStart the proxy ({paths.COMMAND}) and run codex: model {r.default_model} via {client_config.proxy_url(args.host, args.port)}")
    return 0
