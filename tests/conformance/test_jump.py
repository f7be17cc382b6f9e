"""Setting ``frame.f_lineno`` from a callback: a debugger's ``jump``.

Natively (3.12, 3.13) a callback of LINE, JUMP, BRANCH, PY_RESUME or
PY_YIELD may move the frame of its event to another line, with the checks
and the unwinding a trace function's jump has; the line jumped to reports no
LINE event, later lines do; locals left unbound get None, with a warning.
Other events refuse with 3.12's messages.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Callable, Optional

import pytest

from .helpers import Tool


def program(source: str) -> Callable[..., Any]:
    namespace: dict = {}
    exec(compile(source, "<jump>", "exec"), namespace)
    return namespace["f"]


STRAIGHT = """\
def f():
    a = 1
    b = 2
    c = 3
    return a, b, c
"""

LOOP = """\
def f():
    total = 0
    for i in range(3):
        total += i
        total += 10
    return total
"""

HANDLER = """\
def f():
    seen = []
    try:
        raise KeyError(1)
    except KeyError:
        seen.append('in handler')
        seen.append('still')
    seen.append('after')
    return seen, sys_exc()
"""

WITH = """\
import contextlib
def f():
    log = []
    with contextlib.nullcontext():
        log.append(1)
        log.append(2)
    log.append(3)
    return log
"""

def run_with_jumps(M: Any, tool: Tool, source: str, event: str, jumps: dict,
                   extra_globals: Optional[dict] = None) -> tuple:
    """Calls f of *source* with *event* (LINE by default, plus LINE for the
    record) on its code; at the n-th *event* whose relative line is a key of
    *jumps*, sets f_lineno to the value's relative line.  Returns f's result
    (or the exception's type name), the relative lines reported, and what
    each jump said."""
    E = M.events
    f = program(source)
    if extra_globals:
        f.__globals__.update(extra_globals)
    code = f.__code__
    lines: list = []
    outcomes: list = []

    def attempt(rel: int) -> None:
        if rel in jumps:
            target = jumps.pop(rel)
            frame = sys._getframe(2)
            try:
                frame.f_lineno = code.co_firstlineno + target
                outcomes.append(("jumped", target, frame.f_lineno - code.co_firstlineno))
            except ValueError as e:
                outcomes.append(("refused", str(e)))

    def on_line(c: Any, line: int) -> None:
        if c is code:
            lines.append(line - code.co_firstlineno)
            if event == "LINE":
                attempt(line - code.co_firstlineno)

    def on_other(c: Any, offset: int, *rest: Any) -> None:
        if c is code:
            attempt(("at", event))

    tool.register(E.LINE, on_line)
    events = E.LINE
    if event != "LINE":
        tool.register(getattr(E, event), on_other)
        events |= getattr(E, event)
    tool.set_local(code, events)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result: Any = f()
            except Exception as e:  # noqa: BLE001 - the outcome is compared
                result = type(e).__name__
    finally:
        tool.set_local(code, 0)
    warned = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    return result, lines, outcomes, warned


def test_jump_forward_skips_lines_and_binds_none(M: Any, tool: Tool) -> None:
    assert run_with_jumps(M, tool, STRAIGHT, "LINE", {1: 3}) == (
        (None, None, 3), [1, 4], [("jumped", 3, 3)], ["assigning None to 3 unbound locals"])


def test_jump_backward_runs_lines_again(M: Any, tool: Tool) -> None:
    assert run_with_jumps(M, tool, STRAIGHT, "LINE", {3: 1}) == (
        (1, 2, 3), [1, 2, 3, 2, 3, 4], [("jumped", 1, 1)], ["assigning None to 1 unbound local"])


def test_jump_out_of_a_loop_pops_its_iterator(M: Any, tool: Tool) -> None:
    assert run_with_jumps(M, tool, LOOP, "LINE", {4: 5}) == (
        0, [1, 2, 3, 4], [("jumped", 5, 5)], [])


def test_jump_into_a_loop_is_refused(M: Any, tool: Tool) -> None:
    assert run_with_jumps(M, tool, LOOP, "LINE", {1: 3}) == (
        33, [1, 2, 3, 4, 2, 3, 4, 2, 3, 4, 2, 5],
        [("refused", "can't jump into the body of a for loop")], [])


def test_jump_within_a_loop_keeps_going(M: Any, tool: Tool) -> None:
    assert run_with_jumps(M, tool, LOOP, "LINE", {4: 3}) == (
        33, [1, 2, 3, 4, 4, 2, 3, 4, 2, 3, 4, 2, 5], [("jumped", 3, 3)], [])


def test_jump_out_of_a_handler_restores_the_exception_state(M: Any, tool: Tool) -> None:
    assert run_with_jumps(M, tool, HANDLER, "LINE", {5: 7},
                          {"sys_exc": lambda: sys.exc_info()[0]}) == (
        (["after"], None), [1, 2, 3, 4, 5, 8], [("jumped", 7, 7)], [])


def test_jump_into_a_handler_is_refused(M: Any, tool: Tool) -> None:
    assert run_with_jumps(M, tool, HANDLER, "LINE", {1: 6},
                          {"sys_exc": lambda: sys.exc_info()[0]}) == (
        (["in handler", "still", "after"], None), [1, 2, 3, 4, 5, 6, 7, 8],
        [("refused", "can't jump into an 'except' block as there's no exception")], [])


def test_jump_out_of_a_with_block(M: Any, tool: Tool) -> None:
    assert run_with_jumps(M, tool, WITH, "LINE", {4: 6}) == (
        [1], [1, 2, 3, 4], [("jumped", 6, 6)], [])


def test_jump_from_a_jump_event_out_of_the_loop(M: Any, tool: Tool) -> None:
    """JUMP: the jump back to a loop's head, here out of the loop instead."""
    assert run_with_jumps(M, tool, LOOP, "JUMP", {("at", "JUMP"): 5}) == (
        10, [1, 2, 3, 4], [("jumped", 5, 5)], [])


@pytest.mark.parametrize("event, message", [
    ("PY_START", "can't jump from the 'call' trace event of a new frame"),
    ("PY_RETURN", "can only jump from a 'line' trace event"),
    ("CALL", "can't jump during a call"),
])
def test_events_that_allow_no_jump(M: Any, tool: Tool, event: str, message: str) -> None:
    assert run_with_jumps(M, tool, LOOP, event, {("at", event): 1}) == (
        33, [1, 2, 3, 4, 2, 3, 4, 2, 3, 4, 2, 5], [("refused", message)], [])


def test_a_jump_set_again_while_the_first_warns(M: Any, tool: Tool) -> None:
    """The unbound-locals warning runs Python code (showwarning), which sets
    f_lineno again: the outer setting comes last, and once the frame has
    jumped nothing of it is left for later frames."""
    E = M.events
    f = program(STRAIGHT)
    code = f.__code__
    state: dict = {"calls": 0}

    def show(*args: Any, **kwargs: Any) -> None:
        state["calls"] += 1
        if state["calls"] == 1:     # (its own warning calls this again)
            state["frame"].f_lineno = code.co_firstlineno + 4

    def on_line(c: Any, line: int) -> None:
        if c is code and line == code.co_firstlineno + 1 and "frame" not in state:
            state["frame"] = sys._getframe(1)
            state["frame"].f_lineno = code.co_firstlineno + 4

    tool.register(E.LINE, on_line)
    tool.set_local(code, E.LINE)
    saved = warnings.showwarning
    warnings.showwarning = show
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = show
            first = f()
        del state["frame"]
        state["frame"] = None
        again = f()
    finally:
        warnings.showwarning = saved
        tool.set_local(code, 0)
    assert (first, again, state["calls"]) == ((None, None, None), (1, 2, 3), 2)


def test_jump_from_a_branch_event_out_of_the_loop(M: Any, tool: Tool) -> None:
    """BRANCH: the loop's first step (the iterator's next value on the
    stack, i not bound yet), left for the return: the value and the
    iterator go."""
    assert run_with_jumps(M, tool, LOOP, "BRANCH", {("at", "BRANCH"): 5}) == (
        0, [1, 2], [("jumped", 5, 5)], ["assigning None to 1 unbound local"])


TRY_IN_LOOP = """\
def f():
    out = []
    for i in range(3):
        try:
            out.append(i)
        finally:
            out.append(-i)
    return out
"""


def test_jump_out_of_a_try_in_a_loop(M: Any, tool: Tool) -> None:
    """Out of a try block and the loop around it at once (its finally
    block does not run)."""
    assert run_with_jumps(M, tool, TRY_IN_LOOP, "LINE", {4: 7}) == (
        [], [1, 2, 3, 4], [("jumped", 7, 7)], [])


def test_frame_is_on_the_def_line_at_py_start(M: Any, tool: Tool) -> None:
    """Where a debugger shows a frame that starts ('--Call--')."""
    E = M.events
    f = program(STRAIGHT)
    seen: list = []
    tool.register(E.PY_START, lambda c, offset: seen.append(
        sys._getframe(1).f_lineno - c.co_firstlineno) if c is f.__code__ else None)
    tool.set_local(f.__code__, E.PY_START)
    try:
        f()
    finally:
        tool.set_local(f.__code__, 0)
    assert seen == [0]



GENERATOR = """\
def f():
    x = yield 1
    y = 2
    yield x, y
    return 'end'
"""


@pytest.mark.parametrize("with_lines", [False, True], ids=["resume", "resume+lines"])
def test_jump_from_py_resume(M: Any, tool: Tool, with_lines: bool) -> None:
    """The generator goes on at the line set, the value sent to it dropped;
    the line jumped to reports no LINE event."""
    E = M.events
    gen = program(GENERATOR)
    code = gen.__code__
    outcomes: list = []

    def on_resume(c: Any, offset: int) -> None:
        if c is code and not outcomes:
            frame = sys._getframe(1)
            frame.f_lineno = code.co_firstlineno + 3
            outcomes.append(frame.f_lineno - code.co_firstlineno)

    lines: list = []
    tool.register(E.PY_RESUME, on_resume)
    tool.register(E.LINE, lambda c, line: lines.append(line - code.co_firstlineno)
                  if c is code else None)
    tool.set_local(code, E.PY_RESUME | (E.LINE if with_lines else 0))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            g = gen()
            got = [next(g), g.send("sent")]
            try:
                next(g)
            except StopIteration as e:
                got.append(e.value)
    finally:
        tool.set_local(code, 0)
    warned = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert (got, outcomes, warned, lines) == (
        [1, (None, None), "end"], [3], ["assigning None to 2 unbound locals"],
        [1, 4] if with_lines else [])
