"""`launch.py test` covers both mitmproxy lines: finding the 3.12+ interpreter, running it, failing on either."""

from __future__ import annotations

import sys

import pytest

from mimo2codex.cli import testlines

needs_primary = pytest.mark.skipif(sys.version_info >= testlines.SECOND_LINE, reason="the second run starts from a 3.11 primary")


def fake_python(path, version: str, exit_code: int = 0, log=None):
    """An executable that answers the version probe like python and records any other call."""
    major, minor = version.split(".")[:2]
    record = f'echo "$@" >> "{log}"\n' if log else ""
    path.write_text(f'#!/bin/sh\nif [ "$1" = "-c" ]; then echo {major} {minor}; exit 0; fi\n{record}exit {exit_code}\n')
    path.chmod(0o755)
    return str(path)


def test_finds_the_lowest_3_12_plus_on_path_skipping_ones_that_do_not_run(tmp_path):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "python3.12").write_text("#!/bin/sh\necho 'pyenv: python3.12: command not found' >&2; exit 127\n")
    (bin_ / "python3.12").chmod(0o755)
    thirteen = fake_python(bin_ / "python3.13", "3.13")
    python, why = testlines.second_python({}, path=str(bin_), pyenv_root=str(tmp_path / "nopyenv"))
    assert (python, why) == (thirteen, "")


def test_falls_back_to_pyenv_versions_in_version_order(tmp_path):
    for v in ("3.13.0", "3.12.1", "3.11.7"):
        (tmp_path / "versions" / v / "bin").mkdir(parents=True)
        fake_python(tmp_path / "versions" / v / "bin" / "python3", v)
    python, _ = testlines.second_python({}, path=str(tmp_path / "empty"), pyenv_root=str(tmp_path))
    assert python == str(tmp_path / "versions" / "3.12.1" / "bin" / "python3")


def test_env_var_skips_or_chooses(tmp_path):
    python, why = testlines.second_python({testlines.ENV: "0"})
    assert python == "" and "skipped" in why
    old = fake_python(tmp_path / "py311", "3.11")
    python, why = testlines.second_python({testlines.ENV: old})
    assert python == "" and "needs 3.12+" in why
    chosen = fake_python(tmp_path / "py314", "3.14")
    assert testlines.second_python({testlines.ENV: chosen}) == (chosen, "")


def test_nothing_found_says_so(tmp_path):
    python, why = testlines.second_python({}, path=str(tmp_path), pyenv_root=str(tmp_path))
    assert python == "" and "no Python 3.12+" in why


@needs_primary
@pytest.mark.parametrize("first, second, expected", [(0, 0, 0), (0, 3, 3), (1, 0, 1)])
def test_both_runs_happen_and_either_failure_fails(tmp_path, capsys, first, second, expected):
    log = tmp_path / "calls"
    python = fake_python(tmp_path / "py312", "3.12", exit_code=second, log=log)
    seen = []
    code = testlines.run(["tests/test_x.py", "-q"], lambda args: seen.append(args) or first, environ={testlines.ENV: python})
    assert code == expected
    assert seen == [["tests/test_x.py", "-q"]]
    assert log.read_text().split() == [str(testlines.LAUNCH), "test", "tests/test_x.py", "-q"]  # same tests, same args
    out = capsys.readouterr().out
    assert f"the same tests on {python} (mitmproxy 12 line)" in out and "summary" in out
    assert ("FAILED" in out) == bool(expected)


@needs_primary
def test_skipped_second_run_is_reported(capsys):
    assert testlines.run([], lambda args: 0, environ={testlines.ENV: "none"}) == 0
    assert "not run: the mitmproxy 12 line — skipped" in capsys.readouterr().out
