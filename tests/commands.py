"""Running the package's commands the way a user does, for the tests of its command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridges.__main__ import main

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
