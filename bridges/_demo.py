"""``python -m bridges demo``: the library at work on real components, checked as it runs.

Two pipelines run side by side for a few seconds:

* **live**: a threaded "sensor SDK" that calls back on its own thread
  -> [`bridges.callbacks.to_aiter`][bridges.callbacks.to_aiter] ->
  [`bridges.rx.from_aiter`][bridges.rx.from_aiter] -> reactivex operators ->
  [`bridges.rx.to_aiter`][bridges.rx.to_aiter] with ``buffer=1, overflow="drop_oldest"`` -> a
  dashboard that redraws 20 times a second: it only ever wants the latest reading, and every other
  one is counted as dropped;
* **archive**: an sqlite3 cursor ([`bridges.threads.to_aiter`][bridges.threads.to_aiter]) ->
  [`bridges.channels.from_aiter`][bridges.channels.from_aiter], merged with a quote feed that calls
  back on the event-loop thread and has pause/resume hooks
  ([`bridges.callbacks.to_aiter`][bridges.callbacks.to_aiter]) ->
  [`bridges.ops.merge`][bridges.ops.merge] ->
  [`bridges.ops.batch`][bridges.ops.batch] -> an exporter whose uploads are slow: the
  buffers upstream fill, the cursor's worker thread waits, the feed is paused.

A display shows every buffer (fill, high-water, throughput, drops, pauses).
Then the task group is cancelled, and the demo checks the rules it showed:

* R2: values behind ``"block"`` buffers arrive once each, in order;
* R3: no bounded buffer ever held more than its capacity;
* R6: the cancellation released every source exactly once (an unregistered
  callback, a closed cursor, a hung-up feed, a disposed subscription);
* R8: the event-loop producer was never blocked nor refused: it was paused;
* R9: ``drop_oldest`` dropped only as named, and counted every drop;
* R14: no task and no thread is left running.

A clean run also logs nothing on the ``bridges`` logger.  The demo exits
with status 1 if any of this failed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import math
import random
import sqlite3
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import sniffio

from . import callbacks, channels, ops, rx, threads
from ._buffer import Stats
from ._iterator import BridgeIterator

if TYPE_CHECKING:
    from .callbacks import Emitter

__all__ = ["main"]

#: capacities of the buffers the demo shows
SENSOR_BUFFER = 64
ROWS_BUFFER = 256
CHANNEL_BUFFER = 32
FEED_BUFFER = 16
DASHBOARD_BUFFER = 1

#: the exporter uploads this many values at a time, and each upload takes this long
UPLOAD_SIZE = 100
UPLOAD_SECONDS = 0.02
#: the dashboard redraws this often (per second)
DASHBOARD_FPS = 20
#: the ``--seconds`` count from when values flow from every source, or from this long after
#: the start if they do not (then the checks say what did not start)
START_LIMIT = 30.0

#: threads that are not the demo's: idle workers of anyio's and trio's thread caches
_CACHE_THREADS = ("AnyIO worker thread", "Trio thread", "trio-", "ThreadPoolExecutor")


# ---------------------------------------------------------------------------------------
# The legacy components: what users of the library wrap.


@dataclass(frozen=True)
class Reading:
    """One sample of the sensor SDK, in its wire format."""

    seq: int
    centi_celsius: int


@dataclass(frozen=True)
class Smoothed:
    """What the dashboard shows: the latest temperature and its moving average."""

    seq: int
    celsius: float
    average: float


@dataclass(frozen=True)
class Quote:
    """One message of the quote feed."""

    seq: int
    price: float


#: a row of the history table: (id, sensor, celsius)
Row = tuple[int, str, float]


class SensorSDK:
    """A stand-in for a vendor's threaded SDK.

    It samples on a thread of its own and calls every registered callback
    there, reading after reading, in bursts.  It has no flow control: a
    callback that takes long holds up its thread, and that is all.
    """

    def __init__(self, rate: float = 2000.0, burst: int = 20) -> None:
        self._burst = burst
        self._period = burst / rate
        self._callbacks: dict[int, Callable[[Reading], object]] = {}
        self._tokens = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sensor-sdk", daemon=True)
        #: how many times unregister() was called
        self.unregistered = 0

    def start(self) -> None:
        self._thread.start()

    def register(self, callback: Callable[[Reading], object]) -> int:
        with self._lock:
            token = next(self._tokens)
            self._callbacks[token] = callback
        return token

    def unregister(self, token: int) -> None:
        with self._lock:
            self.unregistered += 1
            self._callbacks.pop(token, None)

    def close(self, timeout: float = 5.0) -> bool:
        """Stop sampling; True once the SDK's thread has ended."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        noise = random.Random(1)
        seq = 0
        while not self._stop.is_set():
            for _ in range(self._burst):
                wave = 500 * math.sin(seq / 2000)
                reading = Reading(seq, 2150 + int(wave) + noise.randint(-30, 30))
                seq += 1
                with self._lock:
                    registered = list(self._callbacks.values())
                for callback in registered:
                    callback(reading)
            self._stop.wait(self._period)  # the sampling rate, and a prompt stop


class QuoteFeed:
    """A stand-in for an event-loop client library (a websocket feed, a transport).

    Its own task calls the listener on the event-loop thread, in bursts.  It
    has flow control, like a transport: ``pause_reading()`` stops the
    deliveries at once, ``resume_reading()`` restarts them.
    """

    def __init__(self, burst: int = 16, period: float = 0.002) -> None:
        self._burst = burst
        self._period = period
        self._listener: Callable[[Quote], bool] | None = None
        self._paused = False
        self._changed: anyio.Event | None = None
        #: how many times hang_up() was called
        self.hangups = 0
        #: deliveries the listener did not take while listening
        self.refused = 0

    def listen(self, listener: Callable[[Quote], bool]) -> None:
        self._listener = listener
        self._poke()

    def hang_up(self) -> None:
        self.hangups += 1
        self._listener = None
        self._poke()

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        self._poke()

    def _deliverable(self) -> Callable[[Quote], bool] | None:
        """The listener, if the feed may deliver to it now."""
        return None if self._paused else self._listener

    def _poke(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def run(self) -> None:
        """The library's own task: deliver while somebody listens and it is not paused."""
        moves = random.Random(2)
        price = 100.0
        seq = 0
        while True:
            while self._deliverable() is None:
                self._changed = anyio.Event()
                await self._changed.wait()
            for _ in range(self._burst):
                listener = self._deliverable()
                if listener is None:
                    break  # it honours pause at once: not one value more
                price = max(1.0, price + moves.gauss(0, 0.05))
                if not listener(Quote(seq, round(price, 2))):
                    self.refused += 1
                seq += 1
            await anyio.sleep(self._period)


class _HistoryCursor(sqlite3.Cursor):
    """An sqlite3 cursor that closes its connection with it, and says so."""

    on_close: Callable[[], object] | None = None

    def close(self) -> None:
        super().close()
        self.connection.close()
        if self.on_close is not None:
            self.on_close()


# ---------------------------------------------------------------------------------------
# The demo: the pipelines, their stages, the checks.


class _HasStats(Protocol):
    @property
    def stats(self) -> Stats: ...


@dataclass
class _Stage:
    """One buffer on the display."""

    key: str
    #: where the values come from and go to
    name: str
    #: the bridge that made the buffer
    via: str
    policy: str
    capacity: int
    #: what the overflow did: drops, a held-back producer (thread waits, pauses)
    note: Callable[[Stats], str] | None = None
    #: the iterator whose buffer this is, once it exists
    it: _HasStats | None = None
    #: (time, delivered) samples of the last second, for the throughput
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    rate: float = 0.0

    @property
    def stats(self) -> Stats | None:
        return None if self.it is None else self.it.stats

    def sample(self, now: float) -> None:
        stats = self.stats
        if stats is None:
            return
        samples = self.samples
        samples.append((now, stats.delivered))
        while len(samples) > 2 and now - samples[1][0] >= 1.0:
            samples.popleft()
        t0, n0 = samples[0]
        if now > t0:
            self.rate = (stats.delivered - n0) / (now - t0)


@dataclass
class _Check:
    rule: str
    ok: bool
    text: str


class _Collect(logging.Handler):
    """Keeps what the library logs (cleanup errors), for the verdict and off the display."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Demo:
    """Both pipelines, the counters the checks read, and the display's stages."""

    def __init__(
        self, sdk: SensorSDK, *, seconds: float, history_rows: int, break_release: bool = False
    ) -> None:
        self.sdk = sdk
        self.feed = QuoteFeed()
        self.seconds = seconds
        self.history_rows = history_rows
        #: the self-test: the sensor's subscribe "forgets" to return its unsubscribe
        self.break_release = break_release
        self.phase = "starting"
        self.elapsed = 0.0
        #: set once a value from every source has arrived (made in run(), on the event loop)
        self._flowing: anyio.Event | None = None
        #: tasks still running once the task group had exited (asyncio; trio allows none)
        self.stray_tasks: list[str] = []
        self.sensor_waits = 0
        self.cursor_closes = 0
        self.rx_disposed = 0
        self.uploads = 0
        self.latest: Smoothed | None = None
        #: what was released once the cancelled tasks had exited (None: they did not get there)
        self.released_on_exit: dict[str, int] | None = None
        # R2: the next value each ordered stream must deliver
        self.next_reading: int | None = None
        self.readings_seen = 0
        self.next_row = 1
        self.next_quote = 0
        # R9: values emitted into the conflating buffer, and the last one shown
        self.into_dashboard = 0
        self.last_shown = -1
        self.broken: dict[str, list[str]] = {}
        self.stages = {
            stage.key: stage
            for stage in (
                _Stage(
                    "sensor",
                    "sensor SDK thread -> Rx",
                    "callbacks.to_aiter",
                    "block",
                    SENSOR_BUFFER,
                    lambda _: f"{self.sensor_waits} thread waits",
                ),
                _Stage(
                    "dashboard",
                    "Rx -> dashboard",
                    "rx.to_aiter",
                    "drop_oldest",
                    DASHBOARD_BUFFER,
                    lambda stats: f"{stats.dropped} dropped",
                ),
                _Stage("rows", "cursor -> channel", "threads.to_aiter", "block", ROWS_BUFFER),
                _Stage(
                    "channel", "channel -> merge", "channels.from_aiter", "block", CHANNEL_BUFFER
                ),
                _Stage(
                    "feed",
                    "quote feed -> merge",
                    "callbacks.to_aiter",
                    "block+pause",
                    FEED_BUFFER,
                    lambda stats: f"{stats.pauses} pauses",
                ),
            )
        }

    def _pauses(self) -> int:
        stats = self.stages["feed"].stats
        return 0 if stats is None else stats.pauses

    def _break(self, rule: str, text: str) -> None:
        found = self.broken.setdefault(rule, [])
        if len(found) < 5:  # a broken rule tends to break on every value
            found.append(text)

    # -- the live pipeline: sensor thread -> Rx -> conflating dashboard -------------------

    def _subscribe_sensor(self, emit: Emitter[Reading]) -> Callable[[], object] | None:
        def on_reading(reading: Reading) -> None:
            # On the SDK's thread.  A zero timeout asks "would this wait?", so
            # that the display can count how often the thread was held back;
            # then it waits for real (the value was not sent by the first try).
            try:
                emit.send(reading, timeout=0)
            except TimeoutError:
                self.sensor_waits += 1
                emit.send(reading)

        token = self.sdk.register(on_reading)
        if self.break_release:
            return None
        return lambda: self.sdk.unregister(token)

    def _reading_arrived(self, reading: Reading) -> None:
        self.readings_seen += 1
        if self.next_reading is not None and reading.seq != self.next_reading:
            self._break(
                "R2", f"sensor reading #{reading.seq} came when #{self.next_reading} was due"
            )
        self.next_reading = reading.seq + 1
        self._check_flowing()

    def _check_flowing(self) -> None:
        """Set ``_flowing`` once readings, rows and quotes have all arrived."""
        flowing = self.readings_seen > 0 and self.next_row > 1 and self.next_quote > 0
        if flowing and self._flowing is not None:
            self._flowing.set()

    def _into_dashboard(self, _value: Smoothed) -> None:
        self.into_dashboard += 1

    def _rx_released(self) -> None:
        self.rx_disposed += 1

    def _check_conflation(self, stats: Stats) -> None:
        accounted = stats.delivered + stats.dropped + stats.buffered
        if accounted != self.into_dashboard:
            self._break(
                "R9",
                f"{self.into_dashboard} values emitted into the dashboard's buffer, but "
                f"{stats.delivered} delivered + {stats.dropped} dropped + {stats.buffered} held",
            )

    async def dashboard(self) -> None:
        from reactivex import operators as rx_ops

        def calibrate(reading: Reading) -> Smoothed:
            celsius = reading.centi_celsius / 100
            return Smoothed(reading.seq, celsius, celsius)

        def smooth(previous: Smoothed, new: Smoothed) -> Smoothed:
            average = previous.average + 0.02 * (new.celsius - previous.average)
            return Smoothed(new.seq, new.celsius, average)

        async with (
            anyio.create_task_group() as pumps,
            callbacks.to_aiter(self._subscribe_sensor, buffer=SENSOR_BUFFER) as readings,
        ):
            self.stages["sensor"].it = readings
            observable = rx.from_aiter(readings, task_group=pumps).pipe(
                rx_ops.do_action(on_next=self._reading_arrived),
                rx_ops.map(calibrate),
                rx_ops.scan(smooth),
                rx_ops.do_action(on_next=self._into_dashboard),
                rx_ops.finally_action(self._rx_released),
            )
            async with rx.to_aiter(
                observable, buffer=DASHBOARD_BUFFER, overflow="drop_oldest"
            ) as latest:
                self.stages["dashboard"].it = latest
                try:
                    async for value in latest:
                        self._check_conflation(latest.stats)
                        if value.seq <= self.last_shown:
                            self._break(
                                "R9",
                                f"the dashboard got reading #{value.seq} after "
                                f"#{self.last_shown}: drop_oldest must keep the order",
                            )
                        self.last_shown = value.seq
                        self.latest = value
                        await anyio.sleep(1 / DASHBOARD_FPS)  # the redraw: a slow stage
                finally:
                    # still inside the block: nothing was released yet
                    self._check_conflation(latest.stats)

    # -- the archive pipeline: cursor + feed -> channel, merge, batch -> slow exporter -----

    def _open_history(self) -> Iterator[Row]:
        """The cursor factory; it runs in the worker thread, which owns the connection."""
        con = sqlite3.connect(":memory:")
        try:
            con.execute(
                "CREATE TABLE history (id INTEGER PRIMARY KEY, sensor TEXT NOT NULL, "
                "celsius REAL NOT NULL)"
            )
            con.execute(
                "INSERT INTO history (id, sensor, celsius) "
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                "SELECT i, 'probe-' || (i % 4), 18.0 + (i % 700) / 100.0 FROM n",
                (self.history_rows,),
            )
            cursor = con.cursor(_HistoryCursor)
            cursor.on_close = self._cursor_closed
            cursor.execute("SELECT id, sensor, celsius FROM history ORDER BY id")
        except BaseException:
            con.close()
            raise
        return cursor

    def _cursor_closed(self) -> None:
        self.cursor_closes += 1

    def _subscribe_feed(self, emit: Emitter[Quote]) -> Callable[[], object]:
        self.feed.listen(emit.send)
        return self.feed.hang_up

    def _exported(self, item: Row | Quote) -> None:
        if isinstance(item, Quote):
            if item.seq != self.next_quote:
                self._break("R2", f"quote #{item.seq} came when #{self.next_quote} was due")
            self.next_quote = item.seq + 1
        else:
            if item[0] != self.next_row:
                self._break("R2", f"row {item[0]} came when row {self.next_row} was due")
            self.next_row = item[0] + 1
        self._check_flowing()

    async def exporter(self) -> None:
        feed = self.feed
        async with (
            threads.to_aiter(self._open_history, buffer=ROWS_BUFFER) as rows,
            channels.from_aiter(rows, buffer=CHANNEL_BUFFER) as receive,
            callbacks.to_aiter(
                self._subscribe_feed,
                buffer=FEED_BUFFER,
                pause=feed.pause_reading,
                resume=feed.resume_reading,
            ) as quotes,
        ):
            self.stages["rows"].it = rows
            self.stages["channel"].it = receive
            self.stages["feed"].it = quotes
            merged: BridgeIterator[Row | Quote] = ops.merge(receive, quotes)
            async with ops.batch(merged, UPLOAD_SIZE) as uploads:
                async for upload in uploads:
                    for item in upload:
                        self._exported(item)
                    self.uploads += 1
                    await anyio.sleep(UPLOAD_SECONDS)  # the upload: the slow stage

    # -- the run -------------------------------------------------------------------------

    async def run(self, view: _View) -> None:
        start = anyio.current_time()
        self._flowing = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.feed.run)
                tg.start_soon(self.dashboard)
                tg.start_soon(self.exporter)
                tg.start_soon(self._display, view, start)
                # the seconds count once every source is in use: on a busy machine the
                # cancellation would otherwise come before a source was acquired at all
                with anyio.move_on_after(START_LIMIT):
                    await self._flowing.wait()
                self.phase = "running"
                await anyio.sleep(self.seconds)
                self.phase = "cancelling"
                tg.cancel_scope.cancel()
        finally:
            # Every task above has exited (also when one failed and the group
            # cancelled the others): each source it consumed is released by now.
            self.released_on_exit = {
                "sensor": self.sdk.unregistered,
                "feed": self.feed.hangups,
                "rx": self.rx_disposed,
            }
            self.stray_tasks = _stray_tasks()
            self.phase = "cancelled"

    async def _display(self, view: _View, start: float) -> None:
        while True:
            now = anyio.current_time()
            self.elapsed = now - start
            for stage in self.stages.values():
                stage.sample(now)
            view.update(self)
            await anyio.sleep(view.interval)

    # -- the verdict ---------------------------------------------------------------------

    def releases(self) -> list[tuple[str, int]]:
        return [
            ("sensor SDK callback unregistered", self.sdk.unregistered),
            ("sqlite cursor closed", self.cursor_closes),
            ("quote feed hung up", self.feed.hangups),
            ("Rx subscription disposed", self.rx_disposed),
        ]

    def checks(
        self,
        leftover: list[threading.Thread],
        sdk_stopped: bool,
        logged: list[logging.LogRecord],
    ) -> list[_Check]:
        """Evaluate the rules, once everything has stopped."""
        out: list[_Check] = []

        def rule(name: str, fine: str, extra: list[str] | None = None) -> None:
            problems = self.broken.get(name, []) + (extra or [])
            out.append(_Check(name, not problems, "; ".join(problems) if problems else fine))

        rule(
            "R2",
            f"order and completeness behind block buffers: {self.readings_seen} readings, "
            f"{self.next_row - 1} rows, {self.next_quote} quotes, each once, in order",
        )

        bounded: list[str] = []
        over: list[str] = []
        for stage in self.stages.values():
            stats = stage.stats
            if stats is None:
                continue
            bounded.append(f"{stage.key} {stats.high_water}/{stage.capacity}")
            if stats.high_water > stage.capacity:
                over.append(
                    f"{stage.name}: high-water {stats.high_water} above its buffer "
                    f"({stage.capacity})"
                )
        rule("R3", "bounded: high-water " + ", ".join(bounded), over)

        unreleased = [
            f"{what}: {n} times, not exactly once" for what, n in self.releases() if n != 1
        ]
        if self.released_on_exit is None:
            unreleased.append("the cancellation did not complete")
        elif not unreleased:
            unreleased = [
                f"{name} was not released before its task exited"
                for name, n in self.released_on_exit.items()
                if n != 1
            ]
        rule(
            "R6",
            "early exit: every source released exactly once, by the cancellation",
            unreleased,
        )

        refused = []
        if self.feed.refused:
            refused.append(f"the quote feed had {self.feed.refused} values refused")
        rule(
            "R8",
            f"the loop-thread feed was never blocked nor refused: paused {self._pauses()} "
            "times instead",
            refused,
        )

        dash = self.stages["dashboard"].stats
        dropped = 0 if dash is None else dash.dropped
        rule(
            "R9",
            f"drop_oldest: {self.into_dashboard} emitted = shown + {dropped} dropped + held; "
            "shown in order",
        )

        threads_left = [f"task {name!r} still running" for name in self.stray_tasks]
        threads_left += [f"thread {t.name!r} still running" for t in leftover]
        if not sdk_stopped:
            threads_left.append("the sensor SDK's thread did not stop")
        rule("R14", "no task and no thread left running", threads_left)

        # Not a rule, but part of a clean run: the library had nothing to report
        # (it logs cleanup errors that coincide with another exception).
        noise = []
        for record in logged[:3]:
            exc = record.exc_info[1] if record.exc_info else None
            noise.append(
                f"the bridges logger reported {record.getMessage()!r}"
                + ("" if exc is None else f" ({type(exc).__name__})")
            )
        rule("log", "the library logged nothing: no cleanup error, no warning", noise)
        return out


# ---------------------------------------------------------------------------------------
# The display: rich's live view on a terminal, plain lines elsewhere.


class _View(Protocol):
    interval: float

    def start(self, demo: Demo) -> None: ...

    def update(self, demo: Demo) -> None: ...

    def stop(self, demo: Demo) -> None: ...


def _header(demo: Demo, backend: str) -> list[str]:
    return [
        f"bridges demo on {backend}: {demo.seconds:g} s, then a cancellation",
        "  live:    sensor SDK (thread) -> callbacks.to_aiter -> rx.from_aiter",
        "           -> map, scan -> rx.to_aiter(drop_oldest) -> dashboard "
        f"({DASHBOARD_FPS} redraws/s)",
        "  archive: sqlite cursor -> threads.to_aiter -> channels.from_aiter ---------+",
        "           quote feed (event loop, pause/resume) -> callbacks.to_aiter ------+",
        f"           -> ops.merge -> ops.batch({UPLOAD_SIZE}) -> exporter "
        f"({UPLOAD_SECONDS * 1000:g} ms per upload)",
    ]


class _PlainView:
    """One progress line a second: for logs, CI and pipes (no escape codes)."""

    interval = 0.25  # the throughput is sampled this often; a line is printed each second

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.printed = 0

    def start(self, demo: Demo) -> None:
        print("\n".join(_header(demo, self.backend)), flush=True)

    def update(self, demo: Demo) -> None:
        if int(demo.elapsed) <= self.printed or demo.phase != "running":
            return
        self.printed = int(demo.elapsed)
        parts = [f"{demo.elapsed:4.1f}s"]
        for stage in demo.stages.values():
            stats = stage.stats
            if stats is None:
                parts.append(f"{stage.key} -")
                continue
            text = (
                f"{stage.key} {stage.rate:.0f}/s "
                f"{stats.buffered}/{stage.capacity} hw {stats.high_water}"
            )
            if stage.note is not None:
                text += f" {stage.note(stats)}"
            parts.append(text)
        print(" | ".join(parts), flush=True)

    def stop(self, demo: Demo) -> None:
        pass


class _LiveView:
    """rich's live display, redrawn by the demo's display task (no refresh thread)."""

    interval = 0.125

    def __init__(self, backend: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.backend = backend
        self.console = Console()
        self.live = Live(console=self.console, auto_refresh=False, transient=False)

    def start(self, demo: Demo) -> None:
        self.live.start()
        self.update(demo)

    def update(self, demo: Demo) -> None:
        self.live.update(self._render(demo), refresh=True)

    def stop(self, demo: Demo) -> None:
        self.update(demo)
        self.live.stop()

    def _render(self, demo: Demo) -> Any:
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        title = f"{demo.phase}: {demo.elapsed:.1f} s of {demo.seconds:g} s"
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("buffer")
        table.add_column("policy")
        table.add_column("fill")
        table.add_column("high", justify="right")
        table.add_column("moved/s", justify="right")
        table.add_column("overflow")
        for stage in demo.stages.values():
            stats = stage.stats
            name = Text.assemble((stage.key, "bold"), "\n", (stage.via, "dim"))
            policy = f"{stage.policy}\n{stage.capacity}"
            if stats is None:
                table.add_row(name, policy)
                continue
            filled = round(8 * min(stats.buffered, stage.capacity) / stage.capacity)
            fill = Text.assemble(
                ("█" * filled, "cyan"), ("░" * (8 - filled), "dim"), f"\n{stats.buffered}"
            )
            over = stats.high_water > stage.capacity
            table.add_row(
                name,
                policy,
                fill,
                Text(f"{stats.high_water}", style="bold red" if over else "green"),
                f"{stage.rate:,.0f}",
                "" if stage.note is None else stage.note(stats).replace(" ", "\n", 1),
            )
        lines: list[Any] = [Text("\n".join(_header(demo, self.backend))), table]
        if demo.latest is not None:
            value = demo.latest
            lines.append(
                Text(
                    f"dashboard: {value.celsius:5.2f} °C (average {value.average:5.2f} °C), "
                    f"reading #{value.seq}"
                )
            )
        lines.append(
            Text(
                f"exporter: {demo.uploads} uploads, rows up to {demo.next_row - 1}, "
                f"quotes up to #{demo.next_quote - 1}"
            )
        )
        return Group(*lines)


# ---------------------------------------------------------------------------------------
# The command.


def _stray_tasks() -> list[str]:
    """The tasks running besides this one (asyncio; trio's nurseries let none outlive them)."""
    if sniffio.current_async_library() != "asyncio":
        return []
    this = asyncio.current_task()
    return [task.get_name() for task in asyncio.all_tasks() if task is not this]


def _new_threads(baseline: set[threading.Thread]) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t not in baseline
        and t.is_alive()
        and not t.name.startswith(_CACHE_THREADS)
        and "asyncio_" not in t.name
    ]


def _join_new_threads(baseline: set[threading.Thread], timeout: float) -> list[threading.Thread]:
    """Wait (at most ``timeout`` s in all) for the threads started since ``baseline`` to end."""
    deadline = time.monotonic() + timeout
    for t in _new_threads(baseline):
        t.join(max(0.0, deadline - time.monotonic()))
    return _new_threads(baseline)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 25:
        raise argparse.ArgumentTypeError("give a duration above 0 and at most 25 seconds")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bridges demo",
        description=(
            "A threaded callback SDK and an sqlite cursor feed an Rx pipeline and a channel "
            "consumer with slow stages, on a live display; then everything is cancelled and "
            "the rules shown are checked (exit status 1 if one was broken)."
        ),
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio", "uvloop"),
        default="asyncio",
        help="the event loop to run on (default: asyncio)",
    )
    parser.add_argument(
        "--seconds",
        type=_seconds,
        default=8.0,
        help="how long the pipelines run, once values flow, before the cancellation (default: 8)",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="plain progress lines, even on a terminal (the default when stdout is not one)",
    )
    # the test suite's proof that a broken rule fails the demo: a source that is never released
    parser.add_argument("--self-test-break", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the exit status (0: every rule held)."""
    args = _parser().parse_args(argv)
    backend: str = args.backend
    options: dict[str, Any] = {}
    if backend == "uvloop":
        options = {"use_uvloop": True}
    seconds: float = args.seconds
    live = not args.plain and sys.stdout.isatty()
    view: _View = _PlainView(backend)
    if live:
        try:
            view = _LiveView(backend)
        except ImportError:  # no rich: the plain lines say the same
            pass

    baseline = set(threading.enumerate())
    sdk = SensorSDK()
    demo = Demo(
        sdk,
        seconds=seconds,
        history_rows=int(50_000 + 10_000 * seconds),
        break_release=args.self_test_break,
    )
    error: BaseException | None = None
    logged = _Collect()
    library_log = logging.getLogger("bridges")
    library_log.addHandler(logged)
    sdk.start()
    try:
        view.start(demo)
        try:
            anyio.run(
                demo.run,
                view,
                backend="trio" if backend == "trio" else "asyncio",
                backend_options=options,
            )
        except Exception as exc:  # reported below, after the checks
            error = exc
        finally:
            view.stop(demo)
    finally:
        sdk_stopped = sdk.close()
        library_log.removeHandler(logged)
    # The cursor's worker closes the cursor and ends as soon as it is out of a
    # call of the source: wait for every thread the demo started, then count.
    leftover = _join_new_threads(baseline, timeout=5.0)
    checks = demo.checks(leftover, sdk_stopped, logged.records)

    if error is not None:
        traceback.print_exception(error)
    for record in logged.records:  # the details, for whoever has to fix it
        print(logging.Formatter().format(record), file=sys.stderr)
    print("released when cancelled:")
    for what, n in demo.releases():
        print(f"  {what}: {n}")
    released = sum(1 for _, n in demo.releases() if n == 1)
    print(f"sources released: {released}/{len(demo.releases())}")
    print("checks:")
    for check in checks:
        print(f"  {check.rule:<3} {'ok' if check.ok else 'BROKEN':<6} {check.text}")
    rules = [c for c in checks if c.rule.startswith("R")]
    print("rules held: " + (" ".join(c.rule for c in rules if c.ok) or "none"))
    if not all(c.ok for c in rules):
        print("rules broken: " + " ".join(c.rule for c in rules if not c.ok))
    others = [c.rule for c in checks if not c.ok and c not in rules]
    if others:
        print("checks failed: " + " ".join(others))
    if error is not None:
        inner: tuple[BaseException, ...] = getattr(error, "exceptions", ())
        while len(inner) == 1:  # the task group's group of one: show the cause
            error = inner[0]
            inner = getattr(error, "exceptions", ())
        print(f"error: the demo itself failed: {type(error).__name__}: {error}")
    ok = all(c.ok for c in checks) and error is None
    print("result: " + ("OK" if ok else "FAILED"), flush=True)
    return 0 if ok else 1
