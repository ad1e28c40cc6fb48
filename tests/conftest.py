import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=1000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


_cycles: dict[str, int] = {}
_fuzz: dict[str, list[int]] = {}


def pytest_runtest_logreport(report):
    """Collect the co-simulation cycle counts and the fuzzers' input counts the tests record
    (works under xdist too)."""
    if report.when in ("call", "teardown"):
        for name, value in report.user_properties:
            if name == "cycles_compared":
                _cycles[report.nodeid] = int(value)
            elif name in ("fuzz_inputs", "fuzz_refused"):
                _fuzz.setdefault(report.nodeid, [0, 0])[name == "fuzz_refused"] = int(value)


def pytest_terminal_summary(terminalreporter):
    if _fuzz:
        terminalreporter.write_line(
            f"fuzz: {sum(n for n, _ in _fuzz.values()):,} bad or random inputs tried, "
            f"{sum(r for _, r in _fuzz.values()):,} refused with one error line, in "
            f"{len(_fuzz)} tests")
    if _cycles:
        terminalreporter.write_line(
            f"co-simulation: {sum(_cycles.values()):,} cycles compared with the golden model "
            f"in {len(_cycles)} runs")

