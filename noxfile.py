"""nox sessions: the default run (``nox``) is what CI runs."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nox

nox.needs_version = ">=2024.4.15"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["lint", "typecheck", "tests", "tests_lowest", "docs"]

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)
LOWEST = PYTHONS[0]


def _expose_pyenv() -> None:
    """Put pyenv's interpreters on PATH so each ``pythonX.Y`` is found without shims."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not root.is_dir():
        return
    bins = []
    for version in PYTHONS:
        matches = sorted(
            (p for p in root.iterdir() if re.fullmatch(rf"{re.escape(version)}\.\d+", p.name)),
            key=lambda p: [int(x) for x in p.name.split(".")],
        )
        if matches:
            bins.append(str(matches[-1] / "bin"))
    os.environ["PATH"] = os.pathsep.join([*bins, os.environ.get("PATH", "")])


_expose_pyenv()


def _installed(pythons: list[str]) -> list[str]:
    """The supported Pythons this machine has (pyenv's included)."""
    found = []
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for version in pythons:
        if shutil.which(f"python{version}"):
            found.append(version)
            continue
        if pyenv_root.is_dir() and any(
            re.fullmatch(rf"{re.escape(version)}\.\d+", p.name) for p in pyenv_root.iterdir()
        ):
            found.append(version)
    return found or pythons


@nox.session(python=_installed(PYTHONS))
def tests(session: nox.Session) -> None:
    """The test suite (conformance on asyncio, uvloop and trio) with the latest dependencies."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        *(session.posargs or ["-n", "auto", "-m", "not stress and not soak and not docs"]),
    )


@nox.session(python=LOWEST, name="tests_lowest")
def tests_lowest(session: nox.Session) -> None:
    """The test suite with the lowest supported direct dependencies."""
    if session.venv_backend != "uv":
        session.skip("needs uv for --resolution=lowest-direct")
    session.install("--resolution=lowest-direct", "-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        *(session.posargs or ["-n", "auto", "-q", "-m", "not stress and not soak and not docs"]),
    )


@nox.session(python=LOWEST)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=LOWEST)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[all,bench,nats,redis]", "mypy>=1.10", "pytest")
    session.run("mypy", "--strict", "bridges", "tests/type_tests")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The docs as a reader meets them: the site built strict and checked, examples run as copied.

    The tests marked ``docs``: tests/test_site.py, and each example of docs/ copied into a
    file and run with ``python file.py``.  Once, on one Python: what these check is the
    text, not the interpreter (every test session already runs each example in-process,
    on each backend it claims).
    """
    session.install("-e", ".[all,test,docs]")
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    # tests/test_site.py builds the site (mkdocs build --strict) once and checks its HTML
    session.run("python", "-m", "pytest", "-n", "auto", "-q", "-m", "docs", *session.posargs)


@nox.session(python=LOWEST)
def bench(session: nox.Session) -> None:
    """python -m bridges bench (pass options after --)."""
    session.install("-e", ".[bench,uvloop]")
    session.run("python", "-m", "bridges", "bench", *session.posargs)


@nox.session(python=LOWEST)
def stress(session: nox.Session) -> None:
    """The attack tests in their long profile: fuzzing, thread storms (under 10 minutes).

    The default run has them too, in a short profile (few examples, few rounds).
    """
    session.install("-e", ".[test]")
    session.env["BRIDGES_STRESS"] = "1"
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/stress",
        # the 100,000 messages (a fifth of them in the default run)
        "tests/test_nats.py::test_a_slow_consumer_of_many_messages_holds_at_most_the_buffer_in_order",
        # and the Redis spoke's (a twentieth of them in the default run)
        "tests/test_redis.py::test_a_slow_consumer_of_many_entries_holds_at_most_the_buffer_in_order",
        "-m",
        "not soak",
        "-n",
        "auto",
        # hundreds of examples and rounds per test: each example and each storm has
        # a deadline of its own, so the whole test's bound is only the last resort
        "--timeout=900",
        *session.posargs,
    )


@nox.session(python=LOWEST)
def soak(session: nox.Session) -> None:
    """The long run: tens of millions of values, memory and throughput over time."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-m", "soak", "--timeout=3600", *session.posargs)
