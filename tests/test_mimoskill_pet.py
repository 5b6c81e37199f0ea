"""mimoskill pets: generate_pet.py (local + fake HTTP providers) and install_pet.sh, run like a user would.

The sheet checks here are written against Codex's loader, not against generate_pet.py's own
validator: openai/codex codex-rs/tui/src/pets/catalog.rs (192x208 cells, 8 columns, 9 rows),
model.rs (pet.json fields, spritesheetPath inside the pet dir, exact 1536x1872 sheet,
default_animations() row/frame layout) and picker.rs ($CODEX_HOME/pets/<dir>/pet.json).
Every provider base URL points at loopback, so nothing here touches the network.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageOps

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "mimoskill" / "scripts"
GENERATE = SCRIPTS / "generate_pet.py"
INSTALL = SCRIPTS / "install_pet.sh"

# Codex's contract, restated independently of the script under test.
CELL_W, CELL_H, COLS, ROWS = 192, 208, 8, 9
ROW_FRAMES = {  # default_animations() in codex-rs/tui/src/pets/model.rs: (row, frames)
    "idle": (0, 6), "running-right": (1, 8), "running-left": (2, 8), "waving": (3, 4), "jumping": (4, 5),
    "failed": (5, 8), "waiting": (6, 6), "running": (7, 6), "review": (8, 6),
}
CODEX_PETFILE_KEYS = {"id", "displayName", "description", "spritesheetPath", "frame", "animations"}


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PET_OPENAI_API_KEY", "REPLICATE_API_TOKEN", "CODEX_HOME", "MIMO_API_KEY")}
    # A closed loopback port: if a test forgot to point a provider at a fake, it fails fast offline.
    env.update(PET_OPENAI_BASE_URL="http://127.0.0.1:9/v1", POLLINATIONS_BASE_URL="http://127.0.0.1:9",
               REPLICATE_BASE_URL="http://127.0.0.1:9/v1", REPLICATE_POLL_SECONDS="0.01",
               PYTHON=sys.executable)
    env.update(extra)
    return env


def generate(*args: str, env: dict | None = None, python: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*(python or [sys.executable]), str(GENERATE), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or clean_env(), timeout=60)


def install(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, env=env, timeout=60)


# --------------------------------------------------------------------------- Codex-side checks
def codex_load(pet_dir: Path) -> dict:
    """What Codex's load_pet_manifest() does with a custom pet dir, step by step."""
    manifest = json.loads((pet_dir / "pet.json").read_text(encoding="utf-8"))
    assert isinstance(manifest, dict)
    assert set(manifest) <= CODEX_PETFILE_KEYS, f"unexpected keys {set(manifest) - CODEX_PETFILE_KEYS}"
    rel = (manifest.get("spritesheetPath") or "").strip() or "spritesheet.webp"
    assert not Path(rel).is_absolute() and ".." not in Path(rel).parts
    sheet = pet_dir / rel
    assert sheet.is_file()
    with Image.open(sheet) as im:
        # The image crate picks its decoder from the extension, so the bytes must match it.
        assert im.format == {".webp": "WEBP", ".png": "PNG"}[sheet.suffix]
        assert im.size == (CELL_W * COLS, CELL_H * ROWS) == (1536, 1872)
        frame = manifest.get("frame") or {"width": CELL_W, "height": CELL_H, "columns": COLS, "rows": ROWS}
        assert (frame["width"] * frame["columns"], frame["height"] * frame["rows"]) == im.size
        return {"manifest": manifest, "sheet": im.convert("RGBA"), "path": sheet}


def visible(cell: Image.Image) -> int:
    return cell.width * cell.height - cell.getchannel("A").histogram()[0]


def cell(sheet: Image.Image, row: int, col: int) -> Image.Image:
    return sheet.crop((col * CELL_W, row * CELL_H, (col + 1) * CELL_W, (row + 1) * CELL_H))


def assert_codex_sheet(sheet: Image.Image) -> None:
    """Cell by cell: every frame Codex's default animations play holds a pose; the rest is empty."""
    for state, (row, frames) in ROW_FRAMES.items():
        for col in range(COLS):
            c = cell(sheet, row, col)
            if col < frames:
                assert visible(c) > 500, f"{state} frame {col} is empty"
                # the pose sits inside its cell instead of bleeding into a neighbour
                l, t, r, b = c.getchannel("A").getbbox()
                assert r - l < CELL_W and b - t < CELL_H, f"{state} frame {col} fills the whole cell"
            else:
                assert visible(c) == 0, f"{state}: unused cell {col} is not transparent"
    hidden = Image.composite(sheet, Image.new("RGBA", sheet.size), sheet.getchannel("A").point(lambda a: 255 if a == 0 else 0))
    assert hidden.convert("RGB").getbbox() is None, "transparent pixels hide colour"
    # running-left is running-right mirrored frame by frame (same order, facing the other way)
    for col in range(8):
        assert ImageChops.difference(ImageOps.mirror(cell(sheet, 1, col)), cell(sheet, 2, col)).getbbox() is None
    # idle is not six identical copies
    idle = [cell(sheet, 0, c).tobytes() for c in range(6)]
    assert len(set(idle)) >= 3


# ------------------------------------------------------------------------------ fake providers
def art_png(transparent: bool, size: int = 320, colour=(240, 150, 60)) -> bytes:
    """A character on transparent (gpt-image-1) or flat green (others) background."""
    bg = (0, 0, 0, 0) if transparent else (0, 255, 0, 255)
    im = Image.new("RGBA", (size, size), bg)
    d = ImageDraw.Draw(im)
    d.ellipse((size * 0.25, size * 0.3, size * 0.75, size * 0.9), fill=colour + (255,), outline=(40, 30, 30, 255), width=6)
    d.polygon([(size * 0.3, size * 0.38), (size * 0.36, size * 0.14), (size * 0.46, size * 0.32)], fill=colour + (255,))
    d.ellipse((size * 0.4, size * 0.5, size * 0.45, size * 0.58), fill=(20, 20, 20, 255))
    buf = io.BytesIO()
    (im if transparent else im.convert("RGB")).save(buf, "PNG")
    return buf.getvalue()


class FakeProvider:
    """Loopback HTTP server; `routes(handler, method, path, body)` returns (status, headers, bytes)."""

    def __init__(self, routes):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _serve(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with outer.lock:
                    outer.requests.append({"method": method, "path": self.path, "headers": dict(self.headers), "body": body})
                status, headers, payload = routes(outer, method, self.path, body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def openai_routes(fake, method, path, body):
    if path == "/v1/images/generations" and method == "POST":
        req = json.loads(body)
        assert req["model"] == "gpt-image-1" and req["background"] == "transparent"
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"data": [{"b64_json": base64.b64encode(art_png(True)).decode()}]}).encode()
    if path == "/v1/images/edits" and method == "POST":
        assert b'name="image[]"' in body and b"\x89PNG" in body
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"data": [{"b64_json": base64.b64encode(art_png(True, colour=(230, 140, 70))).decode()}]}).encode()
    return 404, {}, b'{"error":{"message":"no route"}}'


def pollinations_routes(fake, method, path, body):
    if path.startswith("/prompt/") and method == "GET":
        return 200, {"Content-Type": "image/jpeg"}, art_png(False)
    return 404, {}, b"not found"


def replicate_routes(fake, method, path, body):
    if method == "POST" and path == "/v1/models/black-forest-labs/flux-schnell/predictions":
        req = json.loads(body)
        assert "prompt" in req["input"]
        return 201, {"Content-Type": "application/json"}, json.dumps(
            {"id": "p1", "status": "starting", "urls": {"get": f"{fake.url}/v1/predictions/p1"}}).encode()
    if method == "GET" and path == "/v1/predictions/p1":
        polls = sum(1 for r in fake.requests if r["path"] == path)
        status = "processing" if polls < 2 else "succeeded"
        out = [f"{fake.url}/files/p1.png"] if status == "succeeded" else None
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"id": "p1", "status": status, "output": out, "urls": {"get": f"{fake.url}/v1/predictions/p1"}}).encode()
    if method == "GET" and path == "/files/p1.png":
        return 200, {"Content-Type": "image/png"}, art_png(False)
    return 404, {}, b'{"detail":"no route"}'


def failing_routes(fake, method, path, body):
    return 500, {"Content-Type": "application/json"}, b'{"error":{"message":"upstream exploded"}}'


def not_an_image_routes(fake, method, path, body):
    return 200, {"Content-Type": "text/html"}, b"<html>rate limited</html>"


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def local_pet(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "fox"
    r = generate("--provider", "local", "--description", "a chibi orange fox with a green scarf", "--bundle", str(out))
    assert r.returncode == 0, r.stderr
    return out


# ---------------------------------------------------------------------------------- local tests
def test_local_provider_writes_a_pet_codex_loads(local_pet):
    loaded = codex_load(local_pet)
    assert loaded["manifest"] == {
        "id": "fox",
        "displayName": "Fox",
        "description": "a chibi orange fox with a green scarf",
        "spritesheetPath": "spritesheet.webp",
    }
    assert sorted(p.name for p in local_pet.iterdir()) == ["pet.json", "spritesheet.webp"]
    assert_codex_sheet(loaded["sheet"])


def test_local_provider_is_deterministic_and_writes_sheet_only_with_out(local_pet, tmp_path):
    out = tmp_path / "sheet.webp"
    r = generate("--provider", "local", "-d", "a chibi orange fox with a green scarf", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (local_pet / "spritesheet.webp").read_bytes()
    assert "install_pet.sh" in r.stdout
    png = tmp_path / "sheet.png"
    assert generate("--provider", "local", "-d", "blue robot", "--out", str(png)).returncode == 0
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (1536, 1872)
        assert_codex_sheet(im.convert("RGBA"))
    bad = generate("--provider", "local", "-d", "x", "--out", str(tmp_path / "sheet.gif"))
    assert bad.returncode == 2 and ".webp or .png" in bad.stderr and not (tmp_path / "sheet.gif").exists()


def test_validate_accepts_good_and_names_each_codex_rejection(local_pet, tmp_path):
    def resize(d):
        with Image.open(d / "spritesheet.webp") as im:
            im.resize((1024, 1024)).save(d / "spritesheet.webp", "WEBP", lossless=True)

    def png_named_webp(d):
        with Image.open(d / "spritesheet.webp") as im:
            im.save(d / "spritesheet.webp", "PNG")

    def escape(d):
        m = json.loads((d / "pet.json").read_text())
        m["spritesheetPath"] = "../spritesheet.webp"
        (d / "pet.json").write_text(json.dumps(m))

    def paint_unused(d):
        with Image.open(d / "spritesheet.webp") as im:
            im = im.convert("RGBA")
            ImageDraw.Draw(im).rectangle((7 * CELL_W + 50, 50, 7 * CELL_W + 80, 80), fill=(255, 0, 0, 255))
            im.save(d / "spritesheet.webp", "WEBP", lossless=True, exact=True)

    def blank_frame(d):
        with Image.open(d / "spritesheet.webp") as im:
            im = im.convert("RGBA")
            im.paste((0, 0, 0, 0), (3 * CELL_W, 4 * CELL_H, 4 * CELL_W, 5 * CELL_H))
            im.save(d / "spritesheet.webp", "WEBP", lossless=True, exact=True)

    def bad_animation(d):
        m = json.loads((d / "pet.json").read_text())
        m["animations"] = {"idle": {"frames": [72]}}
        (d / "pet.json").write_text(json.dumps(m))

    def hidden_colour(d):
        with Image.open(d / "spritesheet.webp") as im:
            im = im.convert("RGBA")
            im.putpixel((7 * CELL_W + 5, 5), (255, 0, 0, 0))
            im.save(d / "spritesheet.webp", "WEBP", lossless=True, exact=True)

    cases = {
        "size": (resize, "spritesheet must be 1536x1872 pixels"),
        "ext": (png_named_webp, "holds PNG data but its extension says WEBP"),
        "escape": (escape, "must be a relative path inside"),
        "unused": (paint_unused, "row 0 (idle) cell 7 must be fully transparent"),
        "blank": (blank_frame, "row 4 (jumping) frame 3: cell is empty"),
        "anim": (bad_animation, "animation idle references sprite index 72"),
        "hidden": (hidden_colour, "hidden RGB colour"),
    }
    for name, (mutate, _) in cases.items():
        shutil.copytree(local_pet, tmp_path / name)
        mutate(tmp_path / name)
    r = generate("--validate", str(local_pet), *(str(tmp_path / n) for n in cases))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"OK: {local_pet} is a valid Codex pet" in r.stdout
    blocks = dict(re.findall(r"INVALID (\S+):\n((?:  - .*\n?)+)", r.stderr))
    assert set(blocks) == {str(tmp_path / n) for n in cases}
    for name, (_, message) in cases.items():
        assert message in blocks[str(tmp_path / name)], (name, blocks[str(tmp_path / name)])


def test_missing_pillow_gives_install_hint_not_traceback(tmp_path):
    # `python -S` skips site-packages: the same interpreter, but without Pillow.
    r = generate("--provider", "local", "-d", "a cat", "--bundle", str(tmp_path / "p"), python=[sys.executable, "-S"])
    assert r.returncode == 2
    assert "pip install pillow" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "p").exists()


def test_description_is_required():
    r = generate("--provider", "local", "--bundle", "/tmp/never")
    assert r.returncode == 2 and "--description is required" in r.stderr


# --------------------------------------------------------------------------------- remote tests
def test_gpt_image_1_per_state_uses_edits_and_assembles_a_valid_sheet(tmp_path):
    with FakeProvider(openai_routes) as fake:
        env = clean_env(PET_OPENAI_API_KEY="sk-pet-test", PET_OPENAI_BASE_URL=f"{fake.url}/v1")
        r = generate("--provider", "gpt-image-1", "--poses", "per-state", "-d", "an orange fox", "--name", "Ember",
                     "--bundle", str(tmp_path / "ember"), env=env)
    assert r.returncode == 0, r.stderr
    paths = [q["path"] for q in fake.requests]
    assert paths.count("/v1/images/generations") == 1  # the reference pose
    assert paths.count("/v1/images/edits") == 7  # every other state, grounded on the reference
    assert all(q["headers"]["Authorization"] == "Bearer sk-pet-test" for q in fake.requests)
    first = json.loads(fake.requests[0]["body"])
    assert "an orange fox" in first["prompt"] and "transparent background" in first["prompt"]
    loaded = codex_load(tmp_path / "ember")
    assert loaded["manifest"]["id"] == "ember" and loaded["manifest"]["displayName"] == "Ember"
    assert_codex_sheet(loaded["sheet"])


def test_pollinations_key_background_is_removed(tmp_path):
    with FakeProvider(pollinations_routes) as fake:
        r = generate("--provider", "pollinations", "-d", "an orange fox", "--seed", "7",
                     "--bundle", str(tmp_path / "fox"), env=clean_env(POLLINATIONS_BASE_URL=fake.url))
    assert r.returncode == 0, r.stderr
    assert len(fake.requests) == 1  # --poses one (default): one picture animated for all rows
    req = fake.requests[0]["path"]
    assert "seed=7" in req and "an%20orange%20fox" in req and "green" in req
    sheet = codex_load(tmp_path / "fox")["sheet"]
    assert_codex_sheet(sheet)
    # no green chroma key survives in any cell: visible pixels with g > 200, r < 90, b < 90
    r_, g_, b_, a_ = sheet.split()
    keyish = ImageChops.multiply(
        ImageChops.multiply(r_.point(lambda v: 255 if v < 90 else 0), g_.point(lambda v: 255 if v > 200 else 0)),
        ImageChops.multiply(b_.point(lambda v: 255 if v < 90 else 0), a_.point(lambda v: 255 if v else 0)))
    assert keyish.getbbox() is None


def test_replicate_polls_until_succeeded(tmp_path):
    with FakeProvider(replicate_routes) as fake:
        env = clean_env(REPLICATE_API_TOKEN="r8-test", REPLICATE_BASE_URL=f"{fake.url}/v1")
        r = generate("--provider", "replicate", "-d", "a green frog", "--out", str(tmp_path / "frog.webp"), env=env)
    assert r.returncode == 0, r.stderr
    assert [q["path"] for q in fake.requests] == [
        "/v1/models/black-forest-labs/flux-schnell/predictions",
        "/v1/predictions/p1", "/v1/predictions/p1", "/files/p1.png",
    ]
    assert fake.requests[0]["headers"]["Authorization"] == "Bearer r8-test"
    with Image.open(tmp_path / "frog.webp") as im:
        assert_codex_sheet(im.convert("RGBA"))


@pytest.mark.parametrize("env_keys, expected", [
    ({"PET_OPENAI_API_KEY": "sk-x", "REPLICATE_API_TOKEN": "r8"}, "gpt-image-1"),
    ({"REPLICATE_API_TOKEN": "r8"}, "replicate"),
    ({}, "pollinations"),
])
def test_auto_picks_provider_by_keys_and_falls_back_to_local(tmp_path, env_keys, expected):
    with FakeProvider(failing_routes) as fake:
        env = clean_env(**env_keys, PET_OPENAI_BASE_URL=f"{fake.url}/v1", REPLICATE_BASE_URL=f"{fake.url}/v1",
                        POLLINATIONS_BASE_URL=fake.url)
        r = generate("-d", "a cat", "--bundle", str(tmp_path / "cat"), env=env)
    assert r.returncode == 0, r.stderr
    assert len(fake.requests) == 1
    assert f"asking {expected}" in r.stderr
    assert "HTTP 500: upstream exploded" in r.stderr and "falling back to --provider local" in r.stderr
    assert "provider local" in r.stdout
    assert_codex_sheet(codex_load(tmp_path / "cat")["sheet"])


def test_explicit_provider_failure_is_clear_and_writes_nothing(tmp_path):
    with FakeProvider(not_an_image_routes) as fake:
        r = generate("--provider", "pollinations", "-d", "a cat", "--bundle", str(tmp_path / "cat"),
                     env=clean_env(POLLINATIONS_BASE_URL=fake.url))
    assert r.returncode == 3
    assert "not an image" in r.stderr and "--provider local" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "cat").exists()
    r = generate("--provider", "gpt-image-1", "-d", "a cat", "--bundle", str(tmp_path / "cat"))
    assert r.returncode == 3 and "PET_OPENAI_API_KEY" in r.stderr
    r = generate("--provider", "pollinations", "-d", "a cat", "--bundle", str(tmp_path / "cat"), "--timeout", "5")
    assert r.returncode == 3 and "cannot reach" in r.stderr


# ---------------------------------------------------------------------------------- install tests
def test_install_into_codex_home_is_idempotent_with_dry_run(local_pet, tmp_path):
    home = tmp_path / "codex-home"
    env = clean_env(CODEX_HOME=str(home))

    r = install("--dry-run", str(local_pet), env=env)
    assert r.returncode == 0, r.stderr
    assert "would install 'Fox'" in r.stdout and not home.exists()

    r = install(str(local_pet), env=env)
    assert r.returncode == 0, r.stderr
    dest = home / "pets" / "fox"
    assert f"Installed pet 'Fox' at {dest}" in r.stdout and "custom:fox" in r.stdout
    assert sorted(p.name for p in dest.iterdir()) == ["pet.json", "spritesheet.webp"]
    assert sorted(p.name for p in home.iterdir()) == ["pets"]  # no staging leftovers
    assert (dest / "spritesheet.webp").read_bytes() == (local_pet / "spritesheet.webp").read_bytes()
    loaded = codex_load(dest)
    assert loaded["manifest"]["id"] == dest.name
    assert_codex_sheet(loaded["sheet"])

    before = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    r = install(str(local_pet), env=env)
    assert r.returncode == 0 and "already installed" in r.stdout
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == before
    r = install("--dry-run", str(local_pet), env=env)
    assert "nothing would change" in r.stdout

    # a changed pet under the same name replaces the old one
    other = tmp_path / "other"
    shutil.copytree(local_pet, other)
    (other / "pet.json").write_text(json.dumps({**loaded["manifest"], "description": "a new look"}))
    assert "would replace" in install("--dry-run", str(other), env=env).stdout
    r = install(str(other), env=env)
    assert r.returncode == 0 and "Updated pet 'Fox'" in r.stdout
    assert json.loads((dest / "pet.json").read_text())["description"] == "a new look"
    assert sorted(p.name for p in home.iterdir()) == ["pets"]


def test_install_bare_sheet_with_name_and_default_codex_home(local_pet, tmp_path):
    env = clean_env(HOME=str(tmp_path))  # CODEX_HOME unset -> $HOME/.codex
    r = install(str(local_pet / "spritesheet.webp"), "Pixel Pal", env=env)
    assert r.returncode == 0, r.stderr
    dest = tmp_path / ".codex" / "pets" / "pixel-pal"
    m = codex_load(dest)["manifest"]
    assert m["id"] == "pixel-pal" and m["displayName"] == "Pixel Pal" and m["spritesheetPath"] == "spritesheet.webp"
    # --bundle DIR NAME (the seed's spelling) renames; --codex-home wins over the environment
    r = install("--bundle", str(local_pet), "Mochi", "--codex-home", str(tmp_path / "h2"), env=env)
    assert r.returncode == 0, r.stderr
    assert codex_load(tmp_path / "h2" / "pets" / "mochi")["manifest"]["displayName"] == "Mochi"


def test_install_refuses_invalid_pets_and_touches_nothing(local_pet, tmp_path):
    home = tmp_path / "home"
    env = clean_env(CODEX_HOME=str(home))
    bad = tmp_path / "bad"
    shutil.copytree(local_pet, bad)
    with Image.open(bad / "spritesheet.webp") as im:
        im.resize((1024, 1024)).save(bad / "spritesheet.webp", "WEBP", lossless=True)
    r = install(str(bad), env=env)
    assert r.returncode == 1
    assert "must be 1536x1872" in r.stderr and "not installed" in r.stderr
    assert not home.exists()
    r = install(str(tmp_path), env=env)
    assert r.returncode == 1 and "no pet.json" in r.stderr
    r = install("--bogus", env=env)
    assert r.returncode == 2
    assert not home.exists()


def test_install_without_pillow_still_checks_dimensions(local_pet, tmp_path):
    # The installer validates with stdlib alone (manifest, path, header dimensions) and says what it skipped.
    wrapper = tmp_path / "python-no-site"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    wrapper.chmod(0o755)
    home = tmp_path / "home"
    r = install(str(local_pet), env=clean_env(CODEX_HOME=str(home), PYTHON=str(wrapper)))
    assert r.returncode == 0, r.stderr
    assert "cell-by-cell checks skipped" in r.stderr
    assert (home / "pets" / "fox" / "pet.json").is_file()


def test_skill_docs_cite_the_codex_source():
    doc = (ROOT / "mimoskill" / "references" / "pet_workflow.md").read_text()
    for needle in ("codex-rs/tui/src/pets/model.rs", "codex-rs/tui/src/pets/catalog.rs", "1536", "1872",
                   "192", "208", "pet.json", "spritesheet.webp"):
        assert needle in doc
    rows = re.findall(r"^\| (\d) \| `([a-z-]+)` \| (\d) \|", doc, flags=re.M)
    assert [(int(r), s, int(n)) for r, s, n in rows] == [(r, s, n) for s, (r, n) in ROW_FRAMES.items()]
