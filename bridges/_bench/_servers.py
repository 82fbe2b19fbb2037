"""One broker server of each kind per bench or test process, started on first use,
stopped at exit."""

from __future__ import annotations

import atexit
from typing import Protocol


class _Server(Protocol):
    @property
    def url(self) -> str: ...

    def __enter__(self) -> object: ...

    def __exit__(self, *exc_info: object) -> object: ...


_shared: dict[type, _Server] = {}


def shared_url(kind: type[_Server]) -> str:
    """The URL of this process's server of ``kind`` (a spoke's ``LocalServer``)."""
    server = _shared.get(kind)
    if server is None:
        server = _shared[kind] = kind()
        server.__enter__()
        atexit.register(server.__exit__, None, None, None)
    return server.url
