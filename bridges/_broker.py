"""What the broker spokes (`bridges.nats`, `bridges.redis`) share besides the helper loop.

* `ServerProcess`: a broker's server process on a free 127.0.0.1 port, for
  tests and examples: start and wait until ready, stop, crash, restart on the
  same port and store.  Each spoke subclasses it with the command line and
  the readiness check of its server.
* `wheel_executable`: where a wheel put the server binary it ships.
* `check_name`, `check_window`: the spokes' argument checks, one message each.
* `as_client`: a spoke's client from what the caller passed (its own, or the
  library's on asyncio), or an error naming the fix.
* `Connect`: the ``async with connect(...) as client:`` of a spoke: the
  client on the current asyncio loop, or on a helper loop under trio; closed
  on every way out, however far its opening got.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final, Generic, TypeVar, cast

import anyio
import sniffio

from ._enter import ExcType, Tb
from ._helper_loop import run_on, start_loop, stop_loop

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "Connect",
    "as_client",
    "ServerProcess",
    "check_name",
    "check_window",
    "free_port",
    "wheel_executable",
]

C = TypeVar("C")  # the spoke's Client
N = TypeVar("N")  # the broker library's own client

#: the longest wait for the client's loop to finish closing a client (a dead connection)
CLOSE_GRACE: Final = 5.0

#: how long `ServerProcess.start` waits for the server to get ready
START_DEADLINE: Final = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wheel_executable(dist_name: str, name: str) -> str | None:
    """Where the installed wheel ``dist_name`` put the executable ``name``, if it did."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if Path(str(file)).name == name:
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    return None


def check_name(value: object, what: str) -> str:
    """``value`` if it is a non-empty str (a stream, subject, group or consumer name)."""
    if not isinstance(value, str):
        raise TypeError(f"{what}: expected a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what}: must not be empty")
    return value


def check_window(value: object, what: str, items: str) -> int:
    """``value`` if it is an int >= 1 (a buffer or an in-flight window of ``items``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}: expected an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(
            f"{what}={value}: must be at least 1 (the number of {items} in flight at once)"
        )
    return value


class ServerProcess(ABC):
    """A broker's server on a free 127.0.0.1 port, for tests and examples.

    ``with server:`` starts it and waits until it is ready (blocking, up to
    20 s: start it before the event loop's work, as a fixture does); leaving
    stops it, and removes its directory unless ``store`` was given.
    ``restart()`` keeps the port and the store; ``kill()`` is a crash
    (SIGKILL).  A subclass gives ``program``, ``scheme``, ``_command(log)``
    and ``_ready(log)``.
    """

    __slots__ = ("_own_store", "_proc", "_starts", "port", "store")

    #: the server's name, in messages
    program: ClassVar[str]
    #: the URL scheme of `url`
    scheme: ClassVar[str]

    def __init__(self, store: str | os.PathLike[str] | None = None) -> None:
        if store is not None and not isinstance(store, (str, os.PathLike)):
            raise TypeError(f"store: expected a directory path, got {type(store).__name__}")
        self._own_store = store is None
        #: the directory of the server's files (its log, its data)
        self.store = Path(
            tempfile.mkdtemp(prefix=f"bridges-{self.scheme}-") if store is None else store
        )
        #: the port it listens on, on 127.0.0.1
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def url(self) -> str:
        """``<scheme>://127.0.0.1:<port>``"""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if self._own_store:
            shutil.rmtree(self.store, ignore_errors=True)

    @abstractmethod
    def _command(self, log: Path) -> list[str]:
        """The command line that starts the server, logging to ``log``."""

    @abstractmethod
    def _ready(self, log: Path) -> bool:
        """Whether the started server is ready."""

    def start(self) -> None:
        """Start the server and wait until it is ready (blocking, up to 20 s).

        :raises RuntimeError: it runs already; the binary is missing; it did
            not get ready (the message holds its log)
        """
        if self._proc is not None:
            raise RuntimeError("this server is running already")
        self._starts += 1
        log = self.store / f"server-{self._starts}.log"
        proc = self._proc = subprocess.Popen(
            self._command(log),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_DEADLINE
        while not self._ready(log):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                text = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(f"{self.program} did not get ready; its log:\n{text}")
            time.sleep(0.01)  # a process outside: poll its sign of life

    def stop(self) -> None:
        """Shut it down cleanly (SIGTERM) and wait until it exited."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Crash it (SIGKILL) and wait until it is gone."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        """``stop()`` then ``start()``: the same port, the same store."""
        self.stop()
        self.start()


def as_client(
    value: object,
    what: str,
    client: type[C],
    native: type,
    *,
    spoke: str,
    native_name: str,
    connect_args: str,
) -> C:
    """``value`` as the spoke's client: itself if it is one (an instance of ``client``),
    else ``client(value)`` for the library's own client (``native``), which runs only
    on asyncio.

    :raises RuntimeError: the library's client, passed on another backend
    :raises TypeError: neither
    """
    if isinstance(value, client):
        return value
    if isinstance(value, native):
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            library = "none"
        if library != "asyncio":
            raise RuntimeError(
                f"{what}: a {native_name} runs only on asyncio, this is {library}: use "
                f"'async with bridges.{spoke}.connect({connect_args}) as client:' and pass "
                "the client"
            )
        return cast("Callable[[object], C]", client)(value)  # the spoke's Client(native)
    raise TypeError(
        f"{what}: expected a bridges.{spoke}.Client (from bridges.{spoke}.connect()) or a "
        f"{native_name}, got {type(value).__name__}"
    )


class Connect(ABC, Generic[C, N]):
    """``async with connect(...) as client:`` for a broker spoke whose client library
    runs on asyncio only.

    On asyncio the library's client (``N``) runs on the current loop.  Under
    trio it runs on a helper asyncio loop in a thread of its own, started on
    the way in and ended on the way out.  The client is made here, before it
    opens, so that this end owns it however far the opening got: a failure or
    a cancellation (under trio it can come just as the opening finished on the
    helper loop) closes it before the loop stops.  A spoke says how to make,
    open, close and wrap its client.
    """

    __slots__ = ("_client", "_entered", "_loop", "_native", "_thread")

    #: the name of the helper loop's thread
    thread_name: ClassVar[str]

    def __init__(self) -> None:
        self._entered = False
        self._client: C | None = None
        self._native: N | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @abstractmethod
    def _make(self) -> N:
        """The library's client, not opened yet (made on the caller's loop, used on the other)."""

    @abstractmethod
    async def _open(self, native: N) -> None:
        """Open ``native`` on its loop; it fails or is cancelled leaving nothing behind
        that ``_close`` cannot end."""

    @abstractmethod
    async def _close(self, native: N) -> None:
        """Close ``native`` on its loop, however far its opening got (opened, half
        opened, failed, or closed already)."""

    @abstractmethod
    def _wrap(self, native: N, loop: asyncio.AbstractEventLoop) -> C:
        """The spoke's client for an opened ``native`` on ``loop``."""

    async def __aenter__(self) -> C:
        if self._entered:
            raise RuntimeError("a connect() block can be entered only once")
        self._entered = True
        if sniffio.current_async_library() == "asyncio":
            loop = asyncio.get_running_loop()
        else:
            loop, self._thread = start_loop(self.thread_name)
        self._loop = loop
        native: N | None = None
        try:
            native = self._native = self._make()
            await run_on(loop, lambda: self._open(native))
        except BaseException:
            if native is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_GRACE):
                    await run_on(loop, lambda: self._close(native))
            await self._stop(loop)
            raise
        client = self._client = self._wrap(native, loop)
        return client

    async def __aexit__(self, exc_type: ExcType, exc: BaseException | None, tb: Tb) -> None:
        native, loop = self._native, self._loop
        assert native is not None
        assert loop is not None
        try:
            with anyio.CancelScope(shield=True):
                await run_on(loop, lambda: self._close(native))
        finally:
            await self._stop(loop)

    async def _stop(self, loop: asyncio.AbstractEventLoop) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            await stop_loop(loop, thread)
