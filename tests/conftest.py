import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=1000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


_cycles: dict[str, int] = {}
_reports: list[str] = []     # tables a test records as "report" (make bench's speed table)


def pytest_runtest_logreport(report):
    """Collect the co-simulation cycle counts the tests record (works under xdist too)."""
    if report.when == "call":
        for name, value in report.user_properties:
            if name == "cycles_compared":
                _cycles[report.nodeid] = int(value)
            elif name == "report":
                _reports.append(str(value))


def pytest_terminal_summary(terminalreporter):
    for text in _reports:
        for line in text.splitlines():
            terminalreporter.write_line(line)
    if _cycles:
        terminalreporter.write_line(
            f"co-simulation: {sum(_cycles.values()):,} cycles compared with the golden model "
            f"in {len(_cycles)} runs")

