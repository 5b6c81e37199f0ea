"""The installable package: a wheel built from this checkout, installed into a fresh venv, runs.

Offline: the wheel is built with the suite's setuptools (no build isolation) and installed with
--no-deps; the suite venv's site-packages (mitmproxy, PyYAML) is made visible to the fresh venv by
a .pth file. Every command runs outside the checkout, so only the installed copy can answer.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from mimo2codex import proxyproc

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so the build's build/ and *.egg-info stay out of the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".cache", ".git", "build", "*.egg-info",
                                                              "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "--disable-pip-version-check", "-w", str(tmp / "dist"), str(src)], check=True, cwd=tmp)
    [wheel] = (tmp / "dist").glob("mimo2codex-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    "--disable-pip-version-check", str(wheel)], check=True, cwd=tmp)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "suite-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MIMO"))}
    env.update(HOME=str(tmp / "home"), XDG_CACHE_HOME=str(tmp / "cache"))
    return {"tmp": tmp, "bin": env_dir / "bin", "python": python, "site": site, "env": env}


def run(installed: dict, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["bin"] / "mimo2codex"), *argv], capture_output=True, text=True,
                          cwd=installed["tmp"], env=installed["env"], timeout=timeout)


def test_wheel_carries_package_addon_and_rules_without_generic_top_level_names(installed):
    site = installed["site"]
    assert (site / "mimo2codex" / "bundle" / "addon" / "mimo.py").is_file()
    assert (site / "mimo2codex" / "bundle" / "rules" / "mimo.yaml").is_file()
    assert (site / "mimo2codex" / "bundle" / "rules" / "README.md").is_file()
    for generic in ("addon", "rules", "bench", "tests", "mimoskill"):
        assert not (site / generic).exists(), generic


def test_the_wheel_has_the_version_the_code_reports(installed):
    import mimo2codex

    out = run(installed, "--version")
    assert out.returncode == 0 and mimo2codex.__version__ in out.stdout, out.stdout + out.stderr
    dist = list(installed["site"].glob("mimo2codex-*.dist-info"))
    assert [d.name for d in dist] == [f"mimo2codex-{mimo2codex.__version__}.dist-info"]


def test_command_help_lists_every_subcommand(installed):
    out = run(installed, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: mimo2codex")
    for sub in ("print-config", "print-cc-switch", "check-rules", "demo", "record", "replay", "show", "compare", "addon-path"):
        assert sub in out.stdout, sub


def test_print_config_and_check_rules_use_the_installed_rules(installed):
    out = run(installed, "print-config")
    assert out.returncode == 0, out.stderr
    assert 'model_provider = "mimo"' in out.stdout and "127.0.0.1:8788" in out.stdout
    # an install has no launch.py: the steps it prints name the command the user has
    assert "mimo2codex print-config --catalog" in out.stdout and "launch.py" not in out.stdout, out.stdout
    checked = run(installed, "check-rules")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert str(installed["site"] / "mimo2codex" / "bundle" / "rules") in checked.stdout


def test_demo_runs_from_the_installed_copy(installed):
    out = run(installed, "demo", timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "response.completed" in out.stdout
    assert (installed["tmp"] / "cache" / "mimo2codex" / "mitmproxy").is_dir()  # not the checkout's .cache


def test_service_of_an_installed_copy_runs_the_installed_module(installed):
    # An installed copy has no launch.py: the unit must start `python -m mimo2codex`, which must work.
    out = subprocess.run([str(installed["bin"] / "mimo2codex"), "service", "install", "--print", "--platform", "linux"],
                         capture_output=True, text=True, cwd=installed["tmp"], timeout=60,
                         env={**installed["env"], "MIMO_API_KEY": "sk-package-test-0000"})
    assert out.returncode == 0, out.stdout + out.stderr
    [start] = [line for line in out.stdout.splitlines() if line.startswith("ExecStart=")]
    assert " -m mimo2codex --port 8788 " in start and "launch.py" not in out.stdout
    assert "sk-package-test-0000" not in out.stdout
    helped = subprocess.run([str(installed["python"]), "-m", "mimo2codex", "--help"], capture_output=True, text=True,
                            cwd=installed["tmp"], env=installed["env"], timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: mimo2codex"), helped.stderr


def test_mitmdump_runs_the_addon_path_it_prints(installed):
    out = run(installed, "addon-path")
    assert out.returncode == 0, out.stderr
    addon = Path(out.stdout.strip())
    assert addon == installed["site"] / "mimo2codex" / "bundle" / "addon" / "mimo.py"
    module = subprocess.run([str(installed["python"]), "-m", "mimo2codex.addon_path"], capture_output=True, text=True,
                            cwd=installed["tmp"], env=installed["env"], check=True)
    assert Path(module.stdout.strip()) == addon
    port = proxyproc.free_port()
    log = installed["tmp"] / "mitmdump.log"
    proc = subprocess.Popen([str(installed["python"]), "-c", proxyproc.MITMDUMP, "-s", str(addon),
                             "--mode", f"reverse:http://127.0.0.1:9@127.0.0.1:{port}", "--set", "connection_strategy=lazy",
                             "--set", f"confdir={installed['tmp'] / 'cache' / 'mitmdump'}"],
                            cwd=installed["tmp"], env=installed["env"], stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    with proxyproc.Proxy(proc, port, log):
        proxyproc.wait_port(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        body = resp.read().decode()
        conn.close()
    assert resp.status == 200, body + log.read_text()
    assert json.loads(body)["provider"] == "mimo"
