"""Living with other tools: a real coverage measurement (coverage.py, which
traces through the C-level trace function API) gives the same result with
monitoring events on as without."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import coverage

from .helpers import Tool

PROGRAM = '''
def classify(values):
    kinds = {}
    for value in values:
        if isinstance(value, int) and value % 2:
            kind = "odd"
        elif isinstance(value, int):
            kind = "even"
        else:
            try:
                kind = str(int(value))
            except ValueError:
                kind = "other"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds

def never_called():
    return 1

def gen(n):
    for i in range(n):
        yield i * 2

RESULT = (classify([1, 2, "3", "x", 5]), sum(gen(4)))
'''


def measure(tmp_path: Path, name: str) -> tuple:
    path = tmp_path / (name + ".py")
    path.write_text(PROGRAM)
    cov = coverage.Coverage(data_file=None, branch=True, include=[str(path)])
    namespace: dict = {}
    cov.start()
    try:
        exec(compile(path.read_text(), str(path), "exec"), namespace)
    finally:
        cov.stop()
    data = cov.get_data()
    return (namespace["RESULT"], sorted(data.lines(str(path)) or []),
            sorted(data.arcs(str(path)) or []))


def test_coverage_py_measures_the_same(M: Any, tool: Tool, tmp_path: Path) -> None:
    baseline = measure(tmp_path, "plain")
    names = [n for n in vars(M.events) if n.isupper() and n not in ("NO_EVENTS", "INSTRUCTION")]
    for name in names:
        tool.register(getattr(M.events, name), lambda *args: None)
    tool.set_events(sum(getattr(M.events, n) for n in names))
    try:
        monitored = measure(tmp_path, "plain")
    finally:
        tool.set_events(0)
    assert monitored == baseline
    assert baseline[1], "coverage measured nothing"
