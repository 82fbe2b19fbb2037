"""The semantics contract, rule by rule, for every registered adapter on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from bridges import testing

from .registry import HARNESSES

pytestmark = pytest.mark.anyio


def _backend_name(backend: Any) -> str:
    return "uvloop" if isinstance(backend, tuple) else str(backend)


async def test_push(case: tuple[testing.PushHarness, str, Any]) -> None:
    harness, rule, backend = case
    await testing.check(harness, rule, backend=_backend_name(backend))


async def test_pull(case: tuple[testing.PullHarness, str, Any]) -> None:
    harness, rule, backend = case
    await testing.check(harness, rule, backend=_backend_name(backend))


async def test_call(case: tuple[testing.CallHarness, str, Any]) -> None:
    harness, rule, backend = case
    await testing.check(harness, rule, backend=_backend_name(backend))


def test_every_harness_accounts_for_every_rule() -> None:
    for h in HARNESSES:
        rules = (
            testing.PUSH_RULES
            if isinstance(h, testing.PushHarness)
            else testing.CALL_RULES
            if isinstance(h, testing.CallHarness)
            else testing.PULL_RULES
        )
        assert list(h.claims.rules) == list(rules), h.name
        for rule, why in h.claims.not_applicable().items():
            assert why.strip(), f"{h.name} {rule}: n/a needs its reason"


def test_claims_reject_unknown_rules() -> None:
    with pytest.raises(ValueError, match="unknown rules"):
        testing.claim_push(na={"R99": "x"})
    with pytest.raises(ValueError, match="reason"):
        testing.claim_pull(na={"R10": ""})
