"""Test order for two workers: the slowest files first.

``make test`` runs pytest-xdist with one file per work unit (``--dist loadfile``) and
``--no-loadscope-reorder``, so files are handed out in collection order. Collected
alphabetically, the few slow files (training, notebooks, two replicas) came last and
one worker ran them alone at the end; handed out slowest first, the short files fill
the gaps (longest-processing-time-first scheduling).

The order comes from ``tests/durations.json`` (seconds per file, summed over setup, call
and teardown). ``make test-durations`` rewrites it (``--write-durations``); files it does
not list keep their places after the listed ones. The order changes no test's result.
"""
import json
from collections import defaultdict
from pathlib import Path

DURATIONS = Path(__file__).with_name("durations.json")


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_addoption(parser):
    parser.addoption("--write-durations", action="store_true",
                     help=f"write seconds per test file to {DURATIONS.name} after the run")


def slowest_files_first(items: list, seconds: dict) -> None:
    """Sort ``items`` in place by their file's ``seconds``, slowest first; a stable sort,
    so each file's tests stay together and in their own order, and unlisted files keep
    their order after the listed ones."""
    items.sort(key=lambda item: -seconds.get(_file(item.nodeid), 0.0))


def pytest_collection_modifyitems(session, config, items):
    if DURATIONS.exists():
        slowest_files_first(items, json.loads(DURATIONS.read_text())["seconds"])


class DurationRecorder:
    """Sums each test file's report durations; writes them when the session ends."""

    def __init__(self, path: Path):
        self.path = path
        self.seconds = defaultdict(float)

    def pytest_runtest_logreport(self, report):
        self.seconds[_file(report.nodeid)] += report.duration

    def pytest_sessionfinish(self, session, exitstatus):
        ordered = dict(sorted(((f, round(s, 1)) for f, s in self.seconds.items()),
                              key=lambda kv: -kv[1]))
        self.path.write_text(json.dumps(
            {"about": "seconds per test file (setup + call + teardown), written by "
                      "`make test-durations`; tests/conftest.py runs the slowest first",
             "seconds": ordered}, indent=1) + "\n")


def pytest_configure(config):
    # on the controller only: under xdist it receives every worker's reports
    if config.getoption("--write-durations") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(DurationRecorder(DURATIONS), "duration-recorder")
