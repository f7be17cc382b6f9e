"""The C core (lowimpact._cover.Collector) on its own: what a second
collector sees after a first one DISABLEd everything, a running collector
dropped in a reference cycle, and test contexts when giving events fails."""

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


# -- test contexts in the core ----------------------------------------------


def helper(x):
    if x:
        return 1
    return 2


def test_core_one(x=1):
    helper(x)


test_core_one.__test__ = False   # a test to the collector, not to pytest


def only_here(name, frame):
    return name if name == __file__ else None


def context_collector(**kwargs) -> "_cover.Collector":
    return _cover.Collector(TOOL, only_here, test_context=lambda frame: frame.f_code.co_name,
                            **kwargs)


def test_context_events_given_again_after_a_failure(monkeypatch) -> None:
    # The first time test_core_one is given the events that end its context
    # (at its first start, after LINE), lowimpact.monitoring.set_local_events
    # fails.  The collector must not take them as given: at the next start it
    # tries again, and the context ends when the test returns.  (Lines only:
    # with --branch, PY_RETURN is a measured event and ends it anyway.)
    real = monitoring.set_local_events
    failed = []

    def failing_once(tool, code, events):
        if (code is test_core_one.__code__ and not failed
                and events & monitoring.events.PY_RETURN
                and events & monitoring.events.PY_RESUME):
            failed.append(events)
            raise MemoryError("set_local_events failed (test)")
        return real(tool, code, events)

    collector = context_collector()
    monkeypatch.setattr(monitoring, "set_local_events", failing_once)
    collector.start()
    try:
        with pytest.raises(MemoryError):
            test_core_one()
        test_core_one(0)
        after = collector.context
        helper(1)
    finally:
        collector.stop()
        monkeypatch.undo()
    assert failed
    assert after is None
    codes, lines, _, _ = collector.data()
    (key,) = [k for k, (code, _) in codes.items() if code is helper.__code__]
    first = helper.__code__.co_firstlineno
    # helper(0) in test_core_one's context, helper(1) in none.
    assert [(label, sorted(period.get(key, ()))) for label, period, _, _ in collector.periods()
            if key in period] == [("test_core_one", [first + 1, first + 3])]
    assert sorted(lines[key]) == [first + 1, first + 2]


def test_switch_context_returns_the_previous_context() -> None:
    collector = _cover.Collector(TOOL, only_here)
    collector.start()
    try:
        assert collector.switch_context("a") is None
        assert collector.switch_context("b") == "a"
        collector.pause()
        assert collector.switch_context("c") == "b"   # (from resume() on)
        collector.resume()
        assert collector.switch_context(None) == "c"
        assert collector.switch_context(None) is None
    finally:
        collector.stop()


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
def test_restarted_collector_ends_test_contexts(branch: bool) -> None:
    # Between a collector's stop() and its start() again, another collector
    # on the same tool id (or anyone) set other local events on the test's
    # code object: the restarted collector gives its own again.
    first = context_collector(branch=branch)
    first.start()
    try:
        test_core_one(1)
        assert first.context is None
    finally:
        first.stop()
    other = _cover.Collector(TOOL, only_here)
    other.start()
    try:
        test_core_one(1)
    finally:
        other.stop()
    first.start()
    try:
        test_core_one(0)
        after = first.context
        helper(1)
    finally:
        first.stop()
    assert after is None
    codes, lines, _, _ = first.data()
    (key,) = [k for k, (code, _) in codes.items() if code is helper.__code__]
    line = helper.__code__.co_firstlineno
    assert [(label, sorted(period.get(key, ()))) for label, period, _, _ in first.periods()
            if key in period] == [("test_core_one", [line + 1, line + 2]),
                                  ("test_core_one", [line + 1, line + 3])]
    assert sorted(lines[key]) == [line + 1, line + 2]


def test_a_failed_rearm_leaves_the_others_rearmed(monkeypatch) -> None:
    # A switch re-arms each code object that recorded something; when that
    # fails for one (here branchy, recorded first), the others still are.
    real = monitoring.set_local_events
    failed = []

    def failing_once(tool, code, events):
        if code is branchy.__code__ and events and not failed:
            failed.append(events)
            raise MemoryError("set_local_events failed (test)")
        return real(tool, code, events)

    collector = _cover.Collector(TOOL, only_here)
    collector.start()
    try:
        branchy(1)
        helper(1)
        monkeypatch.setattr(monitoring, "set_local_events", failing_once)
        with pytest.raises(MemoryError):
            collector.switch_context("after")
        monkeypatch.undo()
        helper(1)
        helper(0)
    finally:
        collector.stop()
        monkeypatch.undo()
    assert failed
    codes, lines, _, _ = collector.data()
    (key,) = [k for k, (code, _) in codes.items() if code is helper.__code__]
    line = helper.__code__.co_firstlineno
    assert collector.context == "after"
    assert sorted(lines[key]) == [line + 1, line + 2, line + 3]
