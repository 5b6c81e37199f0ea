"""The folders tell the architecture, and these tests keep them honest (issue 15).

Every import counts, the ones inside functions too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mimo2codex"
MAX_LINES = 400

# folder (or root module) -> what its modules may import from this project. cli/ is the top: it
# may import everything; nothing imports cli/ but launch.py and the tests.
ALLOWED = {
    "translate": ("mimo2codex.translate", "mimo2codex.paths"),
    "sessions": ("mimo2codex.sessions", "mimo2codex.translate", "mimo2codex.paths", "mimo2codex.proxyproc"),
    "fakes": ("mimo2codex.fakes",),
    "cli": ("mimo2codex", "addon"),
    "paths": (),
    "addon_path": ("mimo2codex.paths",),
    "proxyproc": ("mimo2codex.paths",),
    "nodump": (),
    "__init__": (),
    "__main__": ("mimo2codex.cli",),  # `python -m mimo2codex`: the installed command
}
# Files over MAX_LINES, each with its reason; the test fails when one gets small enough to drop off.
TOO_LONG = {
}


def sources() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *(ROOT / "addon").glob("*.py")])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, resolved to the most specific project module that exists."""
    out = set()
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if exists(sub) else base)
    return out


def exists(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def folder(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_translate_core_imports_without_mitmproxy():
    """Import every module of translate/ with mitmproxy made unimportable."""
    code = ("import sys, importlib, pkgutil; sys.modules['mitmproxy'] = None\n"
            "import mimo2codex.translate as t\n"
            "for m in pkgutil.iter_modules(t.__path__): importlib.import_module(f'mimo2codex.translate.{m.name}')\n"
            "print(sorted(n for n, m in sys.modules.items() if m is not None and n.startswith(('mitmproxy', 'addon'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_each_folder_imports_only_what_its_role_allows():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        allowed = ALLOWED[folder(path)]
        for name in imports(path):
            top = name.split(".")[0]
            if top in ("mimo2codex", "addon") and not name.startswith(allowed) and name != "mimo2codex":
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if top == "mitmproxy" and folder(path) != "cli":
                wrong.append(f"{path.relative_to(ROOT)} imports {name} (only cli/ and addon/ may)")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circle():
    graph = {module_name(p): {i for i in imports(p) if i.split(".")[0] in ("mimo2codex", "addon")} for p in sources()}
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            raise AssertionError("import circle: " + " -> ".join(trail[trail.index(node):] + [node]))
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, trail + [node])
        done.add(node)

    for start in sorted(graph):
        visit(start, [])


def test_modules_stay_small():
    long = {str(p.relative_to(ROOT)): n for p in sources() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    unexplained = {f: n for f, n in long.items() if f not in TOO_LONG}
    assert not unexplained, f"over {MAX_LINES} lines (split them, or say why in TOO_LONG): {unexplained}"
    assert set(TOO_LONG) <= set(long), f"no longer over {MAX_LINES} lines, drop from TOO_LONG: {set(TOO_LONG) - set(long)}"
