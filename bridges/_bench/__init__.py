"""``python -m bridges bench``: each scenario is timed against its baselines, side by side.

A scenario module in this package defines ``SCENARIOS``: a list of
`Scenario`.  Every case of a scenario (the bridge and each baseline)
runs in the same process and on the same kind of loop, alternating, best of
``repeat``; the table reports each baseline's ratio (bridge time / baseline
time: below 1.0 the bridge is faster) against its budget.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import json
import pkgutil
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

#: A case: given a value count, run once and return elapsed seconds.
Case = Callable[[int], float]


@dataclass
class Baseline:
    name: str
    run: Case
    #: the budget as a bound on bridge_time / baseline_time (None: reported only)
    max_ratio: float | None = None
    #: text of the budget, e.g. "<= 1.0x (aim 0.5x)"
    budget: str = ""
    #: the bridge run against this baseline, when it differs from the scenario's
    #: (e.g. the unbounded bridge against an unbounded peer: same capacity)
    bridge: Case | None = None


@dataclass
class Scenario:
    name: str
    backend: str
    n: int
    bridge: Case
    baselines: list[Baseline] = field(default_factory=list)
    #: a scenario measured in another unit (e.g. memory) reports this instead
    measure: Callable[[int], dict[str, Any]] | None = None
    note: str = ""


def run_loop(backend: str, fn: Callable[[], Coroutine[Any, Any, float]]) -> float:
    """Run an async case on a fresh loop of the given kind; return its result."""
    if backend == "trio":
        import trio

        return trio.run(fn)
    if backend == "uvloop":
        import uvloop

        return uvloop.run(fn())
    return asyncio.run(fn())


def timed(backend: str, fn: Callable[[], Awaitable[None]]) -> float:
    async def main() -> float:
        t0 = time.perf_counter()
        await fn()
        return time.perf_counter() - t0

    return run_loop(backend, main)


#: the end marker a hand-written queue peer puts after its values
END = object()


async def numbers(n: int) -> AsyncIterator[int]:
    """``0 .. n-1`` from a bare async generator: the producer the in-loop rows share."""
    for i in range(n):
        yield i


async def drain(stream: AbstractAsyncContextManager[AsyncIterable[object]]) -> int:
    """Enter ``stream``, iterate what it gives to its end; return how many values came."""
    count = 0
    async with stream as values:
        async for _ in values:
            count += 1
    return count


def counted(
    backend: str,
    run: Callable[[int], Awaitable[int]],
    prepare: Callable[[int], object] | None = None,
) -> Case:
    """A case that times ``await run(n)`` on a fresh ``backend`` loop.

    ``run`` returns how many values it moved; anything but ``n`` fails the
    case.  ``prepare(n)``, if given, runs first, off the clock (to make the
    data the case reads, say).
    """

    def case(n: int) -> float:
        if prepare is not None:
            prepare(n)

        async def go() -> None:
            moved = await run(n)
            assert moved == n, f"{moved} values moved, {n} expected"

        return timed(backend, go)

    return case


def _modules() -> list[Any]:
    out = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        try:
            out.append(importlib.import_module(f"{__name__}.{info.name}"))
        except ImportError as exc:
            print(
                f"(skipping bench module {info.name}: {exc}; pip install 'streambridges[bench]')",
                file=sys.stderr,
            )
    return out


def collect(select: str | None = None, backends: set[str] | None = None) -> list[Scenario]:
    scenarios: list[Scenario] = []
    for module in _modules():
        scenarios.extend(module.SCENARIOS)
    if select:
        scenarios = [s for s in scenarios if select in s.name]
    if backends:
        scenarios = [s for s in scenarios if s.backend in backends]
    return scenarios


def _best(case: Case, n: int) -> float:
    gc.collect()
    return case(n)


def run(
    scenarios: list[Scenario], *, scale: float = 1.0, repeat: int = 3, out: Any = sys.stdout
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for sc in scenarios:
        n = max(1, int(sc.n * scale))
        if sc.measure is not None:
            result = sc.measure(n)
            row = {"scenario": sc.name, "backend": sc.backend, "n": n, **result}
            rows.append(row)
            print(_fmt_measure(row), file=out, flush=True)
            continue
        times: dict[str, list[float]] = {"bridge": []}
        for b in sc.baselines:
            times[b.name] = []
            if b.bridge is not None:
                times["bridge:" + b.name] = []
        for _ in range(repeat):  # alternate so that drift hits every case alike
            times["bridge"].append(_best(sc.bridge, n))
            for b in sc.baselines:
                times[b.name].append(_best(b.run, n))
                if b.bridge is not None:
                    times["bridge:" + b.name].append(_best(b.bridge, n))
        for b in sc.baselines:
            bridge_t = min(times["bridge" if b.bridge is None else "bridge:" + b.name])
            base_t = min(times[b.name])
            ratio = bridge_t / base_t
            ok = None if b.max_ratio is None else ratio <= b.max_ratio
            row = {
                "scenario": sc.name,
                "backend": sc.backend,
                "n": n,
                "bridge_s": round(bridge_t, 4),
                "bridge_per_s": round(n / bridge_t),
                "baseline": b.name,
                "baseline_s": round(base_t, 4),
                "baseline_per_s": round(n / base_t),
                "ratio": round(ratio, 3),
                "speedup": round(1 / ratio, 2),
                "budget": b.budget,
                "ok": ok,
            }
            rows.append(row)
            print(_fmt(row), file=out, flush=True)
    return rows


def _fmt(r: dict[str, Any]) -> str:
    verdict = {True: "ok", False: "OVER", None: "-"}[r["ok"]]
    return (
        f"{r['scenario']:<34} {r['backend']:<7} {r['bridge_per_s']:>11,}/s  vs {r['baseline']:<26}"
        f" {r['baseline_per_s']:>11,}/s  ratio {r['ratio']:>6.3f}x ({r['speedup']:>5.2f}x faster)"
        f"  budget {r['budget'] or '-':<22} {verdict}"
    )


def _fmt_measure(r: dict[str, Any]) -> str:
    extra = "  ".join(
        f"{k}={v}" for k, v in r.items() if k not in {"scenario", "backend", "n", "ok"}
    )
    verdict = {True: "ok", False: "OVER", None: "-"}[r.get("ok")]
    return f"{r['scenario']:<34} {r['backend']:<7} n={r['n']:,}  {extra}  {verdict}"


#: what ``--help`` says: plain text, not this module's docstring markup
DESCRIPTION = (
    "Time each bridge against its baselines, side by side in the same process and on "
    "the same kind of loop, best of --repeat runs. Each row is a ratio (bridge time / "
    "baseline time: below 1.0 the bridge is faster) checked against its budget."
)
#: the peers and ecosystems the scenarios import (the bench extra)
NEEDS = ("janus", "culsans", "aiologic", "aiostream", "trio", "reactivex")


def main(argv: list[str]) -> int:
    """``python -m bridges bench``: parse ``argv``, run the scenarios, print the table."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m bridges bench", description=DESCRIPTION)
    p.add_argument("-k", "--select", help="only scenarios whose name contains this")
    p.add_argument(
        "--backend",
        action="append",
        choices=["asyncio", "uvloop", "trio"],
        help="only these backends",
    )
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiply every value count (0.01 for a smoke run)"
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per case; the best counts")
    p.add_argument(
        "--json", metavar="FILE", help="also write the rows as JSON ('-' for stdout only)"
    )
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = p.parse_args(argv)
    missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"python -m bridges bench needs the bench extra (missing: {', '.join(missing)}): "
            "pip install 'streambridges[bench]'",
            file=sys.stderr,
        )
        return 2
    scenarios = collect(args.select, set(args.backend) if args.backend else None)
    if args.list:
        for s in scenarios:
            print(f"{s.name:<34} {s.backend:<7} n={s.n:,}  {s.note}")
        return 0
    out = sys.stderr if args.json == "-" else sys.stdout
    print(
        f"bridges bench: python {sys.version.split()[0]}, {len(scenarios)} scenarios, "
        f"scale {args.scale}",
        file=out,
    )
    rows = run(scenarios, scale=args.scale, repeat=args.repeat, out=out)
    if args.json:
        text = json.dumps(rows, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text)
    over = [r for r in rows if r.get("ok") is False]
    if over:
        print(f"{len(over)} row(s) over budget", file=out)
    return 0
