from __future__ import annotations

from typing import Any

import pytest

from bridges import testing

from ..conftest import BACKENDS
from .registry import HARNESSES, KNOWN_FAILURES

_BACKEND_ID = {p.id: p for p in BACKENDS}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    name = metafunc.function.__name__
    kind: type = (
        testing.PushHarness
        if "push" in name
        else testing.CallHarness
        if "call" in name
        else testing.PullHarness
    )
    params = []
    for h in HARNESSES:
        if not isinstance(h, kind):
            continue
        for rule in h.claims.applicable():
            for backend_id, backend in _BACKEND_ID.items():
                if backend_id not in h.backends:
                    continue
                marks = list(backend.marks)
                known = KNOWN_FAILURES.get((h.name, rule))
                if known is not None:
                    marks.append(
                        pytest.mark.xfail(reason=known, raises=AssertionError, strict=True)
                    )
                params.append(
                    pytest.param(
                        (h, rule, backend.values[0]),
                        id=f"{h.name}-{rule}-{backend_id}",
                        marks=marks,
                    )
                )
    metafunc.parametrize("case", params)


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    case = request.node.callspec.params.get("case") if hasattr(request.node, "callspec") else None
    if case is not None:
        return case[2]
    return request.param if hasattr(request, "param") else "asyncio"
