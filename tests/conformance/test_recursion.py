"""The recursion limit with callbacks on every call, and after it was hit.

A Python callback runs one frame deeper than the function it reports, so
with PY_START on, a runaway recursion stops one level earlier than without
monitoring.  Natively that is all: the depth reached and the traceback are
the same for the first RecursionError and for every later one.  With
PY_START alone the error comes from the PY_START callback of the frame that
no longer fits (its entry ends the traceback); with RAISE (or PY_UNWIND)
also on, that frame does not appear and the traceback ends at the
recursive call, one entry shorter than without monitoring.
"""

from __future__ import annotations

import traceback
from typing import Any

import pytest

from .helpers import Tool


def recurse() -> tuple:
    """(levels entered, traceback entries, line of the last entry relative to down())."""
    level = 0

    def down() -> None:
        nonlocal level
        level += 1
        down()

    try:
        down()
    except RecursionError as error:
        entries = traceback.extract_tb(error.__traceback__)
        return level, len(entries), entries[-1].lineno - down.__code__.co_firstlineno
    raise AssertionError("no RecursionError")


# The recursive call is on line 3 of down(), its def on line 0.
CALL_LINE, DEF_LINE = 3, 0


@pytest.mark.parametrize("others", [(), ("RAISE",), ("PY_UNWIND",), ("RAISE", "PY_UNWIND")],
                         ids=lambda names: "+".join(("PY_START",) + names))
def test_recursion_limit_is_the_same_every_time(M: Any, tool: Tool, others: tuple) -> None:
    E = M.events
    plain = recurse()
    events = E.PY_START
    tool.register(E.PY_START, lambda code, offset: None)
    for name in others:
        events |= getattr(E, name)
        tool.register(getattr(E, name), lambda code, offset, exc: None)
    tool.set_events(events)
    try:
        # No comprehension: on 3.11 it would be one more frame.
        monitored = [recurse(), recurse(), recurse()]
    finally:
        tool.set_events(0)
    assert recurse() == plain
    level, entries, last_line = plain
    assert last_line == CALL_LINE
    if others:
        expected = (level - 1, entries - 1, CALL_LINE)
    else:
        expected = (level - 1, entries, DEF_LINE)
    assert monitored == [expected] * 3
