"""One redis-server per bench or test process, started on first use, stopped at exit."""

from __future__ import annotations

import atexit

from bridges.redis import LocalServer

_shared: LocalServer | None = None


def shared_url() -> str:
    """The URL of this process's server."""
    global _shared
    if _shared is None:
        _shared = LocalServer()
        _shared.__enter__()
        atexit.register(_shared.__exit__, None, None, None)
    return _shared.url
