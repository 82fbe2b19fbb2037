"""R18, table-driven: every callable parameter of every public function, given an async one.

Each row names one callable parameter (or a callable the user returns to the
library, such as the unsubscribe that ``subscribe`` returns) and what the
library does with an async callable there:

* ``AWAITED``: the surface awaits it with its usual guarantees; the row's
  check observes the effect (values transformed, the source released before
  the block exits, the values of an async factory's source ...);
* ``REFUSED``: the surface calls it synchronously where nothing can await it;
  it must raise ``TypeError`` whose message names the fix (the row's
  keyword), up front when it can tell, else when it calls it (and then the
  stream fails with that ``TypeError``: nothing is dropped silently).

Every row runs with four kinds of async callable, on asyncio, uvloop and
trio: an ``async def`` function, a ``functools.partial`` of one, an object
whose ``__call__`` is ``async def``, and a lambda that returns a coroutine
(which no signature shows: only the call-time check sees it).  No
"coroutine ... was never awaited" warning may follow any of them.

``test_every_callable_parameter_has_a_row`` finds the callable parameters
by their annotations (as ``tests/test_bad_input.py`` finds the public
callables): a new one without a row fails it.
"""

from __future__ import annotations

import functools
import gc
import importlib
import inspect
import logging
import re
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import bridges
from bridges import callbacks, nats, ops, redis, rx, testing, threads
from bridges._buffer import Handoff

from .sources import awaiting
from .test_bad_input import PUBLIC_MODULES

pytestmark = pytest.mark.anyio

AWAITED = "awaited"
REFUSED = "refused"

# ----------------------------------------------------------------- async callables


class _AsyncCall:
    """A callable object whose ``__call__`` is ``async def``."""

    def __init__(self, fn: Callable[..., Awaitable[Any]]) -> None:
        self._fn = fn

    async def __call__(self, *args: Any) -> Any:
        return await self._fn(*args)


#: the kinds of async callable every row is given; the last one is seen only at call time
FLAVOURS: dict[str, Callable[[Callable[..., Awaitable[Any]]], Callable[..., Any]]] = {
    "async-def": lambda fn: fn,
    "partial": functools.partial,
    "async-call": _AsyncCall,
    "returns-coroutine": lambda fn: lambda *args: fn(*args),
}

Wrap = Callable[[Callable[..., Awaitable[Any]]], Callable[..., Any]]


@dataclass(frozen=True)
class Hook:
    """One callable parameter and what an async callable there does."""

    #: the public callable: ``module.name`` or ``module.Class.method`` (``__init__`` for a class)
    target: str
    #: the parameter; ``param->name`` for a callable that the parameter returns
    param: str
    #: AWAITED, REFUSED, or why the row is not a user's hook
    decision: str
    #: ``await check(wrap, flavour)`` runs the case; it raises if the behaviour is wrong
    check: Callable[[Wrap, str], Awaitable[None]] | None = None
    #: REFUSED: a word of the message that names the fix
    keyword: str | None = None
    backends: tuple[str, ...] = ("asyncio", "uvloop", "trio")
    #: a known gap in a module this branch may not change: the row must fail (strict)
    xfail: str | None = None


# ----------------------------------------------------------------- helpers


async def _agen(n: int = 3) -> AsyncIterator[int]:
    for i in range(n):
        yield i


def _refused(keyword: str) -> Any:
    return pytest.raises(TypeError, match=f"(?i)(plain function|not an async).*{keyword}")


# ----------------------------------------------------------------- callbacks


async def _cb_subscribe(wrap: Wrap, flavour: str) -> None:
    async def subscribe(emit: callbacks.Emitter[int]) -> None:
        emit.close()

    with _refused("unsubscribe"):
        async with callbacks.to_aiter(wrap(subscribe)) as it:
            async for _ in it:
                pass


async def _cb_unsubscribe(wrap: Wrap, flavour: str) -> None:
    for path in ("leave-the-block", "end-of-stream"):
        await _unsubscribe_case(wrap, flavour, path)


async def _unsubscribe_case(wrap: Wrap, flavour: str, path: str) -> None:
    # a real legacy API, a threading.Timer, whose async unsubscribe cancels it
    released: list[str] = []
    timer = threading.Timer(3600, lambda: None)

    async def unsubscribe() -> None:
        await anyio.lowlevel.checkpoint()
        timer.cancel()
        released.append(path)

    def subscribe(emit: callbacks.Emitter[int]) -> Callable[[], Any]:
        timer.start()
        if path == "end-of-stream":
            emit(1)
            emit.close()
        return wrap(unsubscribe)

    it = callbacks.to_aiter(subscribe)
    try:
        if path == "leave-the-block":
            async with it:
                await anyio.lowlevel.checkpoint()
                assert released == []
            assert released == [path], "the async unsubscribe ran before the block exited"
            assert timer.finished.is_set()
        elif flavour == "returns-coroutine":
            # seen only when called, where nothing awaits it: the stream fails, clearly
            async with it:
                assert await it.__anext__() == 1
                with _refused("async def"):
                    await it.__anext__()
            assert released == []
        else:
            async with it:
                assert [v async for v in it] == [1]
                assert released == [path], "the async unsubscribe ran at the end of the stream"
    finally:
        timer.cancel()
        timer.join()


async def _cb_pause(wrap: Wrap, flavour: str) -> None:
    paused: list[int] = []

    async def pause() -> None:
        paused.append(1)

    def subscribe(emit: callbacks.Emitter[int]) -> None:
        for i in range(1000):  # on the loop thread: the buffer fills, pause() is called
            if not emit(i):
                return

    got: list[int] = []
    with _refused("pause_reading"):
        it = callbacks.to_aiter(subscribe, buffer=4, pause=wrap(pause), resume=lambda: None)
        async with it:
            async for v in it:
                got.append(v)
    assert paused == []
    assert got == list(range(len(got))) and len(got) <= 4, "no pile-up behind a failed pause"


async def _cb_resume(wrap: Wrap, flavour: str) -> None:
    resumed: list[int] = []
    paused: list[int] = []

    async def resume() -> None:
        resumed.append(1)

    def subscribe(emit: callbacks.Emitter[int]) -> None:
        for i in range(4):
            emit(i)  # the 4th fills the buffer: pause() (plain) is called

    got: list[int] = []
    with _refused("resume_reading"):
        it = callbacks.to_aiter(
            subscribe, buffer=4, pause=lambda: paused.append(1), resume=wrap(resume)
        )
        async with it:
            async for v in it:  # draining calls resume(), which fails the stream
                got.append(v)
    assert resumed == []
    assert got == list(range(len(got)))


async def _cb_on_next(wrap: Wrap, flavour: str) -> None:
    log: list[tuple[str, int]] = []

    async def source() -> AsyncIterator[int]:
        for i in range(3):
            log.append(("pulled", i))
            yield i

    async def on_next(v: int) -> None:
        await anyio.lowlevel.checkpoint()
        log.append(("done", v))

    await callbacks.from_aiter(source(), wrap(on_next))
    assert log == [(k, i) for i in range(3) for k in ("pulled", "done")]


async def _cb_on_error(wrap: Wrap, flavour: str) -> None:
    seen: list[BaseException] = []
    boom = ValueError("boom")

    async def source() -> AsyncIterator[int]:
        yield 1
        raise boom

    async def on_error(exc: Exception) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(exc)

    await callbacks.from_aiter(source(), lambda v: None, on_error=wrap(on_error))
    assert seen == [boom]


async def _cb_on_completed(wrap: Wrap, flavour: str) -> None:
    seen: list[str] = []

    async def on_completed() -> None:
        await anyio.lowlevel.checkpoint()
        seen.append("completed")

    await callbacks.from_aiter(_agen(), lambda v: None, on_completed=wrap(on_completed))
    assert seen == ["completed"]


# ----------------------------------------------------------------- rx


async def _rx_source_factory(wrap: Wrap, flavour: str) -> None:
    async def make() -> AsyncIterator[int]:
        await anyio.lowlevel.checkpoint()
        return _agen(3)

    values: list[int] = []
    errors: list[Exception] = []
    done = anyio.Event()

    def on_error(exc: Exception) -> None:
        errors.append(exc)
        done.set()

    async with anyio.create_task_group() as tg:
        obs = rx.from_aiter(wrap(make), task_group=tg)
        for _ in range(2):  # cold: a fresh iteration per subscription
            done = anyio.Event()
            obs.subscribe(values.append, on_error, done.set)
            await done.wait()
    assert errors == []
    assert values == [0, 1, 2, 0, 1, 2]


def _rx_action(method: str) -> Callable[[Wrap, str], Awaitable[None]]:
    async def check(wrap: Wrap, flavour: str) -> None:
        import trio

        ran: list[int] = []

        async def action(scheduler: Any, state: Any) -> None:
            ran.append(1)

        with _refused("start_soon"):
            async with rx.open_trio_scheduler() as scheduler:
                if method == "schedule":
                    scheduler.schedule(wrap(action))
                elif method == "schedule_relative":
                    scheduler.schedule_relative(0, wrap(action))
                elif method == "schedule_absolute":
                    scheduler.schedule_absolute(scheduler.now, wrap(action))
                else:
                    scheduler.invoke_action(wrap(action))
                await trio.sleep_forever()  # the action's failure ends the block
        assert ran == []

    return check


# ----------------------------------------------------------------- threads


async def _threads_factory(wrap: Wrap, flavour: str) -> None:
    made: list[int] = []

    async def make() -> list[int]:
        made.append(1)
        return [1, 2]

    with _refused("bridges.iterate"):
        async with threads.to_aiter(wrap(make)) as it:
            async for _ in it:
                pass
    assert made == []


async def _consumer_gone_callback(wrap: Wrap, flavour: str) -> None:
    woken: list[int] = []

    async def wake() -> None:
        woken.append(1)

    gone = threads.ConsumerGone()
    if flavour != "returns-coroutine":
        with _refused("wake the source"):
            gone.add_callback(wrap(wake))
    else:
        # seen only when called, on the thread the consumer leaves from: logged, never raised
        gone.add_callback(wrap(wake))
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        logger = logging.getLogger("bridges")
        logger.addHandler(handler)
        try:
            gone._set()
        finally:
            logger.removeHandler(handler)
        [record] = records
        assert record.exc_info is not None and isinstance(record.exc_info[1], TypeError)
        assert "plain function" in str(record.exc_info[1])
    assert woken == []


# ----------------------------------------------------------------- ops


async def _paginate(wrap: Wrap, flavour: str) -> None:
    pages = {None: ([1, 2], "b"), "b": ([3], "c"), "c": ([4], None)}

    async def fetch(token: str | None) -> tuple[list[int], str | None]:
        await anyio.lowlevel.checkpoint()
        return pages[token]

    for prefetch in (False, True):
        async with ops.paginate(wrap(fetch), prefetch=prefetch) as it:
            assert [v async for v in it] == [1, 2, 3, 4]


def _helper(name: str) -> Callable[[Wrap, str], Awaitable[None]]:
    async def check(wrap: Wrap, flavour: str) -> None:
        double = awaiting(lambda v: v * 2)
        odd = awaiting(lambda v: v % 2 == 1)
        twice = awaiting(lambda v: [v, v])
        add = awaiting(lambda a, b: a + b)

        it = bridges.iterate(_agen(4))
        if name == "map":
            assert await it.map(wrap(double)).to_list() == [0, 2, 4, 6]
        elif name == "filter":
            assert await it.filter(wrap(odd)).to_list() == [1, 3]
        elif name == "flat_map":
            assert await it.flat_map(wrap(twice)).to_list() == [0, 0, 1, 1, 2, 2, 3, 3]
        elif name == "reduce":
            assert await it.reduce(wrap(add)) == 6
        elif name == "some":
            assert await it.some(wrap(odd))
        elif name == "every":
            assert not await it.every(wrap(odd))
        elif name == "find":
            assert await it.find(wrap(odd)) == 1
        elif name == "ops.map":
            async with ops.map(it, wrap(double), concurrency=2) as doubled:
                assert [v async for v in doubled] == [0, 2, 4, 6]
        else:
            seen: list[int] = []

            async def record(v: int) -> None:
                await anyio.lowlevel.checkpoint()
                seen.append(v)

            await it.for_each(wrap(record))
            assert seen == [0, 1, 2, 3]

    return check


# ----------------------------------------------------------------- the core


async def _buffered_start(wrap: Wrap, flavour: str) -> None:
    async def start(h: Handoff[int]) -> None:
        return None

    message = ""
    try:
        async with bridges.BufferedIterator(Handoff[int](4), wrap(start)):
            pass  # entering starts the source
    except TypeError as exc:
        message = str(exc)
    # (no traceback kept: a coroutine it holds is collected, and warns, in this test)
    gc.collect()
    assert re.search("(?i)plain function", message), message


# ----------------------------------------------------------------- testing


def _producer(which: str) -> Callable[[Wrap, str], Awaitable[None]]:
    async def check(wrap: Wrap, flavour: str) -> None:
        send, receive = bridges.open_channel[int](4)
        calls: list[str] = []

        async def async_send(v: int) -> None:
            calls.append("send")
            await send.send(v)

        async def async_close() -> None:
            calls.append("close")
            send.close()

        async def async_fail(exc: BaseException) -> None:
            calls.append("fail")
            send.fail(exc)

        hooks: dict[str, Callable[..., Any]] = {
            "send": send.send_blocking,
            "close": send.close,
            "fail": send.fail,
        }
        hooks[which] = wrap({"send": async_send, "close": async_close, "fail": async_fail}[which])
        end = testing.End.FAIL if which == "fail" else testing.End.COMPLETE
        script = testing.Script([1, 2], end=end, error=testing.SourceError("scripted"))
        async with receive:
            with _refused("blocking"):
                producer = testing.ScriptedProducer(
                    script, testing.Probe(), hooks["send"], hooks["close"], hooks["fail"]
                )
                producer.start()
                try:
                    if which == "fail":
                        # the stream cannot be failed by the offender itself: the
                        # producer keeps the refusal and ends
                        await anyio.to_thread.run_sync(producer.thread.join)
                        assert producer.error is not None
                        raise producer.error
                    async for _ in receive:
                        pass
                finally:
                    producer.stop()
                    send.close()
                    await anyio.to_thread.run_sync(producer.thread.join)
        assert calls == []

    return check


def _hooked_source(param: str) -> Callable[[Wrap, str], Awaitable[None]]:
    async def check(wrap: Wrap, flavour: str) -> None:
        calls: list[object] = []

        async def fn(*args: Any) -> None:
            calls.append(args)

        given: dict[str, Callable[..., Any]] = {"send": lambda v: None, "close": lambda: None}
        given[param] = wrap(fn)
        with _refused("emit.send"):
            testing.HookedSource(2).start(given["send"], given["close"])
        assert calls == []

    return check


def _broker_call(broker: Any, handle: str) -> Callable[[Wrap, str], Awaitable[None]]:
    """A broker spoke's ``Client.call(fn)``: ``fn`` gets the client's own ``handle``."""

    async def check(wrap: Wrap, flavour: str) -> None:
        with broker.LocalServer() as server:
            async with broker.connect(server.url) as client:

                async def fn(given: Any) -> Any:
                    return given

                assert await client.call(wrap(fn)) is getattr(client, handle)

    return check


# ----------------------------------------------------------------- the table

HOOKS: list[Hook] = [
    Hook("bridges.nats.Client.call", "fn", AWAITED, _broker_call(nats, "js")),
    Hook("bridges.redis.Client.call", "fn", AWAITED, _broker_call(redis, "redis")),
    Hook("bridges.callbacks.to_aiter", "subscribe", REFUSED, _cb_subscribe, "unsubscribe"),
    Hook("bridges.callbacks.to_aiter", "subscribe->unsubscribe", AWAITED, _cb_unsubscribe),
    Hook("bridges.callbacks.to_aiter", "pause", REFUSED, _cb_pause, "pause_reading"),
    Hook("bridges.callbacks.to_aiter", "resume", REFUSED, _cb_resume, "resume_reading"),
    Hook("bridges.callbacks.from_aiter", "on_next", AWAITED, _cb_on_next),
    Hook("bridges.callbacks.from_aiter", "on_error", AWAITED, _cb_on_error),
    Hook("bridges.callbacks.from_aiter", "on_completed", AWAITED, _cb_on_completed),
    Hook("bridges.rx.from_aiter", "source", AWAITED, _rx_source_factory),
    *(
        Hook(
            f"bridges.rx.TrioScheduler.{m}",
            "action",
            REFUSED,
            _rx_action(m),
            "start_soon",
            backends=("trio",),  # the scheduler runs in a trio run only
        )
        for m in ("schedule", "schedule_relative", "schedule_absolute", "invoke_action")
    ),
    Hook("bridges.threads.to_aiter", "iterable", REFUSED, _threads_factory, "bridges.iterate"),
    Hook(
        "bridges.threads.ConsumerGone.add_callback",
        "fn",
        REFUSED,
        _consumer_gone_callback,
        "wake the source",
    ),
    Hook("bridges.ops.paginate", "fetch_page", AWAITED, _paginate),
    *(
        Hook(f"bridges.BridgeIterator.{m}", "fn", AWAITED, _helper(m))
        for m in ("map", "filter", "flat_map", "reduce", "for_each", "some", "every", "find")
    ),
    Hook("bridges.ops.map", "fn", AWAITED, _helper("ops.map")),
    Hook(
        "bridges.BufferedIterator.__init__",
        "start",
        REFUSED,
        _buffered_start,
        "plain function",
    ),
    *(
        Hook("bridges.testing.ScriptedProducer.__init__", p, REFUSED, _producer(p), "blocking")
        for p in ("send", "close", "fail")
    ),
    *(
        Hook("bridges.testing.HookedSource.start", p, REFUSED, _hooked_source(p), "emit.send")
        for p in ("send", "close")
    ),
    Hook(
        "bridges.testing.Plan.__init__",
        "on_value",
        "not a user's hook: the rule checks build the Plan and pass their own plain on_value",
    ),
    Hook(
        "bridges.testing.PullHarness.subscribe_twice",
        "make",
        "not a user's hook: the rule checks call it with their own plain factory",
    ),
]


def _params() -> list[Any]:
    params = []
    for hook in HOOKS:
        if hook.check is None:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=hook.xfail)] if hook.xfail else []
        for flavour in FLAVOURS:
            params.append(
                pytest.param(hook, flavour, id=f"{hook.target}:{hook.param}-{flavour}", marks=marks)
            )
    return params


def _backend_of(anyio_backend: Any) -> str:
    return "uvloop" if isinstance(anyio_backend, tuple) else str(anyio_backend)


@pytest.mark.parametrize(("hook", "flavour"), _params())
async def test_an_async_callable_is_awaited_or_refused(
    hook: Hook, flavour: str, anyio_backend: Any
) -> None:
    if _backend_of(anyio_backend) not in hook.backends:
        pytest.skip(f"{hook.target} runs on {', '.join(hook.backends)} only")
    assert hook.check is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            await hook.check(FLAVOURS[flavour], flavour)
        finally:
            gc.collect()
    never_awaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert not never_awaited, f"a coroutine was left unawaited: {never_awaited}"
    assert not caught, [str(w.message) for w in caught]


# ----------------------------------------------------------------- completeness


def _callable_parameters() -> set[str]:
    """``target:param`` for every parameter of a public callable annotated as a callable."""
    found: set[str] = set()

    def scan(target: str, fn: object) -> None:
        try:
            sig = inspect.signature(fn)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return
        for p in sig.parameters.values():
            annotation = str(p.annotation)
            if "Callable" in annotation or "ScheduledAction" in annotation:
                found.add(f"{target}:{p.name}")

    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if not callable(obj):
                continue
            if not inspect.isclass(obj):
                scan(f"{name}.{attr}", obj)
                continue
            for meth, value in vars(obj).items():
                if meth.startswith("_") and meth != "__init__":
                    continue
                fn = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
                if callable(fn) and getattr(fn, "__module__", "").startswith("bridges"):
                    scan(f"{name}.{attr}.{meth}", fn)
    return found


def test_every_callable_parameter_has_a_row() -> None:
    rows = {f"{h.target}:{h.param}" for h in HOOKS}
    found = _callable_parameters()
    missing = sorted(found - rows)
    assert not missing, f"callable parameters without an R18 row: {missing}"
    stale = sorted(r for r in rows if "->" not in r and r not in found)
    assert not stale, f"rows for what is not a public callable parameter (any more): {stale}"


def test_every_row_is_decided() -> None:
    for h in HOOKS:
        if h.decision in (AWAITED, REFUSED):
            assert h.check is not None, f"{h.target}:{h.param} has no check"
            assert (h.keyword is not None) == (h.decision == REFUSED), h
        else:
            assert h.check is None and h.decision.startswith("not a user's hook: "), h
