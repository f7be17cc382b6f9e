"""The C core (lowimpact._cover.Collector) on its own: what a second
collector sees after a first one DISABLEd everything, and a running
collector dropped in a reference cycle."""

from __future__ import annotations

import gc

import pytest

_cover = pytest.importorskip("lowimpact._cover")
from lowimpact import monitoring  # noqa: E402

TOOL = 3   # not coverage's id: the test process may be measured


def branchy(x):
    if x:
        return 1
    return 2


def measure_branchy() -> list:
    collector = _cover.Collector(TOOL, lambda name, frame: name if name == __file__ else None,
                                 branch=True)
    collector.start()
    try:
        branchy(1)
        branchy(0)
    finally:
        collector.stop()
    codes, lines, branches, _ = collector.data()
    (key,) = [k for k, (code, _) in codes.items() if code is branchy.__code__]
    return sorted(lines[key]), sum(len(d) for d in branches[key].values())


def test_second_collector_sees_what_the_first_disabled() -> None:
    first = measure_branchy()
    # Every line, PY_START and both branch directions were DISABLEd by the
    # first collector; the second sees them all the same.
    assert measure_branchy() == first
    first_line = branchy.__code__.co_firstlineno
    assert first == ([first_line + 1, first_line + 2, first_line + 3], 2)


def test_running_collector_dropped_in_a_cycle() -> None:
    holder = []
    collector = _cover.Collector(TOOL, lambda name, frame, holder=holder: name)
    holder.append(collector)
    collector.start()
    branchy(1)
    del collector, holder
    gc.collect()
    # The collector was freed with its tool id, callbacks unregistered:
    # code runs on, and the id can be taken again.
    assert monitoring.get_tool(TOOL) is None
    branchy(0)
    measure_branchy()
