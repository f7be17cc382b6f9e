"""A ``sys.settrace`` function sees the same events in a frame whatever
monitoring events are on in it.

The oracle is the same interpreter with no monitoring events: what the
trace function records then must not change when a tool's LINE, RAISE or
INSTRUCTION probes are in the code, whether their callbacks return None or
DISABLE.  The programs raise from the first instruction of a line (a bare
``raise``) into handlers that start a line and into handlers that do not
(the cleanup of ``except E as name``), where 3.9's loop decides whether the
handler gets a 'line' event from where the raising instruction stands in
its line.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable

import pytest

from .helpers import Tool

EXCEPT_AS_BARE_RAISE = """\
def f():
    try:
        try:
            raise Exception
        except Exception as e:
            raise
            x = "Something"
            y = "Something"
    except Exception:
        pass
"""

EXCEPT_BARE_RAISE = """\
def f():
    try:
        try:
            raise KeyError
        except KeyError:
            raise
    except Exception:
        pass
"""

FINALLY_BARE_RAISE = """\
def f():
    try:
        try:
            raise KeyError
        except KeyError:
            raise
        finally:
            z = 1
    except Exception:
        pass
"""

WITH_BARE_RAISE = """\
import contextlib
def f():
    try:
        with contextlib.nullcontext():
            try:
                raise KeyError
            except KeyError as e:
                raise
    except Exception:
        pass
"""

PROGRAMS = {"except-as": EXCEPT_AS_BARE_RAISE, "except": EXCEPT_BARE_RAISE,
            "finally": FINALLY_BARE_RAISE, "with": WITH_BARE_RAISE}


def traced(source: str, monitor: Callable[[Any], None]) -> list:
    namespace: dict = {}
    exec(compile(source, "<traced>", "exec"), namespace)
    f = namespace["f"]
    code = f.__code__
    first = code.co_firstlineno
    seen: list = []

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is code:
            seen.append((frame.f_lineno - first, event))
        return trace

    monitor(code)
    sys.settrace(trace)
    try:
        f()
    finally:
        sys.settrace(None)
    return seen


@pytest.mark.parametrize("program", sorted(PROGRAMS))
@pytest.mark.parametrize("events", ["LINE", "RAISE", "LINE INSTRUCTION RAISE"])
@pytest.mark.parametrize("answer", ["none", "DISABLE"])
def test_trace_function_sees_what_it_sees_unmonitored(M: Any, tool: Tool, program: str,
                                                       events: str, answer: str) -> None:
    source = PROGRAMS[program]
    expected = traced(source, lambda code: None)
    wanted = 0
    for name in events.split():
        event = getattr(M.events, name)
        wanted |= event
        # RAISE is no local event: DISABLE is not an answer it takes.
        result = M.DISABLE if answer == "DISABLE" and name != "RAISE" else None
        tool.register(event, lambda *args, result=result: result)
    assert traced(source, lambda code: tool.set_events(wanted)) == expected
