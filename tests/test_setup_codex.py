"""`launch.py setup-codex` (mimo2codex/cli/setup_codex.py): the text-level merge of config.toml, auth.json
and the catalog, backups, --dry-run and CODEX_HOME. The real Codex using the result is in
tests/test_codex_day.py."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tomllib

from mimo2codex.translate import rules
from mimo2codex.cli import setup_codex
from mimo2codex.translate.secrets import TOKEN_ENV
from tests.support.codex_cli import ROOT

USER_CONFIG = """# my settings
model = "gpt-5"
approval_policy = "never"  # keep this comment

[model_providers.mimo]
name = "stale"
base_url = "http://old:1/v1"

[model_providers.mimo.http_headers]
X-Old = "1"

[profiles.fast]
model = "o3"

[model_providers.openai-proxy]
name = "mine"
base_url = "http://elsewhere/v1"
"""


def setup(home, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("CODEX_HOME", TOKEN_ENV)}
    env["CODEX_HOME"] = str(home)
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), "setup-codex", "--port", "9123", *args],
                          capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def test_merge_replaces_our_keys_and_table_and_keeps_the_rest():
    r = rules.load("mimo")
    cat = list(setup_codex.planned(r, "127.0.0.1", 9123, ROOT / "no-such-home"))[-1]
    merged = setup_codex.merge_config(USER_CONFIG, {"model": '"m"', "model_provider": '"mimo"'}, "model_providers.mimo",
                                      ['name = "ours"', "supports_websockets = false"])
    cfg = tomllib.loads(merged)
    assert cfg["model"] == "m" and cfg["model_provider"] == "mimo" and cfg["approval_policy"] == "never"
    assert cfg["model_providers"]["mimo"] == {"name": "ours", "supports_websockets": False}  # stale sub-table gone too
    assert cfg["model_providers"]["openai-proxy"]["name"] == "mine" and cfg["profiles"]["fast"]["model"] == "o3"
    assert "# my settings" in merged and "# keep this comment" in merged
    # merging twice changes nothing
    again = setup_codex.merge_config(merged, {"model": '"m"', "model_provider": '"mimo"'}, "model_providers.mimo",
                                     ['name = "ours"', "supports_websockets = false"])
    assert again == merged
    assert cat.name == "mimo2codex-mimo-catalog.json"


def test_setup_codex_writes_all_three_files_with_backups_and_honours_codex_home(tmp_path):
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(USER_CONFIG)
    (home / "auth.json").write_text(json.dumps({"OPENAI_API_KEY": "sk-old", "tokens": {"id": "keep"}}))
    p = setup(home)
    assert p.returncode == 0, p.stderr
    cfg = tomllib.loads((home / "config.toml").read_text())
    cat = home / "mimo2codex-mimo-catalog.json"
    assert cfg["model_provider"] == "mimo" and cfg["model_catalog_json"] == str(cat)
    prov = cfg["model_providers"]["mimo"]
    assert prov["base_url"] == "http://127.0.0.1:9123/v1" and prov["supports_websockets"] is False
    assert prov["wire_api"] == "responses" and prov["requires_openai_auth"] is True
    assert {m["apply_patch_tool_type"] for m in json.loads(cat.read_text())["models"]} == {"freeform"}
    auth = json.loads((home / "auth.json").read_text())
    assert auth == {"OPENAI_API_KEY": "mimo2codex-local", "tokens": {"id": "keep"}}
    assert (home / "auth.json").stat().st_mode & 0o077 == 0
    backups = sorted(x.name.split(".bak-")[0] for x in home.glob("*.bak-*"))
    assert backups == ["auth.json", "config.toml"]  # the catalog was new: nothing to back up
    assert next(home.glob("config.toml.bak-*")).read_text() == USER_CONFIG
    again = setup(home)
    assert again.stdout.count("unchanged:") == 3, again.stdout


def test_dry_run_prints_the_diff_and_writes_nothing(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "config.toml").write_text(USER_CONFIG)
    p = setup(home, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert '-model = "gpt-5"' in p.stdout and "+supports_websockets = false" in p.stdout
    assert "nothing written" in p.stdout
    assert sorted(x.name for x in home.iterdir()) == ["config.toml"]
    assert (home / "config.toml").read_text() == USER_CONFIG


def test_broken_config_is_left_alone_with_a_reason(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "config.toml").write_text("model = \n")
    p = setup(home)
    assert p.returncode != 0 and "not valid TOML" in p.stderr + p.stdout
    assert sorted(x.name for x in home.iterdir()) == ["config.toml"]


def test_print_config_includes_the_catalog_step_and_refuses_websockets(tmp_path):
    env = dict(os.environ, CODEX_HOME=str(tmp_path))
    for cmd in ("print-config", "print-cc-switch"):
        out = subprocess.run([sys.executable, str(ROOT / "launch.py"), cmd], capture_output=True, text=True,
                             timeout=60, env=env, stdin=subprocess.DEVNULL).stdout
        cat = tmp_path / "mimo2codex-mimo-catalog.json"
        assert f"print-config --catalog {cat}" in out, out
        assert f'model_catalog_json = "{cat}"' in out and "supports_websockets = false" in out, out
        assert not cat.exists()  # printing writes nothing


def test_the_printed_catalog_step_writes_the_chosen_providers_models(tmp_path):
    env = dict(os.environ, CODEX_HOME=str(tmp_path))
    launch = [sys.executable, str(ROOT / "launch.py")]
    out = subprocess.run([*launch, "print-config", "--provider", "deepseek"], capture_output=True, text=True,
                         timeout=60, env=env, stdin=subprocess.DEVNULL).stdout
    step = next(line for line in out.splitlines() if line.startswith("python3 launch.py print-config"))
    subprocess.run([*launch, *shlex.split(step)[2:]], check=True, capture_output=True, timeout=60, env=env,
                   stdin=subprocess.DEVNULL)
    slugs = [m["slug"] for m in json.loads((tmp_path / "mimo2codex-deepseek-catalog.json").read_text())["models"]]
    assert "deepseek-v4-pro" in slugs and not any(s.startswith("mimo") for s in slugs), slugs


def test_an_unwritable_catalog_path_is_a_message_not_a_traceback(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "launch.py"), "print-config", "--catalog", str(tmp_path / "no" / "c.json")],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 1 and "cannot write the catalog" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_a_codex_home_that_is_a_file_is_a_message_not_a_traceback(tmp_path):
    home = tmp_path / "codex"
    home.write_text("not a directory")
    p = setup(home)
    assert p.returncode == 1 and "cannot create the Codex home" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_access_token_goes_into_auth_json_but_never_into_the_printed_diff(tmp_path):
    home = tmp_path / "h"
    env_token = "local-token-0123456789"
    p = subprocess.run([sys.executable, str(ROOT / "launch.py"), "setup-codex"], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, CODEX_HOME=str(home), **{TOKEN_ENV: env_token}),
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert json.loads((home / "auth.json").read_text())["OPENAI_API_KEY"] == env_token
    assert env_token not in p.stdout + p.stderr and "<access token>" in p.stdout
