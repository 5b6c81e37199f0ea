#!/usr/bin/env python3
"""Make a Codex pet (pet.json + spritesheet.webp) without asking MiMo for images.

MiMo has no image-generation model, so Codex's own pet hatching (which relies on OpenAI image
generation) cannot run when Codex talks to MiMo. This script produces the same package Codex loads:

    python3 generate_pet.py --description "a chibi orange fox with a green scarf" --bundle /tmp/fox
    python3 generate_pet.py --description "..." --provider local --bundle /tmp/fox   # fully offline
    python3 generate_pet.py --description "..." --out /tmp/fox.webp                  # sheet only
    python3 generate_pet.py --validate ~/.codex/pets/fox                             # check a pet dir

Providers: gpt-image-1 (PET_OPENAI_API_KEY), replicate (REPLICATE_API_TOKEN), pollinations (no key),
local (Pillow drawing, no network). `auto` picks the first of gpt-image-1 / replicate / pollinations
whose key is present and falls back to `local` when the network call fails.

Standard library plus Pillow (needed to build the sheet); never the openai package.
Exit codes: 0 ok, 1 validation failed, 2 usage or missing dependency, 3 provider failed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import struct
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# The Codex pet format. Source of truth: openai/codex, codex-rs/tui/src/pets/
#   catalog.rs  DEFAULT_FRAME_WIDTH=192, DEFAULT_FRAME_HEIGHT=208, DEFAULT_FRAME_COLUMNS=8,
#               DEFAULT_FRAME_ROWS=9, SPRITESHEET_WIDTH/HEIGHT = 1536 x 1872
#   model.rs    load_custom_pet(): $CODEX_HOME/pets/<id>/pet.json (legacy: avatars/<id>/avatar.json);
#               PetFile fields id, displayName, description, spritesheetPath (default
#               "spritesheet.webp", must stay inside the pet dir), optional frame{width,height,
#               columns,rows} and animations{name:{frames,fps,loop,fallback}};
#               validate_app_spritesheet_dimensions() rejects any sheet that is not exactly
#               1536x1872; default_animations() gives the row order below; MAX_PET_FRAMES=256,
#               MAX_ANIMATION_FPS=60.
#   picker.rs   /pets lists every pets/<dir>/ holding pet.json as selector "custom:<dir>".
# Row frame counts also match openai/skills skills/.curated/hatch-pet/references/animation-rows.md
# (unused cells after a row's last frame must be fully transparent). See references/pet_workflow.md.
# ---------------------------------------------------------------------------------------------
CELL_W, CELL_H = 192, 208
COLUMNS, ROWS = 8, 9
SHEET_W, SHEET_H = CELL_W * COLUMNS, CELL_H * ROWS
ROW_SPECS = (
    ("idle", 6),
    ("running-right", 8),
    ("running-left", 8),
    ("waving", 4),
    ("jumping", 5),
    ("failed", 8),
    ("waiting", 6),
    ("running", 6),
    ("review", 6),
)
MAX_PET_FRAMES = 256
MAX_ANIMATION_FPS = 60.0
MANIFEST = "pet.json"
SHEET_FILE = "spritesheet.webp"
# A used cell with fewer visible pixels than this is a blank or a stray speck, not a pose.
MIN_VISIBLE_PIXELS = 200

PROVIDERS = ("auto", "gpt-image-1", "pollinations", "replicate", "local")
HERE = Path(__file__).resolve().parent
TEMPLATE = HERE.parent / "assets" / "pet_prompt_template.md"

# Remote providers are reached through these (env-overridable so tests can use loopback fakes).
OPENAI_BASE = "https://api.openai.com/v1"
POLLINATIONS_BASE = "https://image.pollinations.ai"
REPLICATE_BASE = "https://api.replicate.com/v1"
REPLICATE_MODEL = "black-forest-labs/flux-schnell"
KEY_BACKGROUND = "flat solid pure green (#00FF00) chroma-key background, nothing else"


class PetError(Exception):
    """A problem the user can act on; printed without a traceback."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class ProviderError(PetError):
    def __init__(self, message: str):
        super().__init__(message, exit_code=3)


def pillow():
    """Import Pillow on first use so --help and stdlib validation work without it."""
    try:
        from PIL import Image  # noqa: F401
    except ImportError:
        raise PetError(
            "Pillow is required to build a pet sprite sheet but is not installed for "
            f"{sys.executable}.\nInstall it with:  {Path(sys.executable).name} -m pip install pillow\n"
            "(or: pip install pillow), then run this command again.",
            exit_code=2,
        ) from None
    import PIL.Image

    return PIL.Image


# --------------------------------------------------------------------------------- validation
def sniff_image(path: Path) -> tuple[str, int, int]:
    """(format, width, height) from the file header, standard library only.

    Codex's `image` crate picks the decoder from the file extension, so a PNG saved as
    spritesheet.webp fails to load even though the picture is fine: the bytes must match.
    """
    head = path.read_bytes()[:64]
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return "PNG", w, h
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        chunk = head[12:16]
        if chunk == b"VP8X":
            w = int.from_bytes(head[24:27], "little") + 1
            h = int.from_bytes(head[27:30], "little") + 1
            return "WEBP", w, h
        if chunk == b"VP8L" and head[20] == 0x2F:
            bits = int.from_bytes(head[21:25], "little")
            return "WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", head[26:30])
            return "WEBP", w & 0x3FFF, h & 0x3FFF
        return "WEBP", 0, 0
    return "unknown", 0, 0


def resolve_inside(pet_dir: Path, relative: str) -> Path:
    p = Path(relative)
    if p.is_absolute() or ".." in p.parts or p.drive:
        raise PetError(f"spritesheetPath {relative!r} must be a relative path inside {pet_dir}")
    return pet_dir / p


def check_manifest(pet_dir: Path) -> tuple[dict, list[str], list[str]]:
    """Mirror of Codex's load_pet_manifest checks (model.rs). Returns (manifest, errors, warnings)."""
    errors: list[str] = []
    warnings: list[str] = []
    path = pet_dir / MANIFEST
    if not path.is_file():
        return {}, [f"missing {MANIFEST} in {pet_dir}"], warnings
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, [f"{MANIFEST} is not valid JSON: {exc}"], warnings
    if not isinstance(data, dict):
        return {}, [f"{MANIFEST} must be a JSON object"], warnings
    for key in ("id", "displayName", "description", "spritesheetPath"):
        if key in data and not isinstance(data[key], str):
            errors.append(f"{MANIFEST}: {key} must be a string")
    if not str(data.get("displayName") or data.get("id") or "").strip():
        warnings.append(f"{MANIFEST} has no displayName/id; Codex will show the folder name")
    frame = data.get("frame")
    if frame is not None:
        try:
            fw, fh, fc, fr = (int(frame[k]) for k in ("width", "height", "columns", "rows"))
        except (TypeError, KeyError, ValueError):
            errors.append(f"{MANIFEST}: frame needs integer width, height, columns, rows")
        else:
            if 0 in (fw, fh, fc, fr):
                errors.append("pet frame dimensions and grid counts must be non-zero")
            elif (fw * fc, fh * fr) != (SHEET_W, SHEET_H):
                errors.append(
                    f"pet frame grid must cover spritesheet exactly: expected {SHEET_W}x{SHEET_H}, "
                    f"got {fw * fc}x{fh * fr}"
                )
            elif fc * fr > MAX_PET_FRAMES:
                errors.append(f"pet frame count {fc * fr} exceeds maximum {MAX_PET_FRAMES}")
            elif (fw, fh, fc, fr) != (CELL_W, CELL_H, COLUMNS, ROWS):
                warnings.append("custom frame grid: the default row animations assume 8x9 cells of 192x208")
    animations = data.get("animations") or {}
    if not isinstance(animations, dict):
        errors.append(f"{MANIFEST}: animations must be an object")
        animations = {}
    frame_total = COLUMNS * ROWS
    if isinstance(frame, dict):
        try:
            frame_total = int(frame["columns"]) * int(frame["rows"])
        except (KeyError, TypeError, ValueError):
            pass
    names = {name for name, _ in ROW_SPECS} | {"move_right", "move_left", "wave", "bounce", "sad"}
    names |= set(animations)
    for name, spec in animations.items():
        if not isinstance(spec, dict) or not spec.get("frames"):
            errors.append(f"animation {name} must include at least one frame")
            continue
        for idx in spec["frames"]:
            if not isinstance(idx, int) or not 0 <= idx < frame_total:
                errors.append(f"animation {name} references sprite index {idx}, but pet has {frame_total} frames")
        fps = spec.get("fps")
        if fps is not None and not (isinstance(fps, (int, float)) and 0 < fps <= MAX_ANIMATION_FPS):
            errors.append(f"animation {name} fps must be finite and between 0 and {MAX_ANIMATION_FPS:g}, got {fps}")
        fallback = spec.get("fallback") or "idle"
        if fallback not in names:
            errors.append(f"animation {name} fallback {fallback} does not exist")
    return data, errors, warnings


def check_cells(image) -> list[str]:
    """Cell-by-cell check of a decoded sheet: used cells hold a pose, unused cells are empty."""
    Image = pillow()
    errors: list[str] = []
    rgba = image.convert("RGBA")
    alpha = rgba.getchannel("A")
    for row, (state, used) in enumerate(ROW_SPECS):
        for col in range(COLUMNS):
            box = (col * CELL_W, row * CELL_H, (col + 1) * CELL_W, (row + 1) * CELL_H)
            visible = CELL_W * CELL_H - alpha.crop(box).histogram()[0]
            if col < used and visible < MIN_VISIBLE_PIXELS:
                errors.append(f"row {row} ({state}) frame {col}: cell is empty ({visible} visible pixels)")
            elif col >= used and visible:
                errors.append(f"row {row} ({state}) cell {col} must be fully transparent (unused), has {visible} visible pixels")
    # Fully transparent pixels must not hide colour: some viewers and resamplers show it as blocks.
    hidden = Image.composite(rgba, Image.new("RGBA", rgba.size), alpha.point(lambda a: 255 if a == 0 else 0))
    if hidden.convert("RGB").getbbox() is not None:
        errors.append("fully transparent pixels carry hidden RGB colour (must be 0,0,0)")
    return errors


def validate_sheet(path: Path) -> list[str]:
    fmt, w, h = sniff_image(path)
    ext = path.suffix.lower()
    errors = []
    if fmt == "unknown":
        return [f"{path.name} is neither PNG nor WebP"]
    if ext not in (".webp", ".png"):
        errors.append(f"{path.name}: use a .webp or .png file name")
    elif (ext == ".webp") != (fmt == "WEBP"):
        errors.append(f"{path.name} holds {fmt} data but its extension says {ext[1:].upper()}; Codex decodes by extension")
    if (w, h) != (SHEET_W, SHEET_H):
        errors.append(
            f"spritesheet must be {SHEET_W}x{SHEET_H} pixels ({COLUMNS}x{ROWS} cells of {CELL_W}x{CELL_H}); "
            f"{path.name} is {w}x{h}"
        )
        return errors
    try:
        Image = pillow()
    except PetError:
        return errors + ["__no_pillow__"]
    with Image.open(path) as im:
        if "A" not in im.getbands() and im.info.get("transparency") is None:
            errors.append(f"{path.name} has no alpha channel; pets need a transparent background")
        errors += check_cells(im)
    return errors


def validate_pet_dir(pet_dir: Path) -> tuple[list[str], list[str]]:
    manifest, errors, warnings = check_manifest(pet_dir)
    if errors:
        return errors, warnings
    try:
        sheet = resolve_inside(pet_dir, (manifest.get("spritesheetPath") or "").strip() or SHEET_FILE)
    except PetError as exc:
        return [str(exc)], warnings
    if not sheet.is_file():
        return [f"missing spritesheet {sheet}"], warnings
    sheet_errors = validate_sheet(sheet)
    if "__no_pillow__" in sheet_errors:
        sheet_errors.remove("__no_pillow__")
        warnings.append("Pillow is not installed: cell-by-cell checks skipped (pip install pillow for the full check)")
    return errors + sheet_errors, warnings


# ------------------------------------------------------------------------------- sheet building
def clear_hidden_rgb(image):
    Image = pillow()
    rgba = image.convert("RGBA")
    keep = rgba.getchannel("A").point(lambda a: 255 if a else 0)
    return Image.composite(rgba, Image.new("RGBA", rgba.size), keep)


def assemble(rows: dict[str, list]):
    """Place each state's frames into its row; cells after the last frame stay transparent."""
    Image = pillow()
    sheet = Image.new("RGBA", (SHEET_W, SHEET_H))
    for row, (state, count) in enumerate(ROW_SPECS):
        frames = rows[state]
        if len(frames) != count:
            raise PetError(f"internal: {state} has {len(frames)} frames, expected {count}")
        for col, frame in enumerate(frames):
            if frame.size != (CELL_W, CELL_H):
                raise PetError(f"internal: {state} frame {col} is {frame.size}, expected {CELL_W}x{CELL_H}")
            sheet.alpha_composite(frame.convert("RGBA"), (col * CELL_W, row * CELL_H))
    return clear_hidden_rgb(sheet)


def save_sheet(sheet, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".webp":
        # lossless + exact keeps the zeroed RGB under transparent pixels exactly as written.
        sheet.save(path, "WEBP", lossless=True, quality=100, method=4, exact=True)
    elif path.suffix.lower() == ".png":
        sheet.save(path, "PNG", optimize=True)
    else:
        raise PetError(f"--out must end in .webp or .png (Codex reads WebP or PNG sheets), got {path.name}", 2)


def save_preview(sheet, path: Path) -> None:
    """Contact sheet on a light background with the cell grid, for eyeballing the result."""
    Image = pillow()
    from PIL import ImageDraw

    bg = Image.new("RGBA", sheet.size, (244, 244, 240, 255))
    bg.alpha_composite(sheet)
    draw = ImageDraw.Draw(bg)
    for c in range(1, COLUMNS):
        draw.line([(c * CELL_W, 0), (c * CELL_W, SHEET_H)], fill=(200, 200, 200, 255))
    for r in range(ROWS):
        draw.line([(0, r * CELL_H), (SHEET_W, r * CELL_H)], fill=(200, 200, 200, 255))
        draw.text((4, r * CELL_H + 2), ROW_SPECS[r][0], fill=(90, 90, 90, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    bg.convert("RGB").save(path)


# --------------------------------------------------------------------------------- local drawing
PALETTES = (  # body, belly, accent, outline
    ((255, 170, 90), (255, 228, 184), (226, 104, 72), (58, 36, 44)),
    ((128, 190, 255), (214, 236, 255), (84, 116, 214), (34, 42, 78)),
    ((150, 214, 128), (222, 246, 206), (84, 152, 84), (32, 58, 38)),
    ((246, 156, 198), (255, 222, 236), (206, 86, 148), (70, 34, 58)),
    ((186, 166, 250), (234, 226, 255), (126, 98, 220), (46, 36, 86)),
    ((248, 210, 92), (255, 242, 196), (214, 146, 38), (70, 50, 22)),
    ((168, 178, 196), (228, 232, 240), (98, 108, 140), (38, 42, 56)),
    ((236, 236, 236), (255, 255, 255), (150, 150, 160), (44, 44, 52)),
)
COLOUR_WORDS = {
    "orange": 0, "ginger": 0, "red": 0, "fox": 0, "blue": 1, "cyan": 1, "teal": 1, "green": 2,
    "mint": 2, "frog": 2, "pink": 3, "rose": 3, "purple": 4, "violet": 4, "lilac": 4, "yellow": 5,
    "gold": 5, "golden": 5, "duck": 5, "chick": 5, "gray": 6, "grey": 6, "silver": 6, "robot": 6,
    "white": 7, "snow": 7,
}
EAR_WORDS = {
    "cat": "pointy", "kitten": "pointy", "kitty": "pointy", "fox": "pointy", "wolf": "pointy",
    "owl": "pointy", "dog": "floppy", "puppy": "floppy", "bunny": "long", "rabbit": "long",
    "bear": "round", "panda": "round", "hamster": "round", "mouse": "round", "koala": "round",
    "robot": "antenna", "bot": "antenna", "alien": "antenna", "android": "antenna",
    "plant": "sprout", "seed": "sprout", "sprout": "sprout", "leaf": "sprout", "cactus": "sprout",
    "duck": "tuft", "bird": "tuft", "chick": "tuft", "penguin": "tuft", "blob": "none", "slime": "none",
}


def local_style(description: str, seed: int | None) -> dict:
    words = re.findall(r"[a-z]+", description.lower())
    digest = int(hashlib.sha256(f"{description}|{seed}".encode()).hexdigest(), 16)
    palette = next((COLOUR_WORDS[w] for w in words if w in COLOUR_WORDS), digest % len(PALETTES))
    ears = next((EAR_WORDS[w] for w in words if w in EAR_WORDS), ("pointy", "round", "tuft", "sprout")[digest % 4])
    body, belly, accent, outline = PALETTES[palette]
    return {"body": body, "belly": belly, "accent": accent, "outline": outline, "ears": ears}


def local_poses(state: str, n: int) -> list[dict]:
    """Per-frame pose parameters; each row reads as its Codex state (see animation-rows.md)."""
    p = []
    for i in range(n):
        f = {"dx": 0, "dy": 0, "sx": 1.0, "sy": 1.0, "angle": 0.0, "eyes": "open", "look": (0, 0),
             "mouth": "smile", "arms": ("down", "down"), "lift": (0, 0), "face": 0, "tear": False,
             "dim": 0.0, "laptop": False}
        if state == "idle":  # calm breathing with one blink and one glance
            f["dy"] = (0, 1, 2, 2, 1, 0)[i]
            f["sy"] = (1.0, 0.99, 0.98, 0.98, 0.99, 1.0)[i]
            f["eyes"] = ("open", "open", "closed", "open", "open", "open")[i]
            f["look"] = ((0, 0), (0, 0), (0, 0), (2, 0), (-2, 0), (0, 0))[i]
        elif state == "running-right":  # side view, alternating stride, leaning into the run
            f["face"] = 1
            f["dy"] = (0, -4, -6, -4, 0, -4, -6, -4)[i]
            f["lift"] = ((8, 0), (5, 0), (0, 0), (0, 5), (0, 8), (0, 5), (0, 0), (5, 0))[i]
            f["arms"] = (("swing_back", "swing_front"), ("down", "down"), ("swing_front", "swing_back"), ("down", "down"))[i % 4]
            f["angle"] = -6.0 if i % 2 else -3.0
            f["look"] = (2, 0)
        elif state == "waving":
            f["arms"] = ("down", ("wave_a", "wave_b")[i % 2])
            f["eyes"], f["mouth"] = "happy", "open"
            f["angle"] = (-2.0, 2.0, -2.0, 1.0)[i]
        elif state == "jumping":  # anticipation, lift, peak, descent, settle
            f["dy"] = (6, -18, -38, -18, 4)[i]
            f["sx"], f["sy"] = ((1.1, 0.88), (0.94, 1.06), (1.0, 1.0), (0.96, 1.04), (1.08, 0.9))[i]
            f["arms"] = (("down", "down"), ("up", "up"), ("up", "up"), ("up", "up"), ("down", "down"))[i]
            f["eyes"], f["mouth"] = ("closed", "happy", "happy", "happy", "open")[i], "open"
        elif state == "failed":  # slowly deflates, dizzy eyes, an attached tear
            f["dy"] = min(i * 2, 10)
            f["sy"] = 1.0 - min(i, 5) * 0.02
            f["eyes"] = "x" if i >= 2 else "half"
            f["mouth"] = "frown"
            f["tear"] = i >= 3
            f["dim"] = min(i, 5) * 0.05
            f["angle"] = (0.0, 2.0, -2.0, 3.0, -3.0, 2.0, -2.0, 0.0)[i]
        elif state == "waiting":  # expectant: paw up, looking up, gentle sway
            f["dx"] = (-2, 0, 2, 2, 0, -2)[i]
            f["arms"] = ("up", "down")
            f["look"] = (0, -3)
            f["mouth"] = "o"
            f["eyes"] = "closed" if i == 4 else "open"
        elif state == "running":  # busy working: typing on a small laptop, not foot-running
            f["laptop"] = True
            f["dy"] = (0, -1, 0, -1, 0, -1)[i]
            f["arms"] = (("forward", "down"), ("down", "forward"))[i % 2]
            f["eyes"] = "half"
            f["look"] = (0, 2)
            f["mouth"] = "flat"
        elif state == "review":  # focused lean, eyes scanning left to right
            f["angle"] = (3.0, 4.0, 4.0, 3.0, 2.0, 3.0)[i]
            f["eyes"] = "half"
            f["look"] = ((-3, 1), (-1, 1), (1, 1), (3, 1), (1, 1), (-1, 1))[i]
            f["mouth"] = "flat"
        p.append(f)
    return p


def draw_local_frame(style: dict, f: dict):
    Image = pillow()
    from PIL import ImageDraw, ImageEnhance

    layer = Image.new("RGBA", (CELL_W, CELL_H))
    d = ImageDraw.Draw(layer)
    ol, body, belly, accent = style["outline"], style["body"], style["belly"], style["accent"]
    dark = tuple(max(0, c - 30) for c in body)
    cx = CELL_W // 2 + f["dx"]
    ground = 198 + f["dy"]
    bw, bh = int(100 * f["sx"]), int(88 * f["sy"])
    bottom = ground - 10
    top = bottom - bh
    shift = 10 * f["face"]

    def ell(x, y, rx, ry, fill, width=4):
        d.ellipse((x - rx, y - ry, x + rx, y + ry), fill=fill, outline=ol, width=width)

    # feet (behind the body)
    for side, lift in ((-1, f["lift"][0]), (1, f["lift"][1])):
        ell(cx + side * 22 + shift // 2, ground - 8 - lift, 15, 9, dark)
    # ears / head decoration
    ears = style["ears"]
    for side in (-1, 1):
        ex = cx + side * 30 + shift // 2
        if ears == "pointy":
            d.polygon([(ex - 16, top + 18), (ex + side * 6, top - 26), (ex + 16, top + 14)], fill=body, outline=ol, width=4)
            d.polygon([(ex - 7, top + 12), (ex + side * 4, top - 12), (ex + 7, top + 10)], fill=accent)
        elif ears == "long":
            ell(ex, top - 14, 10, 28, body)
            ell(ex, top - 12, 4, 18, accent, width=0)
        elif ears == "round":
            ell(ex + side * 4, top + 4, 16, 16, body)
            ell(ex + side * 4, top + 4, 7, 7, accent, width=0)
        elif ears == "floppy":
            ell(cx + side * 50 + shift // 2, top + 30, 13, 24, dark)
    if ears == "antenna":
        d.line([(cx + shift // 2, top + 6), (cx + shift // 2, top - 22)], fill=ol, width=4)
        ell(cx + shift // 2, top - 26, 7, 7, accent)
    elif ears == "sprout":
        d.line([(cx + shift // 2, top + 6), (cx + shift // 2, top - 16)], fill=ol, width=4)
        d.ellipse((cx + shift // 2 - 26, top - 30, cx + shift // 2, top - 12), fill=(120, 200, 100), outline=ol, width=3)
        d.ellipse((cx + shift // 2, top - 34, cx + shift // 2 + 28, top - 14), fill=(120, 200, 100), outline=ol, width=3)
    elif ears == "tuft":
        d.polygon([(cx - 10 + shift // 2, top + 8), (cx - 4 + shift // 2, top - 16), (cx + 2 + shift // 2, top + 6),
                   (cx + 10 + shift // 2, top - 12), (cx + 12 + shift // 2, top + 8)], fill=accent, outline=ol, width=3)

    # Arms: a paw resting on the body's side, or a limb drawn from the shoulder so raised paws stay
    # attached to the silhouette (detached bits break the pet's outline at small sizes).
    shoulder_y = top + int(bh * 0.55)
    paws = {
        "down": lambda s: (cx + s * (bw // 2 + 1), bottom - bh // 3),
        "up": lambda s: (cx + s * (bw // 2 + 6), top + 4),
        "forward": lambda s: (cx + s * 18 + shift + 14, bottom - 22),
        "swing_back": lambda s: (cx - bw // 2 + 2, bottom - bh // 3 + 8),
        "swing_front": lambda s: (cx + bw // 2 - 2, bottom - bh // 3 - 6),
        "wave_a": lambda s: (cx + s * (bw // 2 + 10), top - 2),
        "wave_b": lambda s: (cx + s * (bw // 2 + 18), top + 16),
    }
    raised = ("up", "wave_a", "wave_b")

    def arm(s, kind):
        px, py = paws[kind](s)
        if kind in raised:
            sh = (cx + s * (bw // 2 - 8), shoulder_y)
            d.line([sh, (px, py)], fill=ol, width=16)
            d.line([sh, (px, py)], fill=body, width=9)
        ell(px, py, 12, 11, body)

    arms_behind = [(s, a) for s, a in zip((-1, 1), f["arms"]) if a in ("down", "swing_back")]
    arms_front = [(s, a) for s, a in zip((-1, 1), f["arms"]) if a not in ("down", "swing_back")]
    for s, a in arms_behind:
        arm(s, a)
    # body, belly patch
    d.ellipse((cx - bw // 2, top, cx + bw // 2, bottom), fill=body, outline=ol, width=4)
    d.ellipse((cx - bw // 3 + shift, top + bh // 2, cx + bw // 3 + shift, bottom - 8), fill=belly)
    # face
    fy = top + int(bh * 0.42)
    lx, ly = f["look"]
    for side in (-1, 1):
        ex, ey = cx + side * 17 + shift, fy
        if f["eyes"] == "open":
            d.ellipse((ex - 6 + lx, ey - 9 + ly, ex + 6 + lx, ey + 9 + ly), fill=ol)
            d.rectangle((ex - 2 + lx, ey - 6 + ly, ex + 1 + lx, ey - 3 + ly), fill=(255, 255, 255))
        elif f["eyes"] == "half":
            d.ellipse((ex - 6 + lx, ey - 3 + ly, ex + 6 + lx, ey + 6 + ly), fill=ol)
            d.line([(ex - 8, ey - 4), (ex + 8, ey - 4)], fill=ol, width=3)
        elif f["eyes"] == "closed":
            d.arc((ex - 7, ey - 4, ex + 7, ey + 6), 0, 180, fill=ol, width=3)
        elif f["eyes"] == "happy":
            d.arc((ex - 7, ey - 2, ex + 7, ey + 10), 180, 360, fill=ol, width=4)
        elif f["eyes"] == "x":
            d.line([(ex - 6, ey - 6), (ex + 6, ey + 6)], fill=ol, width=4)
            d.line([(ex - 6, ey + 6), (ex + 6, ey - 6)], fill=ol, width=4)
        d.ellipse((ex - 7 + side * 6, ey + 11, ex + 5 + side * 6, ey + 17), fill=(255, 150, 160))
    mx, my = cx + shift, fy + 18
    mouth = f["mouth"]
    if mouth == "smile":
        d.arc((mx - 8, my - 6, mx + 8, my + 6), 20, 160, fill=ol, width=3)
    elif mouth == "open":
        d.chord((mx - 9, my - 6, mx + 9, my + 10), 0, 180, fill=ol)
        d.chord((mx - 5, my + 2, mx + 5, my + 9), 180, 360, fill=(240, 110, 120))
    elif mouth == "frown":
        d.arc((mx - 8, my, mx + 8, my + 12), 200, 340, fill=ol, width=3)
    elif mouth == "flat":
        d.line([(mx - 6, my + 2), (mx + 6, my + 2)], fill=ol, width=3)
    elif mouth == "o":
        d.ellipse((mx - 4, my - 2, mx + 4, my + 7), fill=ol)
    if f["tear"]:  # touches the cheek: attached effects survive background cleanup
        tx, ty = cx - 17 + shift, fy + 8
        d.polygon([(tx - 5, ty + 8), (tx, ty - 2), (tx + 5, ty + 8)], fill=(120, 190, 255))
        d.ellipse((tx - 5, ty + 4, tx + 5, ty + 14), fill=(120, 190, 255), outline=ol, width=2)
    if f["laptop"]:
        d.polygon([(cx - 38, bottom - 30), (cx + 38, bottom - 30), (cx + 46, bottom - 6), (cx - 46, bottom - 6)],
                  fill=(90, 96, 110), outline=ol, width=3)
        d.rectangle((cx - 30, bottom - 26, cx + 30, bottom - 12), fill=(150, 230, 255))
    for s, a in arms_front:
        arm(s, a)

    if f["dim"]:
        rgb = ImageEnhance.Brightness(layer.convert("RGB")).enhance(1.0 - f["dim"])
        rgb.putalpha(layer.getchannel("A"))
        layer = rgb
    if f["angle"]:
        layer = layer.rotate(f["angle"], resample=Image.NEAREST, center=(cx, ground))
    return layer


def local_rows(description: str, seed: int | None) -> dict[str, list]:
    from PIL import ImageOps

    pillow()
    style = local_style(description, seed)
    rows = {}
    for state, count in ROW_SPECS:
        if state == "running-left":
            continue
        rows[state] = [draw_local_frame(style, f) for f in local_poses(state, count)]
    rows["running-left"] = [ImageOps.mirror(fr) for fr in rows["running-right"]]
    return rows


# ------------------------------------------------------------------------------ remote providers
def read_template() -> tuple[str, dict[str, str]]:
    if not TEMPLATE.is_file():
        raise PetError(f"prompt template missing: {TEMPLATE} (keep the skill's assets/ next to scripts/)", 2)
    text = TEMPLATE.read_text(encoding="utf-8")
    blocks = dict(re.findall(r"```(prompt|poses)\n(.*?)```", text, flags=re.S))
    if "prompt" not in blocks or "poses" not in blocks:
        raise PetError(f"{TEMPLATE} needs a ```prompt and a ```poses block", 2)
    poses = {}
    for line in blocks["poses"].splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            poses[key.strip()] = value.strip()
    return " ".join(blocks["prompt"].split()), poses


def generated_states(poses_mode: str) -> list[str]:
    # running-left is always derived by mirroring running-right frame by frame.
    if poses_mode == "one":
        return ["idle"]
    return [s for s, _ in ROW_SPECS if s != "running-left"]


def request(url: str, data: bytes | None = None, headers: dict | None = None, method: str | None = None):
    import urllib.request  # only remote providers need it; keeps the offline path's start-up short

    return urllib.request.Request(url, data=data, headers=headers or {}, method=method)


def http(req, timeout: float, what: str) -> bytes:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()[:600].decode("utf-8", "replace")
        detail = body
        try:
            err = json.loads(body)
            e = err.get("error", err) if isinstance(err, dict) else err
            if isinstance(e, dict):
                detail = e.get("message") or e.get("detail") or body
            elif e:
                detail = str(e)
        except json.JSONDecodeError:
            pass
        raise ProviderError(f"{what}: HTTP {exc.code}: {detail.strip()[:300]}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ProviderError(f"{what}: cannot reach {req.full_url.split('?')[0]} ({reason})") from None


def decode_image(data: bytes, what: str):
    Image = pillow()
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        return im
    except Exception:  # noqa: BLE001 - any decoder failure means the provider sent no picture
        raise ProviderError(f"{what}: response is not an image ({len(data)} bytes)") from None


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, ctype) in files.items():
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n".encode()
        )
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


class GptImage:
    name = "gpt-image-1"
    transparent = True

    def __init__(self, timeout: float):
        self.key = os.environ.get("PET_OPENAI_API_KEY", "")
        if not self.key:
            raise ProviderError("gpt-image-1 needs PET_OPENAI_API_KEY (an OpenAI key; MIMO_API_KEY does not work here)")
        self.base = os.environ.get("PET_OPENAI_BASE_URL", OPENAI_BASE).rstrip("/")
        self.model = os.environ.get("PET_OPENAI_MODEL", "gpt-image-1")
        self.timeout = timeout
        self.reference: bytes | None = None

    def generate(self, prompt: str, seed: int) -> bytes:
        headers = {"Authorization": f"Bearer {self.key}"}
        params = {"model": self.model, "prompt": prompt, "size": "1024x1024", "background": "transparent",
                  "quality": "medium", "n": "1"}
        if self.reference is None:
            body = json.dumps({**params, "n": 1}).encode()
            req = request(f"{self.base}/images/generations", data=body, method="POST",
                          headers={**headers, "Content-Type": "application/json"})
        else:  # later poses are edits of the first one, which keeps the pet's identity
            body, ctype = multipart(params, {"image[]": ("reference.png", self.reference, "image/png")})
            req = request(f"{self.base}/images/edits", data=body, method="POST",
                          headers={**headers, "Content-Type": ctype})
        raw = http(req, self.timeout, self.name)
        try:
            data = base64.b64decode(json.loads(raw)["data"][0]["b64_json"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise ProviderError(f"{self.name}: unexpected response {raw[:200]!r}") from None
        return data


class Pollinations:
    name = "pollinations"
    transparent = False

    def __init__(self, timeout: float):
        self.base = os.environ.get("POLLINATIONS_BASE_URL", POLLINATIONS_BASE).rstrip("/")
        self.timeout = timeout
        self.reference = None

    def generate(self, prompt: str, seed: int) -> bytes:
        import urllib.parse

        query = urllib.parse.urlencode({"width": 1024, "height": 1024, "seed": seed, "nologo": "true"})
        url = f"{self.base}/prompt/{urllib.parse.quote(prompt, safe='')}?{query}"
        return http(request(url, headers={"User-Agent": "mimoskill-generate-pet/1"}), self.timeout, self.name)


class Replicate:
    name = "replicate"
    transparent = False

    def __init__(self, timeout: float):
        self.key = os.environ.get("REPLICATE_API_TOKEN", "")
        if not self.key:
            raise ProviderError("replicate needs REPLICATE_API_TOKEN")
        self.base = os.environ.get("REPLICATE_BASE_URL", REPLICATE_BASE).rstrip("/")
        self.model = os.environ.get("REPLICATE_MODEL", REPLICATE_MODEL)
        self.timeout = timeout
        self.reference = None

    def _json(self, req) -> dict:
        raw = http(req, self.timeout, self.name)
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise ProviderError(f"{self.name}: unexpected response {raw[:200]!r}") from None

    def generate(self, prompt: str, seed: int) -> bytes:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json", "Prefer": "wait=60"}
        body = json.dumps({"input": {"prompt": prompt, "aspect_ratio": "1:1", "output_format": "png", "seed": seed}})
        pred = self._json(request(f"{self.base}/models/{self.model}/predictions",
                                  data=body.encode(), headers=headers, method="POST"))
        deadline = time.monotonic() + self.timeout
        while pred.get("status") not in ("succeeded", "failed", "canceled"):
            get_url = (pred.get("urls") or {}).get("get")
            if not get_url or time.monotonic() > deadline:
                raise ProviderError(f"{self.name}: prediction did not finish (status {pred.get('status')!r})")
            time.sleep(float(os.environ.get("REPLICATE_POLL_SECONDS", "1")))
            pred = self._json(request(get_url, headers=headers))
        if pred["status"] != "succeeded":
            raise ProviderError(f"{self.name}: prediction {pred['status']}: {pred.get('error')}")
        output = pred.get("output")
        url = output[0] if isinstance(output, list) and output else output
        if not isinstance(url, str):
            raise ProviderError(f"{self.name}: prediction has no output URL")
        if url.startswith("data:"):
            return base64.b64decode(url.split(",", 1)[1])
        return http(request(url, headers={"Authorization": f"Bearer {self.key}"}), self.timeout, self.name)


def remove_key_background(im):
    """Make a flat background transparent: flood it from the border, drop enclosed patches of the
    same colour, then trim one pixel of edge where the background colour bleeds into the art."""
    Image = pillow()
    from PIL import ImageDraw, ImageFilter

    rgb = im.convert("RGB")
    w, h = rgb.size
    corners = [rgb.getpixel(p) for p in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1))]
    background = max(set(corners), key=corners.count)
    marker = (255, 0, 255) if sum(abs(a - b) for a, b in zip(background, (255, 0, 255))) > 120 else (0, 0, 255)
    step = max(1, min(w, h) // 16)
    seeds = [(x, 0) for x in range(0, w, step)] + [(x, h - 1) for x in range(0, w, step)]
    seeds += [(0, y) for y in range(0, h, step)] + [(w - 1, y) for y in range(0, h, step)]
    for x, y in seeds:
        px = rgb.getpixel((x, y))
        if px != marker and sum(abs(a - b) for a, b in zip(px, background)) < 90:
            ImageDraw.floodfill(rgb, (x, y), marker, thresh=70)
    mask = Image.new("L", (w, h), 255)
    mask_px, rgb_px = mask.load(), rgb.load()
    br, bg, bb = background
    for y in range(h):
        for x in range(w):
            r, g, b = rgb_px[x, y]
            if (r, g, b) == marker or abs(r - br) + abs(g - bg) + abs(b - bb) < 60:
                mask_px[x, y] = 0
    out = im.convert("RGBA")
    out.putalpha(mask.filter(ImageFilter.MinFilter(3)))
    return out


def key_background(description: str) -> str:
    """Ask for a key colour the pet does not use: magenta for green pets, green otherwise."""
    if re.search(r"green|frog|leaf|plant|cactus|mint|lime|turtle|dino", description, re.I):
        return "flat solid pure magenta (#FF00FF) chroma-key background, nothing else"
    return KEY_BACKGROUND


def resize_rgba(im, size):
    """Resize in premultiplied alpha so transparent pixels' colour cannot bleed into the edges."""
    Image = pillow()
    return im.convert("RGBa").resize(size, Image.LANCZOS).convert("RGBA")


def fit_pose(im, transparent: bool):
    """Cut the character out and fit it into a cell with room to jump and tilt."""
    Image = pillow()
    im = im.convert("RGBA")
    scale = min(1.0, 320 / max(im.size))  # small first: background removal is per-pixel Python
    im = resize_rgba(im, (max(1, round(im.width * scale)), max(1, round(im.height * scale))))
    if not transparent or im.getchannel("A").getextrema()[0] == 255:
        im = remove_key_background(im)
    bbox = im.getchannel("A").point(lambda a: 255 if a > 24 else 0).getbbox()
    if bbox is None:
        raise ProviderError("generated image is empty after removing the background")
    im = im.crop(bbox)
    scale = min(156 / im.width, 150 / im.height)
    im = resize_rgba(im, (max(1, round(im.width * scale)), max(1, round(im.height * scale))))
    im.putalpha(im.getchannel("A").point(lambda a: 0 if a < 8 else a))
    if im.width < 40 or im.height < 40:
        raise ProviderError("generated character is too small after removing the background")
    return im


def pose_frames(pose, state: str, count: int) -> list:
    """Animate one generated pose for a row: the motions of the Codex states, applied to the art."""
    Image = pillow()
    from PIL import ImageEnhance

    motion = {
        "idle": dict(dy=(0, 1, 2, 2, 1, 0), sy=(1.0, 0.99, 0.98, 0.98, 0.99, 1.0)),
        "running-right": dict(dy=(0, -4, -6, -4, 0, -4, -6, -4), dx=(-3, -1, 1, 3, 3, 1, -1, -3),
                              angle=(-3, -6, -3, -6, -3, -6, -3, -6)),
        "waving": dict(angle=(-5, 5, -5, 4)),
        "jumping": dict(dy=(6, -16, -34, -16, 4), sy=(0.9, 1.05, 1.0, 1.04, 0.92), sx=(1.08, 0.96, 1.0, 0.97, 1.06)),
        "failed": dict(dy=(0, 2, 4, 6, 8, 8, 8, 8), angle=(0, 2, -2, 3, -3, 2, -2, 0), dim=(0, .05, .1, .15, .2, .2, .2, .2)),
        "waiting": dict(dx=(-2, 0, 2, 2, 0, -2)),
        "running": dict(dy=(0, -2, 0, -2, 0, -2), dx=(0, 1, 0, -1, 0, 1)),
        "review": dict(angle=(3, 4, 4, 3, 2, 3)),
    }[state]
    frames = []
    for i in range(count):
        def get(key, default):
            return motion.get(key, (default,) * count)[i]

        sx, sy = get("sx", 1.0), get("sy", 1.0)
        art = resize_rgba(pose, (max(1, round(pose.width * sx)), max(1, round(pose.height * sy))))
        if get("dim", 0):
            rgb = ImageEnhance.Brightness(art.convert("RGB")).enhance(1 - get("dim", 0))
            rgb.putalpha(art.getchannel("A"))
            art = rgb
        cell = Image.new("RGBA", (CELL_W, CELL_H))
        x = (CELL_W - art.width) // 2 + get("dx", 0)
        y = 198 - art.height + get("dy", 0)
        cell.alpha_composite(art, (x, max(0, y)))
        if get("angle", 0):
            cell = cell.convert("RGBa").rotate(get("angle", 0), resample=Image.BICUBIC,
                                               center=(CELL_W // 2, 198)).convert("RGBA")
        # near-invisible resampling dust would count as content in otherwise empty areas
        cell.putalpha(cell.getchannel("A").point(lambda a: 0 if a < 8 else a))
        frames.append(cell)
    return frames


def remote_rows(provider, description: str, seed: int, poses_mode: str, workers: int) -> dict[str, list]:
    from PIL import ImageOps

    prompt_tpl, pose_text = read_template()
    background = "fully transparent background" if provider.transparent else key_background(description)
    states = generated_states(poses_mode)

    def prompt_for(state):
        return prompt_tpl.format(description=description, pose=pose_text.get(state, state), background=background)

    def make(state):
        data = provider.generate(prompt_for(state), seed)
        return state, fit_pose(decode_image(data, provider.name), provider.transparent)

    print(f"generate_pet: asking {provider.name} for {len(states)} pose(s): {', '.join(states)}", file=sys.stderr)
    poses = dict([make(states[0])])  # first pose alone: it becomes the reference for the rest
    if len(states) > 1:
        if provider.name == "gpt-image-1":
            buf = io.BytesIO()
            poses[states[0]].save(buf, "PNG")
            provider.reference = buf.getvalue()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            poses.update(pool.map(make, states[1:]))
    rows = {}
    for state, count in ROW_SPECS:
        if state != "running-left":
            rows[state] = pose_frames(poses.get(state, poses["idle"]), state, count)
    rows["running-left"] = [ImageOps.mirror(fr) for fr in rows["running-right"]]
    return rows


def make_provider(name: str, timeout: float):
    return {"gpt-image-1": GptImage, "pollinations": Pollinations, "replicate": Replicate}[name](timeout)


def auto_choice() -> str:
    if os.environ.get("PET_OPENAI_API_KEY"):
        return "gpt-image-1"
    if os.environ.get("REPLICATE_API_TOKEN"):
        return "replicate"
    return "pollinations"


# ------------------------------------------------------------------------------------------ CLI
def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:48].strip("-") or "mimo-pet"


def default_name(description: str) -> str:
    words = re.findall(r"[A-Za-z]+", description)
    for w in words:
        if w.lower() in EAR_WORDS:
            return w.capitalize()
    return "Mimo Pet"


def build_rows(args) -> tuple[dict, str]:
    provider = args.provider
    if provider == "local":
        return local_rows(args.description, args.seed), "local"
    chosen = auto_choice() if provider == "auto" else provider
    seed = args.seed if args.seed is not None else int(hashlib.sha256(args.description.encode()).hexdigest()[:8], 16)
    try:
        return remote_rows(make_provider(chosen, args.timeout), args.description, seed, args.poses, args.workers), chosen
    except ProviderError as exc:
        if provider != "auto":
            raise ProviderError(f"{exc}\nNo pet was written. Try --provider local (offline) or --provider auto.") from None
        print(f"generate_pet: {exc}\ngenerate_pet: falling back to --provider local "
              "(drawn offline with Pillow; no network needed)", file=sys.stderr)
        return local_rows(args.description, args.seed), "local"


def cmd_validate(paths: list[Path]) -> int:
    return max(validate_one(p) for p in paths)


def validate_one(pet_dir: Path) -> int:
    if not pet_dir.exists():
        print(f"INVALID {pet_dir}: no such file or folder", file=sys.stderr)
        return 1
    if pet_dir.is_file():
        errors = validate_sheet(pet_dir)
        warnings = []
        if "__no_pillow__" in errors:
            errors.remove("__no_pillow__")
            warnings.append("Pillow is not installed: cell-by-cell checks skipped (pip install pillow for the full check)")
    else:
        errors, warnings = validate_pet_dir(pet_dir)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if errors:
        print(f"INVALID {pet_dir}:", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    scope = " (manifest and size only: cell checks need Pillow)" if warnings and "Pillow" in warnings[-1] else ""
    print(f"OK: {pet_dir} is a valid Codex pet ({COLUMNS}x{ROWS} cells of {CELL_W}x{CELL_H}, {SHEET_W}x{SHEET_H}){scope}")
    return 0


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="generate_pet.py",
        description="Generate a Codex pet (pet.json + 1536x1872 spritesheet.webp) for Codex running on MiMo.",
        epilog="Install the result with: bash install_pet.sh <bundle-dir>",
    )
    ap.add_argument("--description", "-d", help="what the pet looks like, e.g. 'a chibi orange fox with a green scarf'")
    ap.add_argument("--name", help="display name (default: derived from the description)")
    ap.add_argument("--id", dest="pet_id", help="folder/id slug (default: from the name)")
    ap.add_argument("--provider", choices=PROVIDERS, default="auto")
    out = ap.add_mutually_exclusive_group(required=True)
    out.add_argument("--bundle", type=Path, help="write a pet folder: <dir>/pet.json + <dir>/spritesheet.webp")
    out.add_argument("--out", type=Path, help="write only the sprite sheet (.webp or .png)")
    out.add_argument("--validate", type=Path, nargs="+", metavar="PATH",
                     help="validate pet folders or sheets against the Codex format and exit")
    ap.add_argument("--poses", choices=("one", "per-state"), default="one",
                    help="remote providers: one generated picture animated for every row (consistent look, one "
                         "call) or one picture per state (8 calls; pollinations/replicate may drift in look)")
    ap.add_argument("--seed", type=int, help="seed for providers that take one, and for local colours")
    ap.add_argument("--timeout", type=float, default=120.0, help="per HTTP call, seconds (default 120)")
    ap.add_argument("--workers", type=int, default=4, help="parallel provider calls for --poses per-state")
    ap.add_argument("--preview", type=Path, help="also write a contact-sheet PNG for a quick look")
    args = ap.parse_args(argv)
    if args.validate is None and not (args.description or "").strip():
        ap.error("--description is required (what should the pet look like?)")
    if args.out is not None and args.out.suffix.lower() not in (".webp", ".png"):
        ap.error(f"--out must end in .webp or .png (Codex reads WebP or PNG sheets), got {args.out.name}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.validate is not None:
        return cmd_validate(args.validate)
    pillow()
    rows, used = build_rows(args)
    sheet = assemble(rows)
    errors = check_cells(sheet)
    if errors:  # never hand an invalid sheet to the installer
        raise PetError("generated sheet failed validation:\n  - " + "\n  - ".join(errors))
    name = (args.name or default_name(args.description)).strip()
    if args.out is not None:
        save_sheet(sheet, args.out)
        target = args.out
        print(f"wrote {args.out} ({SHEET_W}x{SHEET_H}, provider {used})")
    else:
        pet_dir = args.bundle
        pet_dir.mkdir(parents=True, exist_ok=True)
        save_sheet(sheet, pet_dir / SHEET_FILE)
        manifest = {
            "id": args.pet_id or slug(name),
            "displayName": name,
            "description": args.description.strip(),
            "spritesheetPath": SHEET_FILE,
        }
        (pet_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        # The pixels were checked cell by cell above; re-check what Codex reads first: manifest and header.
        _, errors, _ = check_manifest(pet_dir)
        fmt, w, h = sniff_image(pet_dir / SHEET_FILE)
        if errors or (fmt, w, h) != ("WEBP", SHEET_W, SHEET_H):
            raise PetError("written pet failed validation:\n  - " + "\n  - ".join(errors or [f"{fmt} {w}x{h}"]))
        target = pet_dir
        print(f"wrote {pet_dir}/{MANIFEST} and {pet_dir}/{SHEET_FILE} (pet '{name}', provider {used})")
    if args.preview:
        save_preview(sheet, args.preview)
        print(f"wrote preview {args.preview}")
    print(f"next: bash {HERE / 'install_pet.sh'} {target}" + ("" if args.bundle else f' "{name}"'))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PetError as exc:
        print(f"generate_pet: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
