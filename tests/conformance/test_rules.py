"""The semantics contract, rule by rule, for every registered adapter on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from bridges import testing

from .registry import HARNESSES, Harness

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


def _overrides(h: object, base: type, method: str) -> bool:
    return getattr(type(h), method) is not getattr(base, method)


#: claimed rule -> the method a push harness must implement for the rule's check
_PUSH_NEEDS = {
    "R8": "emit_from_loop",
    "R16": "open_producer",
    "R17": "open_producer",
    "R18": "open_hooked",
    "R20": "open_producer",
}


def _inconsistencies(h: Harness) -> list[str]:
    """What a harness's claims say that the harness itself contradicts."""
    rules = (
        testing.PUSH_RULES
        if isinstance(h, testing.PushHarness)
        else testing.CALL_RULES
        if isinstance(h, testing.CallHarness)
        else testing.PULL_RULES
    )
    if list(h.claims.rules) != list(rules):
        return [f"its claims are of {list(h.claims.rules)}, not of its kind's rules {rules}"]
    found = [
        f"{rule}: n/a needs its reason"
        for rule, why in h.claims.not_applicable().items()
        if not why.strip()
    ]
    claimed = set(h.claims.applicable())
    if isinstance(h, testing.PushHarness):
        found += [
            f"{rule} is claimed, but {method}() is not implemented"
            for rule, method in _PUSH_NEEDS.items()
            if rule in claimed and not _overrides(h, testing.PushHarness, method)
        ]
        if ("R18" in claimed) != bool(h.hooks):
            found.append(f"R18 {'is' if 'R18' in claimed else 'is not'} claimed, hooks={h.hooks}")
        if "R9" in claimed and not {"drop_oldest", "drop_newest"} & set(h.overflows):
            found.append(f"R9 is claimed, but no drop policy is in overflows={h.overflows}")
    elif isinstance(h, testing.PullHarness):
        # R13 is claimed exactly when the adapter can be subscribed twice
        twice = _overrides(h, testing.PullHarness, "subscribe_twice")
        if ("R13" in claimed) != twice:
            found.append(
                f"R13 {'is' if 'R13' in claimed else 'is not'} claimed, and subscribe_twice() "
                f"{'is' if twice else 'is not'} implemented"
            )
    return found


@pytest.mark.parametrize("h", HARNESSES, ids=lambda h: f"{type(h).__name__}:{h.name}")
def test_every_harness_claims_what_it_implements(h: Harness) -> None:
    assert _inconsistencies(h) == [], h.name


class _PullWithoutResubscribe(testing.PullHarness):
    name = "claims R13, cannot subscribe twice"

    async def drive(self, source: Any, plan: testing.Plan) -> testing.Outcome:
        raise AssertionError("not driven")


class _PushClaimsEverything(testing.PushHarness):
    name = "claims R8, R16-R18, R20 with none of their methods"
    overflows = ("block", "error")

    def open(self, script: Any, probe: Any, *, buffer: Any, overflow: str) -> Any:
        raise AssertionError("not opened")


class _PushWithPullClaims(_PushClaimsEverything):
    name = "a push harness built with claim_pull"
    claims = testing.claim_pull()


class _PullBlankReason(_PullWithoutResubscribe):
    name = "an n/a with a blank reason"
    claims = testing.claim_pull(na={"R13": " "})


@pytest.mark.parametrize(
    ("h", "expected"),
    [
        (_PullWithoutResubscribe(), ["R13 is claimed"]),
        (_PushClaimsEverything(), ["R8 ", "R16 ", "R17 ", "R18 is claimed, but", "R20 ", "R9 "]),
        (_PushWithPullClaims(), ["its claims are of"]),
        (_PullBlankReason(), ["R13: n/a needs its reason"]),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_the_claim_check_reports_an_inconsistent_harness(h: Harness, expected: list[str]) -> None:
    found = _inconsistencies(h)
    for part in expected:
        assert any(line.startswith(part) for line in found), (part, found)


def test_claims_reject_unknown_rules() -> None:
    with pytest.raises(ValueError, match="unknown rules"):
        testing.claim_push(na={"R99": "x"})
    with pytest.raises(ValueError, match="reason"):
        testing.claim_pull(na={"R10": ""})
