"""tests/conftest.py hands the test files out slowest first (see its docstring)."""
import json
from pathlib import Path
from types import SimpleNamespace

from conftest import DURATIONS, slowest_files_first

ROOT = Path(__file__).resolve().parents[1]


def test_files_go_slowest_first_and_keep_their_tests_together_in_order():
    ids = ["tests/a.py::t1", "tests/a.py::t2", "tests/b.py::t1", "tests/b.py::t2[x]",
           "tests/b.py::t2[y]", "tests/c.py::t1", "tests/d.py::K::t1"]
    items = [SimpleNamespace(nodeid=i) for i in ids]
    slowest_files_first(items, {"tests/a.py": 3.0, "tests/b.py": 40.5, "tests/d.py": 7.0})
    assert [i.nodeid for i in items] == [
        "tests/b.py::t1", "tests/b.py::t2[x]", "tests/b.py::t2[y]", "tests/d.py::K::t1",
        "tests/a.py::t1", "tests/a.py::t2", "tests/c.py::t1"]


def test_the_recorded_durations_name_existing_test_files_only():
    seconds = json.loads(DURATIONS.read_text())["seconds"]
    assert len(seconds) >= 20
    missing = [f for f in seconds if not (ROOT / f).is_file()]
    assert not missing, f"{DURATIONS.name} lists files that do not exist: {missing}"
    assert list(seconds.values()) == sorted(seconds.values(), reverse=True)
