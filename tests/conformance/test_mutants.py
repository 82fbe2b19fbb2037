"""Each check can fail: a mutant that breaks one rule fails exactly that rule's check."""

from __future__ import annotations

from typing import Any

import pytest

from bridges import testing

from ..conftest import BACKENDS
from .mutants import CALL_MUTANTS, EXIT_AND_INPUT_MUTANTS, MUTANTS, PULL_MUTANTS

pytestmark = pytest.mark.anyio

_PUSH_MUTANTS = MUTANTS + EXIT_AND_INPUT_MUTANTS
_IDS = [f"{h.name.removeprefix('mutant:')}-{rule}" for h, rule in _PUSH_MUTANTS]


def _backend_name(backend: Any) -> str:
    return "uvloop" if isinstance(backend, tuple) else str(backend)


@pytest.mark.parametrize(("mutant", "broken"), _PUSH_MUTANTS, ids=_IDS)
async def test_the_kit_reports_exactly_the_broken_rule(
    mutant: testing.PushHarness, broken: str
) -> None:
    base = type(mutant).__mro__[1]
    assert issubclass(base, testing.PushHarness)
    assert mutant.claims == base.claims  # it claims what the adapter it breaks claims
    failed: dict[str, AssertionError] = {}
    for rule in mutant.claims.applicable():
        try:
            await testing.check(mutant, rule, backend="asyncio")
        except AssertionError as exc:
            failed[rule] = exc
    assert list(failed) == [broken], {rule: str(exc) for rule, exc in failed.items()}
    assert broken in str(failed[broken]), "the message names the rule"


@pytest.mark.parametrize("anyio_backend", BACKENDS)
@pytest.mark.parametrize(("mutant", "broken"), _PUSH_MUTANTS, ids=_IDS)
async def test_the_broken_rule_fails_on_every_backend(
    mutant: testing.PushHarness, broken: str, anyio_backend: Any
) -> None:
    with pytest.raises(AssertionError, match=broken):
        await testing.check(mutant, broken, backend=_backend_name(anyio_backend))


_CALL_IDS = [f"{h.name.removeprefix('mutant:')}-{rule}" for h, rule in CALL_MUTANTS]


@pytest.mark.parametrize("anyio_backend", BACKENDS)
@pytest.mark.parametrize(("mutant", "broken"), CALL_MUTANTS, ids=_CALL_IDS)
async def test_the_kit_reports_r21_for_a_call_mutant_on_every_backend(
    mutant: testing.CallHarness, broken: str, anyio_backend: Any
) -> None:
    assert mutant.claims == testing.CallHarness.claims
    failed: dict[str, AssertionError] = {}
    for rule in mutant.claims.applicable():
        try:
            await testing.check(mutant, rule, backend=_backend_name(anyio_backend))
        except AssertionError as exc:
            failed[rule] = exc
    assert list(failed) == [broken], {rule: str(exc) for rule, exc in failed.items()}
    assert broken in str(failed[broken]), "the message names the rule"


_PULL_IDS = [f"{h.name.removeprefix('mutant:')}-{rule}" for h, rule in PULL_MUTANTS]


@pytest.mark.parametrize("anyio_backend", BACKENDS)
@pytest.mark.parametrize(("mutant", "broken"), PULL_MUTANTS, ids=_PULL_IDS)
async def test_the_kit_reports_exactly_the_broken_pull_rule_on_every_backend(
    mutant: Any, broken: str, anyio_backend: Any
) -> None:
    assert isinstance(mutant, testing.PullHarness)
    assert mutant.claims.applicable() == list(testing.PULL_RULES)
    failed: dict[str, AssertionError] = {}
    try:
        for rule in mutant.claims.applicable():
            try:
                await testing.check(mutant, rule, backend=_backend_name(anyio_backend))
            except AssertionError as exc:
                failed[rule] = exc
    finally:
        await mutant.settle()
    assert list(failed) == [broken], {rule: str(exc) for rule, exc in failed.items()}
    assert broken in str(failed[broken]), "the message names the rule"
