"""A ``sys.settrace`` function's jump (``frame.f_lineno = n``) in a frame
that monitoring instruments.

The trace function, not a monitoring callback, moves the frame: the jump
is checked and the value stack unwound as the interpreter does for the code
as compiled, whatever monitoring added to it, and the calls after the jump
see their own callables and arguments.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from .helpers import Tool
from .test_jump import program

# A list comprehension between the two lines: 3.10 and 3.11 call a function
# with the iterator the comprehension made, and the jump backward over that
# call must leave the value stack as it was.
OVER_LISTCOMP = """\
def f(output):
    flag = False
    output.append(2)
    if flag:
        return
    x = [i for i in range(5)]
    flag = 6
    output.append(7)
    output.append(8)
"""

OUT_OF_A_LOOP = """\
def f(output):
    for i in range(3):
        output.append(i)
        output.append(len(output))
    output.append('after')
"""


def run_with_trace_jump(M: Any, tool: Tool, source: str, events: int, at: int,
                        to: int) -> tuple:
    """Calls f of *source* with *events* on (CALL recorded as the callable
    and first argument of calls of non-Python callables) and a trace
    function that jumps from relative line *at* to *to* the first time it
    gets there.  Returns f's output and the calls seen."""
    f = program(source)
    code = f.__code__
    first = code.co_firstlineno
    calls: list = []

    def on_call(c: Any, offset: int, callable_: Any, arg0: Any) -> None:
        # 3.12 runs comprehensions inline: calls of Python functions differ.
        if c is code and not hasattr(callable_, "__code__"):
            calls.append((getattr(callable_, "__name__", None),
                          "output" if arg0 is output else arg0))

    pending = [True]

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if (frame.f_code is code and event == "line" and pending
                and frame.f_lineno - first == at):
            pending.clear()
            frame.f_lineno = first + to
        return trace

    tool.register(M.events.CALL, on_call)
    tool.set_local(code, events)
    output: list = []
    old = sys.gettrace()
    sys.settrace(trace)
    try:
        f(output)
    finally:
        sys.settrace(old)
        tool.set_local(code, 0)
    return output, calls


# (The jump leaves x unbound, which 3.12+ warn about.)
@pytest.mark.filterwarnings("ignore:assigning None")
@pytest.mark.parametrize("others", ["CALL", "CALL|LINE|PY_START|PY_RETURN"])
def test_jump_backward_over_a_list_comprehension(M: Any, tool: Tool, others: str) -> None:
    events = 0
    for name in others.split("|"):
        events |= getattr(M.events, name)
        tool.register(getattr(M.events, name), lambda *args: None)
    assert run_with_trace_jump(M, tool, OVER_LISTCOMP, events, at=8, to=2) == (
        [2, 7, 2],
        [("append", "output"), ("range", 5), ("append", "output"), ("append", "output")])


@pytest.mark.filterwarnings("ignore:assigning None")
@pytest.mark.xfail(sys.version_info[:2] == (3, 11), strict=True,
                   reason="3.11 engine: the probes of the line a trace function jumps to run")
def test_the_line_jumped_to_reports_no_line_event(M: Any, tool: Tool) -> None:
    """The lines after it do.  (Not compared: whether the line jumped from
    reports one, which natively comes before the trace function's 'line'
    event, and on 3.10 after it, too late.)"""
    lines: list = []
    tool.register(M.events.LINE, lambda code, line: lines.append(line))
    run_with_trace_jump(M, tool, OVER_LISTCOMP, M.events.LINE | M.events.CALL, at=8, to=2)
    first = lines[0] - 1
    relative = [line - first for line in lines]
    assert relative.count(2) == 1 and relative[-2:] == [3, 4], relative


def test_jump_out_of_a_loop(M: Any, tool: Tool) -> None:
    assert run_with_trace_jump(M, tool, OUT_OF_A_LOOP, M.events.CALL, at=3, to=4) == (
        [0, "after"],
        [("range", 3), ("append", "output"), ("append", "output")])
