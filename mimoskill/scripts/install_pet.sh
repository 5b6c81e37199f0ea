#!/usr/bin/env bash
# Install a pet into Codex: ${CODEX_HOME:-$HOME/.codex}/pets/<id>/{pet.json,spritesheet.webp}.
#
#   bash install_pet.sh /tmp/fox                      # a folder made by generate_pet.py --bundle
#   bash install_pet.sh --bundle /tmp/fox "Foxy"      # same, renamed
#   bash install_pet.sh /tmp/fox.webp "Foxy"          # a bare sheet from generate_pet.py --out
#   bash install_pet.sh --dry-run /tmp/fox            # say what would happen, change nothing
#
# Where Codex looks (openai/codex codex-rs/tui/src/pets/model.rs, load_custom_pet; picker.rs):
# $CODEX_HOME/pets/<dir>/pet.json, offered in /pets as "custom:<dir>". CODEX_HOME defaults to ~/.codex
# on macOS, Linux and Windows (Git Bash maps $HOME to %USERPROFILE%).
#
# The pet is validated (generate_pet.py --validate) before anything in CODEX_HOME is touched, is
# staged next to its destination and moved into place, and re-running with the same input is a no-op.
# Exit codes: 0 installed/unchanged, 1 invalid pet, 2 usage error.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"
DRY_RUN=0
SOURCE=""
NAME=""
PET_ID=""
DESCRIPTION=""
CODEX_HOME_DIR="${CODEX_HOME:-$HOME/.codex}"

usage() {
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
  echo "options: --dry-run  --bundle DIR  --name NAME  --id ID  --description TEXT  --codex-home DIR"
}
die() { echo "install_pet: $1" >&2; exit "${2:-2}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    -n|--dry-run) DRY_RUN=1 ;;
    --bundle) [ $# -ge 2 ] || die "--bundle needs a folder"; SOURCE="$2"; shift ;;
    --name) [ $# -ge 2 ] || die "--name needs a value"; NAME="$2"; shift ;;
    --id) [ $# -ge 2 ] || die "--id needs a value"; PET_ID="$2"; shift ;;
    --description) [ $# -ge 2 ] || die "--description needs a value"; DESCRIPTION="$2"; shift ;;
    --codex-home) [ $# -ge 2 ] || die "--codex-home needs a folder"; CODEX_HOME_DIR="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
      if [ -z "$SOURCE" ]; then SOURCE="$1"
      elif [ -z "$NAME" ]; then NAME="$1"
      else die "unexpected argument: $1"; fi ;;
  esac
  shift
done

[ -n "$SOURCE" ] || { usage >&2; exit 2; }
[ -e "$SOURCE" ] || die "no such file or folder: $SOURCE"
command -v "$PY" >/dev/null 2>&1 || die "$PY not found; set PYTHON=/path/to/python3"

TMP_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/mimoskill-pet.XXXXXX")"
STAGE_PARENT=""
cleanup() {
  rm -rf "$TMP_ROOT"
  if [ -n "$STAGE_PARENT" ]; then rm -rf "$STAGE_PARENT"; fi
}
trap cleanup EXIT

# 1. Build the pet folder in a scratch directory (pet.json rewritten so id == folder name)...
BUILD="$TMP_ROOT/pet"
mkdir -p "$BUILD"
if [ -d "$SOURCE" ]; then
  [ -f "$SOURCE/pet.json" ] || die "$SOURCE has no pet.json (make one with generate_pet.py --bundle)" 1
  MODE=bundle
else
  case "$SOURCE" in
    *.webp|*.WEBP|*.png|*.PNG) MODE=sheet ;;
    *) die "$SOURCE: expected a pet folder or a .webp/.png sprite sheet" ;;
  esac
fi

# 2. ...and validate it with generate_pet.py's checks before anything in CODEX_HOME is touched.
INFO="$("$PY" - "$MODE" "$SOURCE" "$BUILD" "$NAME" "$PET_ID" "$DESCRIPTION" "$HERE" <<'PYEOF'
import json, re, shutil, sys
from pathlib import Path

mode, source, build, name, pet_id, description, here = sys.argv[1:8]
source, build = Path(source), Path(build)

def fail(message, code=1):
    print(f"install_pet: {message}", file=sys.stderr)
    sys.exit(code)

def slug(text):
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:48].strip("-")

if mode == "bundle":
    try:
        manifest = json.loads((source / "pet.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"{source}/pet.json is not valid JSON: {exc}")
    if not isinstance(manifest, dict):
        fail(f"{source}/pet.json must be a JSON object")
    sheet_rel = str(manifest.get("spritesheetPath") or "spritesheet.webp").strip()
    rel = Path(sheet_rel)
    if rel.is_absolute() or ".." in rel.parts:
        fail(f"spritesheetPath {sheet_rel!r} must stay inside the pet folder")
    sheet = source / rel
    if not sheet.is_file():
        fail(f"missing spritesheet {sheet}")
else:
    manifest = {}
    sheet = source

ext = sheet.suffix.lower()
if ext not in (".webp", ".png"):
    fail(f"{sheet.name}: Codex reads .webp or .png sprite sheets", 2)
if name:
    manifest["displayName"] = name
display = str(manifest.get("displayName") or manifest.get("id") or "").strip()
if not display:
    display = sheet.stem if mode == "sheet" else source.resolve().name
    manifest["displayName"] = display
final_id = slug(pet_id or (str(manifest.get("id") or "") if not name else "") or display) or "mimo-pet"
if final_id == "disabled":  # Codex's picker reserves this id for "Disable terminal pets"
    final_id = "pet-disabled"
manifest["id"] = final_id
if description:
    manifest["description"] = description
manifest.setdefault("description", f"{display}, a Codex pet made with mimoskill.")
target = "spritesheet" + ext
shutil.copyfile(sheet, build / target)
manifest["spritesheetPath"] = target
(build / "pet.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

sys.path.insert(0, here)
sys.dont_write_bytecode = True  # keep the skill folder clean
import generate_pet  # noqa: E402  (same checks as `generate_pet.py --validate`)

errors, warnings = generate_pet.validate_pet_dir(build)
for w in warnings:
    print(f"warning: {w}", file=sys.stderr)
if errors:
    print(f"INVALID {source}:", file=sys.stderr)
    for e in errors:
        print(f"  - {e.replace(str(build), str(source))}", file=sys.stderr)
    fail("not installed: the pet does not match the format Codex loads "
         "(fix it or regenerate with generate_pet.py --bundle)")
print(f"{final_id}\t{display}\t{target}")
PYEOF
)" || exit $?
FINAL_ID="$(printf '%s' "$INFO" | cut -f1)"
DISPLAY="$(printf '%s' "$INFO" | cut -f2)"
SHEET_NAME="$(printf '%s' "$INFO" | cut -f3)"

PETS_DIR="$CODEX_HOME_DIR/pets"
DEST="$PETS_DIR/$FINAL_ID"

# 3. Decide: new, unchanged or update (byte-for-byte comparison of the whole folder).
if [ -d "$DEST" ] && diff -r -q "$BUILD" "$DEST" >/dev/null 2>&1; then
  ACTION=unchanged
elif [ -e "$DEST" ]; then
  ACTION=update
else
  ACTION=install
fi

if [ "$DRY_RUN" = 1 ]; then
  case "$ACTION" in
    unchanged) echo "dry run: '$DISPLAY' is already installed at $DEST (identical); nothing would change." ;;
    update) echo "dry run: would replace the existing pet at $DEST with '$DISPLAY' (pet.json + $SHEET_NAME)." ;;
    install) echo "dry run: would install '$DISPLAY' into $DEST (pet.json + $SHEET_NAME)." ;;
  esac
  echo "dry run: CODEX_HOME is $CODEX_HOME_DIR; nothing was written."
  exit 0
fi

if [ "$ACTION" = unchanged ]; then
  echo "'$DISPLAY' is already installed at $DEST (identical files); nothing to do."
else
  mkdir -p "$PETS_DIR"
  # Stage beside pets/ (same filesystem, so the final mv is a rename) but outside it, so the
  # /pets picker never lists a half-copied folder.
  STAGE_PARENT="$(mktemp -d "$CODEX_HOME_DIR/.mimoskill-install.XXXXXX")"
  cp -R "$BUILD" "$STAGE_PARENT/new"
  if [ "$ACTION" = update ]; then
    mv "$DEST" "$STAGE_PARENT/old"
  fi
  mv "$STAGE_PARENT/new" "$DEST"
  if [ "$ACTION" = update ]; then
    echo "Updated pet '$DISPLAY' at $DEST (previous version replaced)."
  else
    echo "Installed pet '$DISPLAY' at $DEST."
  fi
fi
echo "Files: $DEST/pet.json, $DEST/$SHEET_NAME"
echo "Use it: Codex CLI -> type /pets and pick '$DISPLAY' (selector custom:$FINAL_ID);"
echo "        Codex app -> Settings > Appearance > Pets (refresh custom pets)."
