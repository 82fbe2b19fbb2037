"""Every harness of every adapter, collected from ``harnesses/*.py``."""

from __future__ import annotations

import importlib
import pkgutil

from bridges import testing

from . import harnesses

Harness = testing.PushHarness | testing.PullHarness | testing.CallHarness
#: the optional ecosystems: their harnesses are left out where they are not installed
OPTIONAL = {"reactivex", "trio", "uvloop", "aiostream", "nats", "redis"}


def load() -> list[Harness]:
    found: list[Harness] = []
    for info in sorted(pkgutil.iter_modules(harnesses.__path__), key=lambda m: m.name):
        try:
            module = importlib.import_module(f"{harnesses.__name__}.{info.name}")
        except ImportError as exc:  # an optional ecosystem that is not installed
            if exc.name and exc.name.split(".")[0] in OPTIONAL:
                continue
            raise
        found.extend(module.HARNESSES)
    # an adapter has one harness per kind: a CallHarness (R21) may share its name
    # with the adapter's push or pull harness (the rules table shows them as one row)
    names = [(isinstance(h, testing.CallHarness), h.name) for h in found]
    assert len(names) == len(set(names)), f"duplicate harness names: {names}"
    return found


HARNESSES = load()

#: Claimed rules an adapter does not keep yet: (harness, rule) -> what goes wrong.
#: Their cases run as strict xfails (a fix turns them into failures until the entry
#: goes), and the rules table marks them ✗ with this reason.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}
_claimed = {(h.name, r) for h in HARNESSES for r in h.claims.applicable()}
_loaded = {h.name for h in HARNESSES}
for _name, _rule in KNOWN_FAILURES:  # a known failure is of a claimed rule (when loaded)
    assert _name not in _loaded or (_name, _rule) in _claimed, (_name, _rule)
