"""`launch.py doctor`, offline: each check against fakes (strict fake MiMo, a real proxy, a temp CODEX_HOME, a fake codex)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mimo2codex import proxyproc
from mimo2codex.cli import client_config, doctor
from mimo2codex.translate import rules
from mimo2codex.fakes.mimo import FakeMimo

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-doctor-secret-3b7e91"
MIMO = rules.load("mimo")


def fake_codex(bin_dir: Path, version: str = "codex-cli 0.171.0") -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "codex"
    exe.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && echo '{version}' && exit 0\nexit 2\n")
    exe.chmod(0o755)
    return exe


def codex_home(tmp_path: Path, port: int, *, token: bool = False, with_catalog: bool = True) -> Path:
    """A CODEX_HOME written from print-config's own text, as a user following it would."""
    home = tmp_path / "codex-home"
    home.mkdir(exist_ok=True)
    catalog = home / "mimo-models.json"
    if with_catalog:
        catalog.write_text(json.dumps(client_config.model_catalog(MIMO)))
    (home / "config.toml").write_text(client_config.codex_config(MIMO, "127.0.0.1", port, catalog=str(catalog) if with_catalog else None) + "\n")
    (home / "auth.json").write_text(client_config.auth_json(token))
    return home


def test_versions_of_this_venv_pass():
    c = doctor.versions()
    assert c.ok and c.what.startswith(f"Python {sys.version.split()[0]}, mitmproxy 1")


def test_key_is_checked_and_never_shown():
    assert doctor.key(MIMO, {"MIMO_API_KEY": KEY}).ok and KEY not in doctor.key(MIMO, {"MIMO_API_KEY": KEY}).what
    missing = doctor.key(MIMO, {})
    assert not missing.ok and "export MIMO_API_KEY=" in missing.fix
    assert doctor.key(rules.load("local"), {}).ok  # auth.required: false


def test_upstream_reachable_key_accepted_or_refused_or_unreachable():
    with FakeMimo(keys=(KEY,)).start() as fake:
        good = doctor.upstream(MIMO, fake.base_url, KEY, timeout=5)
        assert good.ok and "key accepted" in good.what
        bad = doctor.upstream(MIMO, fake.base_url, "sk-wrong-key", timeout=5)
        assert not bad.ok and "refused the key (HTTP 401)" in bad.what and "MIMO_API_KEY" in bad.fix
        assert "token-plan" in bad.fix  # MiMo's other hosts: a tp- key on the pay-as-you-go host is the usual cause
    gone = doctor.upstream(MIMO, f"http://127.0.0.1:{proxyproc.free_port()}/v1", KEY, timeout=2)
    assert not gone.ok and "not reachable" in gone.what and "MIMO_BASE_URL" in gone.fix
    assert all(KEY not in c.what + c.fix for c in (good, bad, gone))


class _Other(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>someone else</html>")

    def log_message(self, *a):
        pass


def test_port_free_held_by_another_program_or_by_us(tmp_path):
    free = proxyproc.free_port()
    assert doctor.port("127.0.0.1", free, "", timeout=2).ok
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        c = doctor.port("127.0.0.1", other.server_address[1], "", timeout=2)
        assert not c.ok and "another program" in c.what and "--port" in c.fix
    finally:
        other.shutdown()
        other.server_close()
    with FakeMimo(keys=(KEY,)).start() as fake, \
            proxyproc.start(fake.base_url, key=KEY, env={"MIMO2CODEX_ACCESS_TOKEN": "tok-doctor"},
                            log_path=tmp_path / "proxy.log") as proxy:
        locked = doctor.port("127.0.0.1", proxy.port, "", timeout=5)
        assert not locked.ok and "requires an access token" in locked.what
        ours = doctor.port("127.0.0.1", proxy.port, "tok-doctor", timeout=5)
        assert ours.ok and "is mimo2codex" in ours.what and fake.base_url in ours.what


def test_codex_config_points_at_us_or_says_what_is_off(tmp_path):
    url = client_config.proxy_url("127.0.0.1", 8788)
    home = codex_home(tmp_path, 8788)
    ok, config = doctor.codex_config(home, MIMO, url, token="")
    assert ok.ok and 'model_provider "mimo"' in ok.what and config["model_provider"] == "mimo"
    elsewhere, _ = doctor.codex_config(home, MIMO, client_config.proxy_url("127.0.0.1", 9999), token="")
    assert not elsewhere.ok and "no model provider points at http://127.0.0.1:9999/v1" in elsewhere.what
    text = (home / "config.toml").read_text()
    (home / "config.toml").write_text(text.replace('model_provider = "mimo"', 'model_provider = "openai"'))
    unselected, _ = doctor.codex_config(home, MIMO, url, token="")
    assert not unselected.ok and 'model_provider = "mimo"' in unselected.fix
    (home / "config.toml").write_text(text.replace('wire_api = "responses"', 'wire_api = "chat"'))
    chat, _ = doctor.codex_config(home, MIMO, url, token="")
    assert not chat.ok and 'wire_api = "responses"' in chat.fix
    (home / "config.toml").write_text(text)
    token, _ = doctor.codex_config(home, MIMO, url, token="tok-x")  # auth.json still has the placeholder
    assert not token.ok and "access token" in token.what and "tok-x" not in token.what + token.fix
    (home / "config.toml").write_text("model = [\n")
    broken, _ = doctor.codex_config(home, MIMO, url, token="")
    assert not broken.ok and "not valid TOML" in broken.what
    missing, _ = doctor.codex_config(tmp_path / "nowhere", MIMO, url, token="")
    assert not missing.ok and "does not exist" in missing.what and "print-config" in missing.fix


def test_catalog_present_and_listing_the_model(tmp_path):
    home = codex_home(tmp_path, 8788)
    _, config = doctor.codex_config(home, MIMO, client_config.proxy_url("127.0.0.1", 8788), token="")
    assert doctor.catalog(home, MIMO, config).ok
    assert not doctor.catalog(home, MIMO, {**config, "model": "gpt-5"}).ok
    (home / "mimo-models.json").write_text("{")
    assert not doctor.catalog(home, MIMO, config).ok
    none = doctor.catalog(home, MIMO, {})
    assert not none.ok and "setup-codex" in none.fix and "mimo2codex-mimo-catalog.json" in none.fix


def test_codex_cli_found_or_not(tmp_path):
    exe = fake_codex(tmp_path / "bin")
    found = doctor.codex_cli(str(tmp_path / "bin"))
    assert found.ok and "codex-cli 0.171.0" in found.what and str(exe) in found.what
    assert not doctor.codex_cli(str(tmp_path / "empty")).ok


def run_doctor(port: int, env: dict) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MIMO_", "MIMO2CODEX_", "CODEX_HOME"))}
    full.update(env)
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), "doctor", "--port", str(port), "--timeout", "5"],
                          capture_output=True, text=True, timeout=90, env=full, stdin=subprocess.DEVNULL)


@pytest.mark.e2e
def test_doctor_all_good_then_one_thing_wrong(tmp_path):
    fake_codex(tmp_path / "bin")
    with FakeMimo(keys=(KEY,)).start() as fake, \
            proxyproc.start(fake.base_url, key=KEY, log_path=tmp_path / "proxy.log") as proxy:
        env = {"MIMO_API_KEY": KEY, "MIMO_BASE_URL": fake.base_url, "CODEX_HOME": str(codex_home(tmp_path, proxy.port)),
               "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        good = run_doctor(proxy.port, env)
        assert good.returncode == 0, good.stdout + good.stderr
        lines = good.stdout.splitlines()
        assert [line[0] for line in lines[1:8]] == ["✓"] * 7 and lines[-1] == "all good"
        assert ["mitmproxy" in lines[1], "MIMO_API_KEY" in lines[2], fake.base_url in lines[3], "is mimo2codex" in lines[4],
                "config.toml" in lines[5], "models" in lines[6], "codex-cli" in lines[7]] == [True] * 7  # in this order
        bad = run_doctor(proxy.port, {**env, "MIMO_API_KEY": "sk-not-the-key"})
    assert bad.returncode == 1 and "refused the key" in bad.stdout and "1 problem found" in bad.stdout
    for r in (good, bad):
        assert KEY not in r.stdout + r.stderr and "sk-not-the-key" not in r.stdout + r.stderr and "Traceback" not in r.stderr


def test_fix_lines_pick_the_rules_file_that_was_given_not_the_bundled_provider(tmp_path, capsys):
    from mimo2codex.cli import commands

    own = tmp_path / "my rules.yaml"  # a user's copy: its provider id is still "mimo"
    own.write_text((Path(rules.RULES_DIR) / "mimo.yaml").read_text())
    assert rules.load(own).provider == "mimo"
    assert doctor.selector(str(own), rules.load(own)) == f"--rules '{own}'"
    assert doctor.selector("deepseek", rules.load("deepseek")) == "--provider deepseek"
    assert doctor.selector(None, MIMO) == "--provider mimo"
    args = commands.parser().parse_args(["doctor", "--rules", str(own), "--base-url", "http://127.0.0.1:9/v1",
                                         "--port", "9", "--timeout", "1"])
    doctor.run(args, environ={"CODEX_HOME": str(tmp_path / "nowhere")}, codex_path=str(tmp_path))
    fixes = [line for line in capsys.readouterr().out.splitlines() if "print-config" in line or "setup-codex" in line]
    assert len(fixes) == 2 and all(f"--rules '{own}'" in line and "--provider" not in line for line in fixes), fixes
