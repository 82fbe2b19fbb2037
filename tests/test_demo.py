"""``python -m bridges demo``: it runs, ends by itself, and its verdict can fail."""

from __future__ import annotations

import re
import subprocess

import anyio
import pytest

from bridges import Stats, _demo
from bridges.__main__ import main as bridges_main

from .commands import help_text, run_python
from .conftest import HAVE_UVLOOP

RULES = "rules held: R2 R3 R6 R8 R9 R14"


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, with stdout a pipe (as in CI)."""
    return run_python("-m", "bridges", "demo", *args, timeout=50)


@pytest.mark.parametrize(
    "backend",
    [
        "asyncio",
        "trio",
        pytest.param(
            "uvloop", marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")
        ),
    ],
)
def test_demo_runs_keeps_its_rules_and_releases_every_source(backend: str) -> None:
    result = run_demo("--seconds", "2", "--backend", backend)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"bridges demo on {backend}: 2 s, then a cancellation"
    # progress lines while it runs: every buffer, with its throughput
    progress = [line for line in lines if re.match(r"^\s*\d+\.\ds \| sensor \d+/s", line)]
    assert progress, result.stdout
    for key in ("dashboard", "rows", "channel", "feed"):
        assert f"| {key} " in progress[-1]
    assert "sources released: 4/4" in lines
    assert RULES in lines
    assert lines[-1] == "result: OK"
    # not a terminal: plain text, and nothing on stderr (nothing logged by the library)
    assert "\x1b" not in result.stdout
    assert result.stderr == ""


def test_demo_exits_nonzero_when_a_source_is_not_released() -> None:
    result = run_demo("--seconds", "1", "--self-test-break")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "  sensor SDK callback unregistered: 0" in lines
    assert "sources released: 3/4" in lines
    assert "rules held: R2 R3 R8 R9 R14" in lines
    assert "rules broken: R6" in lines
    assert lines[-1] == "result: FAILED"


def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    # the autouse fixture of conftest also checks that no thread of the demo outlives it
    assert _demo.main(["--seconds", "0.5", "--plain"]) == 0
    out = capsys.readouterr().out
    assert RULES in out.splitlines()


def test_the_seconds_count_from_when_every_source_flows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the archive pipeline starts after --seconds have passed (as on a very busy machine):
    # the cancellation still comes after it is running, and every source is released
    exporter = _demo.Demo.exporter

    async def late_exporter(demo: _demo.Demo) -> None:
        await anyio.sleep(1.0)
        await exporter(demo)

    monkeypatch.setattr(_demo.Demo, "exporter", late_exporter)
    status = _demo.main(["--seconds", "0.5", "--plain"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "sources released: 4/4" in out.splitlines()


def test_the_self_test_hook_is_not_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(["demo"], capsys)
    assert "--seconds" in text
    assert "--backend" in text
    assert "self-test" not in text


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for seconds in ("0", "30", "soon"):
        with pytest.raises(SystemExit) as exit_info:
            bridges_main(["demo", "--seconds", seconds])
        assert exit_info.value.code == 2
    assert "--seconds" in capsys.readouterr().err
    assert bridges_main([]) == 2
    usage = capsys.readouterr().err
    assert "demo" in usage
    assert "bench" in usage


def test_the_checks_catch_disorder_and_miscounted_drops() -> None:
    """The verdict is not a constant: out-of-order values and lost drops break R2 and R9."""
    demo = _demo.Demo(_demo.SensorSDK(), seconds=1, history_rows=10)
    demo._exported((1, "probe-1", 20.0))
    demo._exported((3, "probe-3", 20.0))  # row 2 went missing
    demo._exported(_demo.Quote(0, 100.0))
    demo.into_dashboard = 10
    demo._check_conflation(
        Stats(buffered=1, high_water=1, delivered=5, dropped=3, capacity=1)
    )  # 5 + 3 + 1 != 10: a value vanished without being counted
    verdict = {check.rule: check for check in demo.checks([], True, [])}
    assert not verdict["R2"].ok
    assert "row 3 came when row 2 was due" in verdict["R2"].text
    assert not verdict["R9"].ok
    assert not verdict["R6"].ok  # nothing ran: nothing was released
    assert verdict["R14"].ok
