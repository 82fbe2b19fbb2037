"""The broker spokes' ``connect()`` blocks (one base, ``Connect``), on every backend."""

from __future__ import annotations

import threading
from typing import Any

import nats.errors as nats_errors
import pytest
import redis.exceptions as redis_errors

from bridges import nats as bnats
from bridges import redis as bredis
from bridges._broker import free_port

pytestmark = pytest.mark.anyio

#: what each library raises when nothing listens where it connects
REFUSED: dict[str, type[BaseException]] = {
    "nats": nats_errors.NoServersError,
    "redis": redis_errors.ConnectionError,
}
SPOKES = {
    "nats": (bnats, "nats_server", "nats://127.0.0.1:{}"),
    "redis": (bredis, "redis_server", "redis://127.0.0.1:{}"),
}


def helper_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("helper loop")]


@pytest.mark.parametrize("spoke", list(SPOKES))
async def test_a_connect_block_is_entered_once(spoke: str, request: pytest.FixtureRequest) -> None:
    module, fixture, _ = SPOKES[spoke]
    server: Any = request.getfixturevalue(fixture)
    block = module.connect(server.url)
    async with block as client:
        assert await client.call(lambda _: _noop()) is None
        with pytest.raises(RuntimeError, match="entered only once"):
            await block.__aenter__()
    assert helper_threads() == []


@pytest.mark.parametrize("spoke", list(SPOKES))
async def test_a_connect_that_fails_leaves_no_helper_loop(spoke: str) -> None:
    module, _, url = SPOKES[spoke]
    options: dict[str, Any] = (
        # nats-py tries a server again (reconnect_time_wait apart) even on the first connect
        {"connect_timeout": 1, "reconnect_time_wait": 0, "max_reconnect_attempts": 1}
        if spoke == "nats"
        else {}
    )
    nobody = url.format(free_port())  # nothing listens there
    with pytest.raises(REFUSED[spoke]):
        async with module.connect(nobody, **options):
            pytest.fail("connected to a port nothing listens on")
    assert helper_threads() == [], "the helper loop's thread outlived the failed connect"


async def _noop() -> None:
    return None


async def test_a_url_the_client_refuses_leaves_no_helper_loop() -> None:
    # redis-py refuses the URL as it makes the client, before anything opens
    with pytest.raises(ValueError, match="scheme"):
        async with bredis.connect("bogus://127.0.0.1:1"):
            pytest.fail("made a client for a URL it cannot read")
    assert helper_threads() == [], "the helper loop's thread outlived the failed connect"
