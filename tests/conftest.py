from __future__ import annotations

import gc
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .servers import (  # noqa: F401 - fixtures
    nats_server,
    private_nats_server,
    private_redis_server,
    redis_server,
)

try:
    import uvloop  # noqa: F401
except ImportError:  # pragma: no cover - uvloop is not on Windows
    HAVE_UVLOOP = False
else:
    HAVE_UVLOOP = True

BACKENDS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param(
        ("asyncio", {"use_uvloop": True}),
        id="uvloop",
        marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed"),
    ),
    pytest.param("trio", id="trio"),
]
#: a test that runs on one backend only
only_trio = pytest.mark.parametrize("anyio_backend", ["trio"])
only_asyncio = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def backend_name(anyio_backend: Any) -> str:
    """'asyncio', 'uvloop' or 'trio'."""
    if isinstance(anyio_backend, tuple):
        return "uvloop"
    return str(anyio_backend)


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    """R14: every test leaves no thread of its own behind (thread caches excepted).

    Each test's garbage is collected at its own teardown, so a ResourceWarning
    from an end it dropped is reported against it.  What survives is frozen
    (moved out of the collector's reach), so the next collection walks only
    the next test's objects, not the whole session's heap.
    """
    before = set(threading.enumerate())
    yield
    gc.collect()
    gc.freeze()
    end = time.monotonic() + 5.0
    while True:
        left = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and not _is_cache_worker(t)
        ]
        if not left or time.monotonic() > end:
            break
        for t in left:
            t.join(timeout=0.05)
    assert not left, f"threads left running: {left}"


def _is_cache_worker(thread: threading.Thread) -> bool:
    # anyio's and trio's idle thread-cache workers are not ours (R14)
    name = thread.name
    return (
        name.startswith(("AnyIO worker thread", "Trio thread", "trio-", "ThreadPoolExecutor"))
        or "asyncio_" in name
        or name.startswith("_bridges_test_keep")
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run without uvloop where it exists; one hypothesis seed per run, printed.

    The seed is random, shared by the xdist workers (through the environment).

    ``BRIDGES_SEED=N`` (or ``--hypothesis-seed=N``) replays a run.
    """
    if not HAVE_UVLOOP and sys.platform != "win32":
        # a third of the matrix would be skipped without a word: refuse instead
        raise pytest.UsageError(
            "uvloop is not installed, so the uvloop backend cannot run: "
            "pip install -e '.[test]' (it brings uvloop wherever it builds)"
        )
    seed = config.getoption("hypothesis_seed", None)
    if seed is None:
        seed = os.environ.get("BRIDGES_SEED") or str(random.SystemRandom().randrange(2**32))
        config.option.hypothesis_seed = seed
    os.environ["BRIDGES_SEED"] = str(seed)  # inherited by the workers xdist starts


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"bridges backends: asyncio, uvloop ({'yes' if HAVE_UVLOOP else 'no'}), trio; "
        f"python {sys.version.split()[0]}",
        f"hypothesis seed {config.option.hypothesis_seed}: replay with "
        f"BRIDGES_SEED={config.option.hypothesis_seed}",
    ]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List every rule recorded as n/a, with its reason: never silently skipped.

    The hypothesis seed is repeated here, where ``-q`` does not hide it.
    """
    from .conformance.registry import HARNESSES

    seed = terminalreporter.config.option.hypothesis_seed
    terminalreporter.write_line(f"hypothesis seed {seed}: replay with BRIDGES_SEED={seed}")

    rows = [
        (h.name, rule, why) for h in HARNESSES for rule, why in h.claims.not_applicable().items()
    ]
    terminalreporter.section("conformance: rules recorded as n/a")
    for name, rule, why in rows:
        terminalreporter.write_line(f"{name:44} {rule:4} n/a: {why}")
    for h in HARNESSES:
        missing = sorted({"asyncio", "uvloop", "trio"} - set(h.backends))
        if missing:
            only = ", ".join(sorted(h.backends))
            terminalreporter.write_line(
                f"{h.name:44} runs on {only} only (not {', '.join(missing)})"
            )
