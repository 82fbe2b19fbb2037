"""Hooks called as they are declared (R18): an async callable where a plain one is called.

Where the library calls a user's function synchronously (a pause hook on the
producer's thread, a factory in a worker thread, a scheduler action), an
``async def`` there would only make a coroutine that nobody awaits: the work
silently never happens.  Such a surface refuses it with a ``TypeError``
that names the fix, twice over:

* up front, where the function is handed in (`require_sync`), which
  sees ``async def`` functions and methods, ``functools.partial`` objects of
  them, and objects whose ``__call__`` is ``async def``;
* at call time (`refuse_awaitable`, `checked`), which also
  catches what no signature shows (a lambda returning a coroutine): the
  awaitable is closed, so that no "never awaited" warning follows, and a
  ``TypeError`` is raised where the surface reports its hook's errors (which
  fails the stream: nothing is dropped silently).

Surfaces that can await with the same guarantees await instead, and say so
in their docstrings.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = [
    "AsyncHookError",
    "checked",
    "is_async_callable",
    "refuse_awaitable",
    "require_sync",
]


class AsyncHookError(TypeError):
    """An async callable (or an awaitable result) where the library calls a plain function.

    A ``TypeError``, whose message names the fix; its own class lets a
    caller that must route it somewhere (a producer thread failing its
    stream with it) tell it from other errors.
    """


def is_async_callable(fn: object) -> bool:
    """True for an ``async def`` function or method, a partial of one, or an async ``__call__``.

    A lambda or a plain function that returns a coroutine is not seen here:
    check its result too (`refuse_awaitable`).
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn):
        return False
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _name(fn: object) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def require_sync(fn: object, what: str, why: str) -> None:
    """Refuse an async callable where a plain one is called.

    :param what: the parameter, as the message names it (``"pause"``)
    :param why: where and how it is called, and the fix (a sentence or two)
    :raises AsyncHookError: ``fn`` is an async callable (a ``TypeError``)
    """
    if is_async_callable(fn):
        raise AsyncHookError(
            f"{what} must be a plain function, not an async one ({_name(fn)}): {why}"
        )


def refuse_awaitable(result: object, what: str, why: str) -> None:
    """Refuse what a plain function returned if it is an awaitable (it would never be awaited).

    The awaitable is closed first (a coroutine then never runs, and no
    "coroutine was never awaited" warning follows).

    :raises AsyncHookError: ``result`` is awaitable (a ``TypeError``)
    """
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if callable(close):
            close()
        raise AsyncHookError(
            f"{what} must be a plain function, but it returned an awaitable "
            f"({type(result).__name__}) that nothing would await: {why}"
        )


def checked(fn: Callable[..., Any], what: str, why: str) -> Callable[..., Any]:
    """``fn`` refused up front if it is async, else wrapped to refuse an awaitable it returns."""
    require_sync(fn, what, why)

    def call(*args: Any) -> Any:
        result = fn(*args)
        refuse_awaitable(result, what, why)
        return result

    return call
