"""Every Python block in docs/*.md runs, on the backends it claims.

A block runs on asyncio and trio unless its first line says otherwise, e.g.
``# backends: trio`` (or ``asyncio, uvloop``).  A block whose first line is
``# not-run`` is skipped (for fragments that only show a signature; keep
those rare).

Three checks, from cheap to thorough:

- the backend a block runs on *as written* (``anyio.run(main)`` is asyncio,
  ``anyio.run(main, backend="trio")`` is trio) is one it claims;
- in every test session, each block runs in this process on every backend it
  claims: as written on its own backend, and with ``anyio.run(main)``
  rewritten for the others;
- in the ``docs`` session (marker ``docs``), each block is copied alone into a
  file and run with ``python file.py``, exactly as a reader would.

One example whose outcome turns on timing is also run in its worst case, every time.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from .commands import ROOT, run_python

DOCS = ROOT / "docs"
BACKENDS = ("asyncio", "uvloop", "trio")
#: how ``anyio.run(main)`` is rewritten to run a block on another backend
OPTIONS = {
    "asyncio": "backend='asyncio'",
    "uvloop": "backend='asyncio', backend_options={'use_uvloop': True}",
    "trio": "backend='trio'",
}


def _blocks() -> list[tuple[str, str, list[str]]]:
    """(id, code, claimed backends) of every block that runs."""
    blocks = []
    for page in sorted(DOCS.glob("*.md")):
        for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)):
            first = code.splitlines()[0] if code.strip() else ""
            if first.startswith("# not-run"):
                continue
            claimed = ["asyncio", "trio"]
            m = re.match(r"#\s*backends:\s*(.*)", first)
            if m:
                claimed = [b.strip() for b in m.group(1).split(",")]
            blocks.append((f"{page.stem}[{i}]", code, claimed))
    return blocks


def written_backend(code: str) -> str:
    """The backend a block runs on when copied and run as it stands."""
    if "use_uvloop" in code or "uvloop.run(" in code:
        return "uvloop"
    if re.search(r"""backend=["']trio["']""", code) or re.search(r"^trio\.run\(", code, re.M):
        return "trio"
    return "asyncio"


@pytest.mark.parametrize(
    ("name", "code", "claimed"), [pytest.param(*b, id=b[0]) for b in _blocks()]
)
def test_doc_block_runs_as_written_on_a_backend_it_claims(
    name: str, code: str, claimed: list[str]
) -> None:
    assert set(claimed) <= set(BACKENDS), f"{name}: unknown backend in {claimed}"
    backend = written_backend(code)
    assert backend in claimed, (
        f"{name} claims {', '.join(claimed)} but runs on {backend} as written: "
        f"end it with anyio.run(main, backend={claimed[0]!r})"
    )


def _cases() -> list[object]:
    return [
        pytest.param(name, code, backend, id=f"{name}-{backend}")
        for name, code, claimed in _blocks()
        for backend in claimed
    ]


@pytest.mark.parametrize(("name", "code", "backend"), _cases())
def test_doc_block_runs(name: str, code: str, backend: str) -> None:
    if backend == "uvloop":
        pytest.importorskip("uvloop")
    if backend != written_backend(code):
        assert "anyio.run(main)" in code, f"{name}: no anyio.run(main) to run on {backend}"
        code = code.replace("anyio.run(main)", f"anyio.run(main, {OPTIONS[backend]})")
    # a real module, so that dataclasses, pickling and the like work in examples
    module = types.ModuleType("docs_example")
    sys.modules["docs_example"] = module
    try:
        exec(compile(code, name, "exec"), module.__dict__)
    finally:
        del sys.modules["docs_example"]


@pytest.mark.docs
@pytest.mark.parametrize(
    ("name", "code", "claimed"), [pytest.param(*b, id=b[0]) for b in _blocks()]
)
def test_doc_block_runs_when_copied_into_a_file(
    name: str, code: str, claimed: list[str], tmp_path: Path
) -> None:
    if written_backend(code) == "uvloop":
        pytest.importorskip("uvloop")
    script = tmp_path / "example.py"
    script.write_text(code)
    # -W default: a leak's ResourceWarning reaches stderr, which must stay empty
    done = run_python("-W", "default", str(script), cwd=tmp_path)
    assert done.returncode == 0, f"{name} failed as copied:\n{done.stderr}"
    assert done.stderr == "", f"{name} wrote to stderr as copied:\n{done.stderr}"


def test_home_page_diagram_fits_a_1280_px_window() -> None:
    # the content column of a 1280-px window holds about 84 characters of code
    diagrams = re.findall(r"```\n(.*?)```", (DOCS / "index.md").read_text(), flags=re.S)
    assert diagrams, "the home page has its diagram"
    for diagram in diagrams:
        widest = max(len(line) for line in diagram.splitlines())
        assert widest <= 80, f"the diagram is {widest} characters wide"


def test_the_child_process_example_ends_when_its_reader_has_stopped_reading(
    tmp_path: Path,
) -> None:
    # With a 64-byte limit the child's StreamReader has paused its pipe by the time the
    # loop is left: the worst case, every time, where with the default limit it is a
    # matter of timing.  Waiting for the child must still end, and quietly.
    (code,) = [code for _, code, _ in _blocks() if "create_subprocess_exec" in code]
    tight = code.replace(
        "stdout=asyncio.subprocess.PIPE\n", "stdout=asyncio.subprocess.PIPE, limit=64\n"
    )
    assert tight != code, "the example's create_subprocess_exec call changed shape"
    script = tmp_path / "example.py"
    script.write_text(tight)
    done = run_python("-W", "default", str(script), cwd=tmp_path, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
