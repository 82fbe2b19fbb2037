"""What the broker spokes (`bridges.nats`, `bridges.redis`) share besides the helper loop.

* `ServerProcess`: a broker's server process on a free 127.0.0.1 port, for
  tests and examples: start and wait until ready, stop, crash, restart on the
  same port and store.  Each spoke subclasses it with the command line and
  the readiness check of its server.
* `wheel_executable`: where a wheel put the server binary it ships.
* `check_name`, `check_window`: the spokes' argument checks, one message each.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ServerProcess", "check_name", "check_window", "free_port", "wheel_executable"]

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
