import os

import pytest

from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=1000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


_cycles: dict[str, int] = {}
_fuzz: dict[str, list[int]] = {}
_reports: list[str] = []     # tables a test records as "report" (make bench's speed table)


def pytest_runtest_logreport(report):
    """Collect the co-simulation cycle counts and the fuzzers' input counts the tests record
    (works under xdist too)."""
    if report.when in ("call", "teardown"):
        for name, value in report.user_properties:
            if name == "cycles_compared":
                _cycles[report.nodeid] = int(value)
            elif name in ("fuzz_inputs", "fuzz_refused"):
                _fuzz.setdefault(report.nodeid, [0, 0])[name == "fuzz_refused"] = int(value)
            elif name == "report" and report.when == "teardown":   # once per test
                _reports.append(str(value))


def pytest_terminal_summary(terminalreporter):
    for text in _reports:
        for line in text.splitlines():
            terminalreporter.write_line(line)
    if _fuzz:
        terminalreporter.write_line(
            f"fuzz: {sum(n for n, _ in _fuzz.values()):,} bad or random inputs tried, "
            f"{sum(r for _, r in _fuzz.values()):,} refused with one error line, in "
            f"{len(_fuzz)} tests")
    if _cycles:
        terminalreporter.write_line(
            f"co-simulation: {sum(_cycles.values()):,} cycles compared with the golden model "
            f"in {len(_cycles)} runs")



# A test skipped because a tool is missing would hide a broken install: with both simulators
# selected (SIM unset or `all`, as `make test` and `.ci/run` run it) such a skip fails instead.
# Skips that SIM asks for (one simulator only) stay skips, listed with their reason by `-ra`.
MISSING_TOOL_SKIPS = ("not installed",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get("SIM", "all") not in ("", "all"):
        return
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(s in reason for s in MISSING_TOOL_SKIPS):
        report.outcome = "failed"
        report.longrepr = (f"{reason}: with SIM=all every tool the suite needs must be installed "
                           f"(make install does it as root)")
