"""Pipeline helpers from the async-iterator playbook, on asyncio and trio alike.

* [`paginate`][bridges.ops.paginate] - a paginated API as one flat async iterator.
* [`batch`][bridges.ops.batch] - lists of up to ``size`` values, optionally flushed after ``within``
  seconds.
* [`merge`][bridges.ops.merge] - values from many sources as they arrive, one in flight per source.
* [`share`][bridges.ops.share] - multicast one source to many subscribers, each with its own buffer.
* [`rate_limit`][bridges.ops.rate_limit] - a token bucket.
* [`map`][bridges.ops.map] - a function over each value, up to ``concurrency`` calls at once.
* [`chain`][bridges.ops.chain] - the sources one after the other.
* [`zip`][bridges.ops.zip] - tuples of one value per source, until the shortest ends.

The chainable TC39-style methods (``map``, ``filter``, ``take``, ``drop``,
``flat_map``, ``indexed``, ``reduce``, ``to_list``, ``for_each``, ``some``, ``every``,
``find``) live on every iterator
this library returns ([`bridges.BridgeIterator`][bridges.BridgeIterator]); their implementations
are here too.

Every iterator returned is an async context manager with ``aclose()``: it
owns its sources, and closing it (``aclose()``, leaving ``async with``)
closes them before it returns.  The helpers that read a source in a helper
task (``batch(within=...)``, ``merge``, ``paginate(prefetch=True)``,
``map(concurrency=n)`` with ``n`` > 1) and
[`share`][bridges.ops.share] run that task in a task group they own, which lives between
entering and leaving their ``async with`` block: use them as
``async with merge(a, b) as it: async for v in it: ...``.  (A task group
cannot be opened inside one ``__anext__`` call and closed in a later one
without breaking structured concurrency on trio, so they fail with a clear
``RuntimeError`` when iterated without being entered.)
"""

from __future__ import annotations

from ._batch import batch
from ._cmap import map
from ._combine import chain, zip
from ._merge import merge
from ._paginate import paginate
from ._rate_limit import rate_limit
from ._share import Shared, share

__all__ = ["Shared", "batch", "chain", "map", "merge", "paginate", "rate_limit", "share", "zip"]

# the public path, for reprs and the docs
for _obj in (Shared, batch, chain, map, merge, paginate, rate_limit, share, zip):
    _obj.__module__ = __name__
del _obj
