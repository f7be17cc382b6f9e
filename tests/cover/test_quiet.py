"""Quieting (src/cover/quiet.h): once a line is recorded, the collector
takes its LINE off every unit of that line, where native 3.12/3.13 DISABLE
only the unit that reported and keep checking the line's jump targets (a
comprehension's loop, `yield from`, `a if c else b`) on every pass.  The
oracle for what is recorded and for what other tools see is the monitoring
API itself, with the collector absent."""

from __future__ import annotations

import contextlib
import dis
import sys

import pytest

_cover = pytest.importorskip("lowimpact._cover")
from lowimpact import monitoring  # noqa: E402

TOOL = 3     # the collector's (not coverage's id: the test process may be measured)
OTHER = 4    # another tool watching the same code
LINE = monitoring.events.LINE
NATIVE_LINE_CHECKS = sys.version_info >= (3, 12)


def comprehension(items):
    if not isinstance(items, list):
        raise TypeError("never runs")
    return sum([x * x for x in items if x % 3])


def conditional(items):
    total = 0
    for x in items:
        total += x if x % 2 else -x
        total += (x and 1) or 2
    return total


def delegating(depth):
    if depth < 0:
        raise ValueError("never runs")
    if depth == 0:
        yield from range(5)
    else:
        yield from delegating(depth - 1)


def one_line_loop(n):
    while n: n -= 1  # noqa: E701
    return n


FUNCTIONS = (comprehension, conditional, delegating, one_line_loop)
NEVER_RUN = {comprehension: 2, delegating: 2}   # line of each, from its def


def run_all() -> None:
    assert comprehension(list(range(30))) == sum(x * x for x in range(30) if x % 3)
    assert conditional(range(10)) == 5 + 11
    assert sum(delegating(4)) == 10
    assert one_line_loop(20) == 0


def measured(file: str):
    return lambda name, frame: name if name == file else None


def armed_units(code) -> list:
    """(offset, line) of the instructions that hold native LINE
    instrumentation now."""
    raw = code._co_code_adaptive
    return [(ins.offset, ins.positions.lineno) for ins in dis.get_instructions(code)
            if raw[ins.offset] == dis.opmap["INSTRUMENTED_LINE"]]


def lines_by_function(collector) -> dict:
    codes, lines, _, _ = collector.data()
    by_code = {code: sorted(lines.get(key, ())) for key, (code, _) in codes.items()}
    return {f: by_code.get(f.__code__, []) for f in FUNCTIONS}


@contextlib.contextmanager
def other_tool(event: int, callback):
    """OTHER watching `event` on FUNCTIONS' code with `callback`."""
    monitoring.use_tool_id(OTHER, "other")
    try:
        monitoring.register_callback(OTHER, event, callback)
        for f in FUNCTIONS:
            monitoring.set_local_events(OTHER, f.__code__, event)
        yield
    finally:
        for f in FUNCTIONS:
            monitoring.set_local_events(OTHER, f.__code__, 0)
        monitoring.register_callback(OTHER, event, None)
        monitoring.free_tool_id(OTHER)


def lines_seen_by_monitoring() -> dict:
    """The lines LINE reports for each function over run_all(), with only
    the monitoring API watching (the oracle)."""
    seen = {f.__code__: set() for f in FUNCTIONS}
    with other_tool(LINE, lambda code, line: seen[code].add(line)):
        run_all()
    return {f: sorted(seen[f.__code__]) for f in FUNCTIONS}


@pytest.fixture(autouse=True)
def fresh_events():
    """What another test (or collector) DISABLEd does not hide lines here."""
    monitoring.restart_events()
    yield
    monitoring.restart_events()


def test_records_the_lines_line_reports() -> None:
    expected = lines_seen_by_monitoring()
    collector = _cover.Collector(TOOL, measured(__file__))
    collector.start()
    try:
        run_all()
        run_all()
    finally:
        collector.stop()
    assert lines_by_function(collector) == expected
    first = comprehension.__code__.co_firstlineno
    assert expected[comprehension] == [first + 1, first + 3]


@pytest.mark.skipif(not NATIVE_LINE_CHECKS,
                    reason="the engine's LINE probes are disarmed whole; native LINE is 3.12+")
def test_lines_that_ran_keep_no_line_check() -> None:
    """After a run, LINE instrumentation is left only at lines that never
    ran; native DISABLE alone leaves every jump target inside a line."""
    collector = _cover.Collector(TOOL, measured(__file__))
    collector.start()
    try:
        run_all()
        left = {f: sorted({line for _, line in armed_units(f.__code__)}) for f in FUNCTIONS}
    finally:
        collector.stop()
    expected = {f: [f.__code__.co_firstlineno + NEVER_RUN[f]] if f in NEVER_RUN else []
                for f in FUNCTIONS}
    assert left == expected


@pytest.mark.skipif(not NATIVE_LINE_CHECKS,
                    reason="the engine's LINE probes are disarmed whole; native LINE is 3.12+")
def test_restart_events_arms_quieted_units_again() -> None:
    """restart_events() gives back every unit a quieted line had, as it
    gives back DISABLEd ones, and the lines are recorded again."""
    fresh = {}
    monitoring.use_tool_id(OTHER, "oracle")
    try:
        for f in FUNCTIONS:
            copy = f.__code__.replace()
            monitoring.set_local_events(OTHER, copy, LINE)
            fresh[f] = armed_units(copy)
            monitoring.set_local_events(OTHER, copy, 0)
    finally:
        monitoring.free_tool_id(OTHER)
    expected = lines_seen_by_monitoring()
    collector = _cover.Collector(TOOL, measured(__file__))
    collector.start()
    try:
        run_all()
        monitoring.restart_events()
        # (A code object takes the restart when its instrumentation is next
        # updated: when it next runs, or here when another tool's events
        # on it change.)
        with other_tool(monitoring.events.PY_RETURN, None):
            pass
        rearmed = {f: armed_units(f.__code__) for f in FUNCTIONS}
        collector.reset()
        run_all()
    finally:
        collector.stop()
    assert rearmed == fresh
    assert any(len({line for _, line in units}) < len(units) for units in fresh.values())
    assert lines_by_function(collector) == expected


@pytest.mark.parametrize("disable", [False, True])
def test_another_tool_sees_what_it_sees_alone(disable: bool) -> None:
    """Another tool's LINE on the same code (one that DISABLEs, as
    coverage.py's sysmon core, or one that does not) gets the same events
    with the collector running as without it, in the first run and after."""
    def watch() -> list:
        events = []

        def on_line(code, line):
            events.append((code.co_name, line))
            return monitoring.DISABLE if disable else None

        with other_tool(LINE, on_line):
            run_all()
            run_all()
        return events

    alone = watch()
    monitoring.restart_events()
    collector = _cover.Collector(TOOL, measured(__file__))
    collector.start()
    try:
        beside = watch()
    finally:
        collector.stop()
    assert beside == alone
    assert len(alone) >= (14 if disable else 2 * 14)   # every line ran, in both runs
    assert lines_by_function(collector) == lines_seen_by_monitoring()


def test_each_period_records_its_lines() -> None:
    """A context switch re-arms the code that recorded: the next period
    records the lines again, quieted units included."""
    collector = _cover.Collector(TOOL, measured(__file__))
    collector.start()
    try:
        run_all()
        collector.switch_context("second")
        run_all()
    finally:
        collector.stop()
    (label, period_lines, _, _), = collector.periods()
    codes = collector.data()[0]
    first = {codes[key][0]: sorted(found) for key, found in period_lines.items()}
    assert label is None
    expected = lines_seen_by_monitoring()
    assert {f: first.get(f.__code__, []) for f in FUNCTIONS} == expected
    assert lines_by_function(collector) == expected


def test_instruction_events_of_another_tool() -> None:
    """Where another tool has INSTRUCTION events on the code, quieting
    leaves its LINE alone (their instrumentation wraps each other): the
    lines are recorded the same, and that tool's events are as without the
    collector once it stopped.  (While it runs, CPython 3.12.1 and 3.13.0
    skip the INSTRUCTION event of each unit where the collector's LINE
    returns DISABLE.)"""
    counts = []
    collector = _cover.Collector(TOOL, measured(__file__))
    with other_tool(monitoring.events.INSTRUCTION, lambda code, offset: counts.append(offset)):
        run_all()
        alone = len(counts)
        collector.start()
        run_all()
        collector.stop()
        del counts[:]
        run_all()
    assert len(counts) == alone > 0
    assert lines_by_function(collector) == lines_seen_by_monitoring()
