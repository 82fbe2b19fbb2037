"""Checked by mypy only (nox -s typecheck): inference through the pipeline helpers."""

from __future__ import annotations

from typing_extensions import assert_type

import bridges
from bridges import ops


async def _length(s: str) -> int:
    return len(s)


async def ops_types(
    words: bridges.BridgeIterator[str], numbers: bridges.BridgeIterator[int]
) -> None:
    assert_type(words.map(_length, concurrency=4), bridges.BridgeIterator[int])
    assert_type(words.map(len, concurrency=4, ordered=False), bridges.BridgeIterator[int])
    assert_type(ops.map(words, _length, concurrency=8), bridges.BridgeIterator[int])
    assert_type(ops.chain(words, words), bridges.BridgeIterator[str])
    assert_type(ops.zip(words, numbers), bridges.BridgeIterator[tuple[str, int]])
    assert_type(words.indexed(), bridges.BridgeIterator[tuple[int, str]])
    assert_type(await words.some(str.isupper), bool)
    assert_type(await words.every(str.isupper), bool)
    assert_type(await words.find(str.isupper), str | None)
