"""Every harness of every adapter, collected from ``harnesses/*.py``."""

from __future__ import annotations

import importlib
import pkgutil

from bridges import testing

from . import harnesses


def load() -> list[testing.PushHarness | testing.PullHarness]:
    found: list[testing.PushHarness | testing.PullHarness] = []
    for info in sorted(pkgutil.iter_modules(harnesses.__path__), key=lambda m: m.name):
        try:
            module = importlib.import_module(f"{harnesses.__name__}.{info.name}")
        except ImportError as exc:  # an optional ecosystem that is not installed
            if exc.name and exc.name.split(".")[0] in {"reactivex", "trio", "uvloop", "aiostream"}:
                continue
            raise
        found.extend(module.HARNESSES)
    names = [h.name for h in found]
    assert len(names) == len(set(names)), f"duplicate harness names: {names}"
    return found


HARNESSES = load()
