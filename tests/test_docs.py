"""Every Python block in docs/*.md runs, on the backends it claims.

A block runs on asyncio and trio unless its first line says otherwise, e.g.
``# backends: asyncio`` (or ``asyncio, uvloop``).  ``anyio.run(main)`` is
rerun per backend; a block whose first line is ``# not-run`` is skipped
(for fragments that only show a signature; keep those rare).
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"


def _cases() -> list[object]:
    cases = []
    for page in sorted(DOCS.glob("*.md")):
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)):
            first = block.splitlines()[0] if block.strip() else ""
            if first.startswith("# not-run"):
                continue
            backends = ["asyncio", "trio"]
            m = re.match(r"#\s*backends:\s*(.*)", first)
            if m:
                backends = [b.strip() for b in m.group(1).split(",")]
            for backend in backends:
                cases.append(pytest.param(page, block, backend, id=f"{page.stem}[{i}]-{backend}"))
    return cases


@pytest.mark.parametrize(("page", "code", "backend"), _cases())
def test_doc_block_runs(page: Path, code: str, backend: str) -> None:
    if backend == "uvloop":
        pytest.importorskip("uvloop")
        option = "backend='asyncio', backend_options={'use_uvloop': True}"
    else:
        option = f"backend={backend!r}"
    code = code.replace("anyio.run(main)", f"anyio.run(main, {option})")
    # a real module, so that dataclasses, pickling and the like work in examples
    module = types.ModuleType("docs_example")
    sys.modules["docs_example"] = module
    try:
        exec(compile(code, str(page), "exec"), module.__dict__)
    finally:
        del sys.modules["docs_example"]
