"""The one error for an object used without the ``async with`` it needs.

Some calls return an async context manager whose block owns a task (a pump,
a scheduler's runner).  Used as if it were the thing the block hands out
(``async for`` over it, a method call on it, passed to reactivex as a
scheduler), it would otherwise fail deep inside Python or a dependency with
a message that does not say what to do.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, NoReturn

#: the parameter types of ``__exit__`` / ``__aexit__``, named once
ExcType = type[BaseException] | None
Tb = TracebackType | None


def not_entered(what: str, usage: str, why: str = "") -> RuntimeError:
    """The error for ``what`` used without entering it; ``usage`` shows the fix."""
    because = f" ({why})" if why else ""
    return RuntimeError(f"{what} must be entered with 'async with' first{because}: {usage}")


class MustEnter:
    """Mixin for an async context manager that is mistaken for what it hands out.

    ``async for`` over it, and reading one of ``handed_out`` (the public
    names of what the block hands out) from it, raise
    ``not_entered`` naming ``usage``.  Other missing
    attributes still raise ``AttributeError`` (``hasattr`` keeps working).
    """

    __slots__ = ()

    #: what the object is called in the message, e.g. ``channels.from_aiter()``
    what: ClassVar[str] = ""
    #: the fix, e.g. ``async with channels.from_aiter(source) as receive: ...``
    usage: ClassVar[str] = ""
    #: the names of what the block hands out
    handed_out: ClassVar[frozenset[str]] = frozenset()

    def _not_entered(self) -> NoReturn:
        raise not_entered(self.what, self.usage)

    if not TYPE_CHECKING:  # a checker should still flag these uses

        def __aiter__(self):
            self._not_entered()

        def __iter__(self):
            self._not_entered()

        def __getattr__(self, name):
            if name in type(self).handed_out:
                self._not_entered()
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
