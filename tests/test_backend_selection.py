"""Each parametrization of a hypothesis test runs on its own backend.

tests/stress/test_fuzz.py runs one ``@given`` test per (adapter, backend)
through anyio's pytest plugin.  anyio's plugin before 4.16 wrapped a
``@given`` test's inner function once per process, with the backend of the
first parametrization it met: every later parametrization of that test in
the same process ran on that first backend.  Serially the fuzz matrix then
ran on asyncio only (the trio-only harnesses failed: "must be called from
async context" from trio's API, an ``anyio.EndOfStream`` where a trio run
raises ``trio.EndOfChannel``); under xdist each worker's first case decided,
so the trio cases failed now and then.  This runs the shape of those tests
in a pytest run of its own, so the order is fixed whatever the outer run
does.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_each_parametrization_of_a_given_test_runs_on_its_own_backend(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_inner="""
        import pytest
        import sniffio
        from hypothesis import HealthCheck, given, settings, strategies as st

        pytestmark = pytest.mark.anyio

        @pytest.fixture(params=["asyncio", "trio", "asyncio"])
        def anyio_backend(request):
            return request.param

        @settings(
            max_examples=2,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(x=st.integers())
        async def test_backend(anyio_backend, x):
            assert sniffio.current_async_library() == anyio_backend
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=3)
