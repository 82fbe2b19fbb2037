"""Every Python block of the README runs, on the backends it claims."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(_blocks())))
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_readme_block_runs(index: int, backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = _blocks()[index].replace("anyio.run(main)", f"anyio.run(main, backend={backend!r})")
    exec(compile(code, f"README.md[{index}]", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    expected = re.findall(r"print\(.*\)\s*# (.*?) \(", _blocks()[index])
    for line in expected:
        assert line in out
