"""Every ``pip install`` line (README.md, docs/, the package's messages) names this distribution."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DIST = PROJECT["name"]
EXTRAS = set(PROJECT["optional-dependencies"])
#: tools the docs install next to the project (the test matrix runner)
TOOLS = {"nox", "uv"}
#: ``pip install`` and the words after it that read as options or requirements
INSTALL = re.compile(r"pip install((?:\s+(?:-\S+|[\"']?[\w.-]+(?:\[[^\]]*\])?[\"']?))+)")
FILES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted(ROOT.glob("bridges/**/*.py")),
]


def _install_lines() -> list[tuple[str, str]]:
    lines = []
    for path in FILES:
        for line in path.read_text().splitlines():
            for m in INSTALL.finditer(line):
                lines.append((f"{path.relative_to(ROOT)}: {line.strip()}", m.group(1)))
    return lines


def test_there_are_install_lines() -> None:
    assert any(DIST in args for _, args in _install_lines()), f"no line installs {DIST}"


@pytest.mark.parametrize(("where", "args"), _install_lines(), ids=lambda x: str(x)[:60])
def test_install_line_names_the_distribution(where: str, args: str) -> None:
    for word in args.split():
        word = word.strip("\"'")
        if word.startswith("-"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]*)(?:\[([^\]]*)\])?", word)
        assert m, f"{where}: cannot read {word!r}"
        name, extras = m.group(1), m.group(2)
        if name in TOOLS:
            continue
        # a local checkout (pip install -e ".[all]") or the distribution by name
        assert name in (".", DIST), f"{where}: installs {name!r}, not {DIST!r}"
        for extra in (extras or "").split(","):
            assert not extra or extra in EXTRAS, f"{where}: no extra {extra!r} in pyproject.toml"
