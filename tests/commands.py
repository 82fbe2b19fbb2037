"""Running the package's commands the way a user does, for the tests of its command line;
and the tests' worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from bridges.__main__ import main

T = TypeVar("T")

#: the checkout: the package, its docs and its pyproject.toml
ROOT = Path(__file__).resolve().parent.parent


def run_python(
    *args: str,
    cwd: Path = ROOT,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python *args`` in a child process, this checkout first on its path.

    Its output is captured as text; its exit code is left to the caller to check.
    ``env`` adds to the inherited environment.
    """
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def help_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What ``python -m bridges *argv --help`` prints; it must exit with 0."""
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


async def run_worker(
    module: str,
    args: list[str],
    lines: list[T],
    parse: Callable[[bytes, bytes], T],
    until: Callable[[list[T]], bool],
) -> None:
    """Run ``python -m module *args`` (a consumer process printing two fields a line)
    until ``until(lines)`` (30 s at most), SIGKILL it, and collect all it printed.

    Each line becomes ``parse(first, second)`` in ``lines``; what the worker printed
    before it died counts, also past the point where ``until`` was met.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    command = [sys.executable, "-m", module, *args]
    async with await anyio.open_process(command, cwd=ROOT, env=env, stderr=None) as proc:
        assert proc.stdout is not None
        out = BufferedByteReceiveStream(proc.stdout)

        async def read() -> None:
            first, second = (await out.receive_until(b"\n", 64)).split()
            lines.append(parse(first, second))

        try:
            with anyio.move_on_after(30):
                while not until(lines):
                    await read()
        finally:
            proc.kill()  # SIGKILL: no cleanup of ours runs in the worker
            await proc.wait()
        # it went on processing while we read: what it printed before it died counts
        with anyio.fail_after(10):
            try:
                while True:
                    await read()
            except (anyio.IncompleteRead, anyio.EndOfStream):
                pass
        assert until(lines), f"{len(lines)} lines, the last {lines[-5:]}"
