"""The pytest plugin of the conformance kit, run the way a library author runs it.

Each test writes a test module into a fresh directory and runs pytest on it
(in this process, with ``pytester``), loading the plugin with
``-p bridges._pytest_plugin`` (and ``-p no:bridges``, so that an installed
entry point of the same plugin does not register it twice).
"""

from __future__ import annotations

import gc
import warnings

import pytest

from bridges import testing

from .conformance.harnesses.callbacks import ToAiterThreadHarness
from .conformance.harnesses.threads import FromAiterHarness

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "no:bridges", "-p", "bridges._pytest_plugin", "-p", "no:randomly")


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    result = pytester.runpytest_inprocess(*PLUGIN, *args)
    # an adapter that fails a check may leave its iterator to the collector:
    # that warning belongs to the inner run, not to this test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    return result


def test_real_adapters_every_rule_every_backend(pytester: pytest.Pytester) -> None:
    """callbacks.to_aiter (push) and threads.from_aiter (pull), this project's own adapters."""
    pytester.makepyfile(
        test_adapters="""
        import pytest
        from bridges import testing
        from tests.conformance.harnesses.callbacks import ToAiterThreadHarness
        from tests.conformance.harnesses.threads import FromAiterHarness

        @pytest.mark.bridges_conformance(ToAiterThreadHarness(), FromAiterHarness())
        async def test_rules(bridges_case):
            await testing.check(*bridges_case)
        """
    )
    result = _run(pytester, "-v")
    push, pull = ToAiterThreadHarness(), FromAiterHarness()
    expected = len(testing.cases(push)) + len(testing.cases(pull))
    result.assert_outcomes(passed=expected)
    for case in [*testing.cases(push), *testing.cases(pull)]:
        result.stdout.fnmatch_lines(
            [f"*test_rules?{case.harness.name}-{case.rule}-{case.backend}? PASSED*"]
        )
    # the rules the pull harness declares n/a are listed, with their reasons
    result.stdout.fnmatch_lines(["*= bridges conformance: n/a =*"])
    for rule, why in pull.claims.not_applicable().items():
        result.stdout.fnmatch_lines([f"{pull.name}*{rule}*n/a: {why[:40]}*"])


BROKEN = """
import pytest
from collections.abc import AsyncIterator
import bridges
from bridges import testing


class EagerHarness(testing.PushHarness):
    '''An adapter that starts its source at once: it breaks R1 (lazy start).'''

    name = "eager"
    claims = testing.claim_push(
        na={r: "not under test here" for r in testing.PUSH_RULES if r != "R1"}
    )

    def open(self, script, probe, *, buffer, overflow) -> AsyncIterator[int]:
        send, receive = bridges.open_channel[int](None)
        probe.start()  # eagerly: before anyone asked for a value
        for v in script.values:
            send.send_nowait(v)
        send.close()
        receive._release = probe.release
        return receive


@pytest.mark.bridges_conformance(EagerHarness())
async def test_rules(bridges_case):
    await testing.check(*bridges_case)
"""


def test_a_broken_adapter_fails_with_the_rule(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_broken=BROKEN)
    result = _run(pytester)
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*R1: the source started before the first __anext__*"])
    result.stdout.fnmatch_lines(["*eager*R5*n/a: not under test here*"])


QUICK = """
import pytest
from collections.abc import AsyncIterator
import bridges
from bridges import testing


class QuickHarness(testing.PushHarness):
    '''Only R15 (bad arguments fail fast): quick to run.'''

    name = "quick"
    claims = testing.claim_push(
        na={r: "quick" for r in testing.PUSH_RULES if r != "R15"}
    )
    backends = frozenset({"asyncio", "trio"})

    def open(self, script, probe, *, buffer, overflow) -> AsyncIterator[int]:
        send, receive = bridges.open_channel[int](buffer, overflow)
        send.close()
        return receive
"""

#: QUICK with its rules under test, on every backend the harness names
QUICK_RULES = (
    QUICK
    + """
@pytest.mark.bridges_conformance(QuickHarness())
async def test_rules(bridges_case):
    await testing.check(*bridges_case)
"""
)


def test_a_parametrized_anyio_backend_fixture_gives_way(pytester: pytest.Pytester) -> None:
    """A conftest with its own backend matrix (like this project's) is not crossed with it."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(params=["asyncio", "trio"])
        def anyio_backend(request):
            return request.param
        """
    )
    pytester.makepyfile(
        test_quick=QUICK
        + """
@pytest.mark.bridges_conformance(QuickHarness())
async def test_rules(bridges_case, anyio_backend):
    assert bridges_case.backend == anyio_backend
    await testing.check(*bridges_case)
"""
    )
    result = _run(pytester, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_rules?quick-R15-asyncio? PASSED*"])
    result.stdout.fnmatch_lines(["*test_rules?quick-R15-trio? PASSED*"])
    # the backend it leaves out is said
    result.stdout.fnmatch_lines(["*quick*runs on its backends only; not on uvloop*"])


def test_the_summary_under_xdist(pytester: pytest.Pytester) -> None:
    """The n/a rules reach the summary from the workers."""
    pytest.importorskip("xdist")
    pytester.makepyfile(test_quick=QUICK_RULES)
    result = _run(pytester, "-n", "2")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*= bridges conformance: n/a =*", "quick*R1*n/a: quick*"])


def test_backends_option_skips_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_quick=QUICK_RULES)
    result = _run(pytester, "-rs", "--bridges-backends=trio")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*--bridges-backends leaves out asyncio*"])
    result = _run(pytester, "--bridges-backends=curio")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown backends*curio*choose from asyncio, uvloop, trio*"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "@pytest.mark.bridges_conformance(QuickHarness, QuickHarness())\n"
            "async def test_rules(bridges_case): ...\n",
            "*instantiate it: QuickHarness()*",
        ),
        (
            "@pytest.mark.bridges_conformance(42)\nasync def test_rules(bridges_case): ...\n",
            "*takes a harness*not int*",
        ),
        (
            "@pytest.mark.bridges_conformance()\nasync def test_rules(bridges_case): ...\n",
            "*needs at least one harness*",
        ),
        (
            "@pytest.mark.bridges_conformance(QuickHarness())\nasync def test_rules(): ...\n",
            "*takes the case as its 'bridges_case' argument*",
        ),
    ],
    ids=["a-class", "not-a-harness", "no-harness", "no-bridges_case"],
)
def test_misuse_is_a_collection_error_naming_the_fix(
    pytester: pytest.Pytester, body: str, message: str
) -> None:
    pytester.makepyfile(test_misuse=QUICK + body)
    result = _run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])


def test_bridges_case_without_the_marker_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_nomark="""
        import pytest

        @pytest.mark.anyio
        async def test_rules(bridges_case): ...
        """
    )
    result = _run(pytester)
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) >= 1 and "passed" not in outcomes, outcomes
    result.stdout.fnmatch_lines(["*@pytest.mark.bridges_conformance(MyHarness())*"])


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.bridges_conformance(*harnesses):*"])
