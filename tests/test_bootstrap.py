from mimo2codex.cli import bootstrap


def test_requirements_pick_one_mitmproxy_line_per_python():
    reqs = bootstrap.requirements(("test",))
    assert sum(r.startswith("mitmproxy") for r in reqs) == 2  # one per Python range, exclusive markers
    assert any(r.startswith("openai") for r in reqs)


def test_running_inside_project_venv():
    import mitmproxy.version

    assert bootstrap.in_venv()
    major = int(mitmproxy.version.VERSION.split(".")[0])
    assert major == (11 if bootstrap.PYVER == "3.11" else 12)


def test_markers_pick_the_line_for_this_python():
    import sys

    reqs = bootstrap.requirements()
    lines = [r for r in reqs if r.startswith("mitmproxy") and bootstrap.applies(r)]
    assert len(lines) == 1
    assert any(r.startswith("PyYAML") and bootstrap.applies(r) for r in reqs)  # the rules loader's
    assert lines[0].startswith("mitmproxy==11" if sys.version_info < (3, 12) else "mitmproxy>=12")
