"""The conformance kit as a pytest plugin: your adapter against the rules, on every backend.

Installed with bridges (the ``pytest11`` entry point ``bridges``); without
it, load it with ``-p bridges._pytest_plugin`` or
``pytest_plugins = ["bridges._pytest_plugin"]`` in a top-level conftest:

    import pytest
    from bridges import testing

    @pytest.mark.bridges_conformance(MyHarness())
    async def test_my_adapter(bridges_case):
        await testing.check(*bridges_case)

The marker takes one or more harnesses (instances of
[`bridges.testing.PushHarness`][bridges.testing.PushHarness] /
[`PullHarness`][bridges.testing.PullHarness]). The test runs once per rule each harness claims and
backend it runs on (``harness.backends``: asyncio, uvloop, trio), by anyio's pytest plugin in
an event loop of that backend; ``bridges_case`` is the
[`bridges.testing.Case`][bridges.testing.Case] ``(harness, rule, backend)``.  A backend whose
library is not installed, or left out with ``--bridges-backends``, is
skipped with that reason.  The rules a harness declares n/a, with their
reasons, and the backends it does not run on are listed at the end of the
run, in the "bridges conformance: n/a" section.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from . import testing

__all__: list[str] = []

#: what anyio's pytest plugin takes as ``anyio_backend`` for each backend
_ANYIO_BACKEND: dict[str, Any] = {
    "asyncio": "asyncio",
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": "trio",
}
_MARKER = "bridges_conformance"


#: the attribute of a test report that carries its harness's n/a rules to the
#: process that prints the summary (the controller, under pytest-xdist)
_ATTR = "bridges_conformance"


class _Summary:
    """Collects, from the test reports, what the summary lists; prints it at the end.

    Registered per run (per ``pytest.Config``).  Under pytest-xdist the
    reports come from the workers, with the harness's n/a rules attached.
    """

    def __init__(self) -> None:
        #: harness name -> (n/a rule -> reason, backends it does not run on)
        self.harnesses: dict[str, tuple[dict[str, str], list[str]]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        info = getattr(report, _ATTR, None)
        if info is not None:
            name, na, missing = info
            self.harnesses.setdefault(str(name), (dict(na), list(missing)))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        rows = [
            (name, rule, why)
            for name, (na, _) in self.harnesses.items()
            for rule, why in na.items()
        ]
        left_out = [(name, missing) for name, (_, missing) in self.harnesses.items() if missing]
        if not rows and not left_out:
            return
        terminalreporter.section("bridges conformance: n/a")
        width = max(len(name) for name in self.harnesses)
        for name, rule, why in rows:
            terminalreporter.write_line(f"{name:{width}}  {rule:4} n/a: {why}")
        for name, missing in left_out:
            terminalreporter.write_line(
                f"{name:{width}}  runs on its backends only; not on {', '.join(missing)}"
            )


def _info(harness: testing.PushHarness | testing.PullHarness | testing.CallHarness) -> list[object]:
    """What a report carries about a harness: plain data, as pytest-xdist sends it."""
    missing = [b for b in testing.BACKENDS if b not in harness.backends]
    return [harness.name, harness.claims.not_applicable(), missing]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bridges", "bridges conformance kit")
    group.addoption(
        "--bridges-backends",
        default=None,
        metavar="NAMES",
        help="run bridges_conformance cases on these backends only, comma-separated "
        "(asyncio, uvloop, trio); the others are skipped",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(*harnesses): run the test once per (rule claimed x backend) of each "
        "bridges.testing harness; the test takes the case as its 'bridges_case' argument "
        "(await bridges.testing.check(*bridges_case))",
    )
    config.pluginmanager.register(_Summary(), f"bridges-conformance-summary-{id(config)}")
    _selected(config)  # a bad --bridges-backends is a usage error, before collection


@pytest.fixture
def bridges_case(anyio_backend: Any) -> testing.Case:
    """The conformance case of this test: ``(harness, rule, backend)``.

    Given by ``@pytest.mark.bridges_conformance(harness, ...)``, which
    parametrizes the test over the harnesses' rules and backends.
    """
    # only reached without the marker: with it, the parametrization gives the value
    pytest.fail(
        "bridges_case is given by the marker: decorate the test with "
        "@pytest.mark.bridges_conformance(MyHarness())",
        pytrace=False,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> None:
    # as anyio's plugin does for its own marker: the test requests anyio_backend,
    # so that anyio's plugin runs it in the backend the case names (a fixture
    # that a parametrized bridges_case would request does not count)
    if not collector.istestfunction(obj, name):
        return
    own = getattr(obj, "pytestmark", ())
    if collector.get_closest_marker(_MARKER) is not None or any(m.name == _MARKER for m in own):
        pytest.mark.usefixtures("anyio_backend")(obj)


def _selected(config: pytest.Config) -> set[str] | None:
    option = config.getoption("bridges_backends", None)
    if not option:
        return None
    names = {name.strip() for name in str(option).split(",") if name.strip()}
    unknown = names - set(testing.BACKENDS)
    if unknown:
        raise pytest.UsageError(
            f"--bridges-backends: unknown backends {sorted(unknown)}; "
            f"choose from {', '.join(testing.BACKENDS)}"
        )
    return names


def _installed(backend: str) -> bool:
    library = "trio" if backend == "trio" else "uvloop" if backend == "uvloop" else "asyncio"
    return importlib.util.find_spec(library) is not None


def _harnesses(
    marker: pytest.Mark, where: str
) -> list[testing.PushHarness | testing.PullHarness | testing.CallHarness]:
    found: list[testing.PushHarness | testing.PullHarness | testing.CallHarness] = []
    for arg in marker.args:
        for harness in arg if isinstance(arg, (list, tuple)) else (arg,):
            try:
                testing.cases(harness)  # checks that it is a harness, and its claims
            except TypeError as exc:
                raise pytest.Collector.CollectError(
                    f"{where}: @pytest.mark.{_MARKER}(...) {exc}"
                ) from None
            found.append(harness)
    if not found:
        raise pytest.Collector.CollectError(
            f"{where}: @pytest.mark.{_MARKER}() needs at least one harness: "
            f"@pytest.mark.{_MARKER}(MyHarness())"
        )
    return found


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker(_MARKER)
    if marker is None:
        return
    where = metafunc.definition.nodeid
    if "bridges_case" not in metafunc.fixturenames:
        raise pytest.Collector.CollectError(
            f"{where}: a test marked {_MARKER} takes the case as its 'bridges_case' "
            "argument: async def test_rules(bridges_case): await testing.check(*bridges_case)"
        )
    selected = _selected(metafunc.config)
    params = []
    for harness in _harnesses(marker, where):
        for case in testing.cases(harness):
            marks: list[pytest.MarkDecorator] = []
            if selected is not None and case.backend not in selected:
                marks.append(
                    pytest.mark.skip(reason=f"--bridges-backends leaves out {case.backend}")
                )
            elif not _installed(case.backend):
                marks.append(pytest.mark.skip(reason=f"{case.backend} is not installed"))
            params.append(
                pytest.param(
                    case,
                    _ANYIO_BACKEND[case.backend],
                    id=f"{harness.name}-{case.rule}-{case.backend}",
                    marks=marks,
                )
            )
    # A parametrize mark rather than metafunc.parametrize(): pytest's own hooks
    # apply it, and a parametrized anyio_backend fixture (in a conftest) then
    # gives way to it instead of being crossed with it.
    metafunc.definition.add_marker(
        pytest.mark.parametrize(("bridges_case", "anyio_backend"), params)
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("bridges_case") if callspec is not None else None
    if report.when == "setup" and isinstance(case, testing.Case):
        setattr(report, _ATTR, _info(case.harness))
