"""``python -m bridges``: help, version, unknown commands, a missing extra."""

from __future__ import annotations

import re
import sys

import pytest

import bridges
from bridges.__main__ import main

from .commands import ROOT, help_text, run_python


def test_help_exits_0_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--help", "-h"):
        assert main([flag]) == 0
        out = capsys.readouterr()
        assert "demo" in out.out
        assert "bench" in out.out
        assert out.err == ""


def test_version_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"bridges {bridges.__version__}"


def test_version_is_the_distributions() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    m = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    assert m
    assert bridges.__version__ == m.group(1)


@pytest.mark.parametrize(("word", "kind"), [("frobnicate", "command"), ("--frob", "option")])
def test_an_unknown_command_says_so(
    word: str, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([word]) == 2
    err = capsys.readouterr().err
    assert f"unknown {kind} {word!r}" in err.splitlines()[0]
    assert "demo, bench" in err


def test_bench_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    out = help_text(["bench"], capsys)
    assert "--scale" in out
    assert "ratio" in out
    assert not re.search(r"``|\]\[|:\w+:`", out), out


@pytest.mark.parametrize("name", ["janus", "trio"])
def test_bench_without_its_extra_says_what_to_install(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # what an uninstalled module looks like
    assert main(["bench", "--list"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 1, lines
    assert name in lines[0]
    assert "pip install 'streambridges[bench]'" in lines[0]


def test_python_dash_m_help() -> None:
    done = run_python("-m", "bridges", "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m bridges")
