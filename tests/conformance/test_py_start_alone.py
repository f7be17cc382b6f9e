"""PY_START as the only event a code object needs (coverage tools that turn
it on everywhere and disable it where it fires, debuggers away from their
breakpoints): the 3.10 back end delivers it before the frame runs its
original code, without an instrumented copy, and must look the same as
from the instruction it fires at natively."""

from __future__ import annotations

import sys
import types
from typing import Any, Iterator, List

import pytest

from .helpers import Tool, loop_exit_rel_line


def test_a_trace_function_sees_the_call_before_py_start(M: Any, tool: Tool) -> None:
    order: List[str] = []

    def f() -> int:
        return 1

    def trace(frame: Any, event: str, arg: Any) -> None:
        if frame.f_code is f.__code__:
            order.append("trace " + event)

    def start(code: Any, offset: int) -> None:
        if code is f.__code__:
            order.append("PY_START")

    tool.register(M.events.PY_START, start)
    tool.set_events(M.events.PY_START)
    sys.settrace(trace)
    try:
        f()
    finally:
        sys.settrace(None)
        tool.set_events(0)
    assert order == ["trace call", "PY_START"]


def _doubles(n: int) -> Iterator[int]:
    for i in range(n):
        yield i * 2


def _lines_from_first_start(M: Any, tool: Tool) -> List[int]:
    """What a coverage tool does: PY_START everywhere, and where
    :func:`_doubles` first starts, its LINE (recorded relative to its first
    line in the list returned) and PY_START disabled."""
    first = _doubles.__code__.co_firstlineno
    lines: List[int] = []

    def start(code: Any, offset: int) -> Any:
        if code is _doubles.__code__:
            M.set_local_events(tool.id, code, M.events.LINE)
        return M.DISABLE

    tool.register(M.events.PY_START, start)
    tool.register(M.events.LINE, lambda code, line: lines.append(line - first))
    tool.set_events(M.events.PY_START)
    return lines


def test_lines_turned_on_as_a_generator_first_runs(M: Any, tool: Tool) -> None:
    # The callback asks for the generator's lines as it first runs: its
    # frame goes on past PY_START with them, its values intact.
    gen = _doubles
    lines = _lines_from_first_start(M, tool)
    try:
        assert list(gen(2)) == [0, 2]
        assert gen(1).send(None) == 0
    finally:
        tool.set_events(0)
        M.set_local_events(tool.id, gen.__code__, 0)
    # The exhausted loop goes to the implicit return: on the `for` line from
    # 3.10 on, on the last line on 3.9 (a LINE there).
    loop_exit = loop_exit_rel_line(gen)
    assert lines == [1, 2, 1, 2, 1] + ([loop_exit] if loop_exit != 1 else []) + [1, 2]


def test_lines_turned_on_as_a_generator_first_runs_reach_its_other_generators(
        M: Any, tool: Tool) -> None:
    # As above, with other generators of the code waiting: one suspended
    # since before PY_START was on, one made but not started.  Each reports
    # its lines from where it goes on.
    gen = _doubles
    suspended = gen(3)
    assert next(suspended) == 0
    lines = _lines_from_first_start(M, tool)
    try:
        waiting = gen(1)
        assert next(gen(1)) == 0
        assert lines == [1, 2]
        del lines[:]
        assert list(waiting) == [0]
        assert list(suspended) == [2, 4]
    finally:
        tool.set_events(0)
        M.set_local_events(tool.id, gen.__code__, 0)
    loop_exit = loop_exit_rel_line(gen)
    exit_lines = [loop_exit] if loop_exit != 1 else []
    assert lines == [1, 2, 1] + exit_lines + [1, 2, 1, 2, 1] + exit_lines


def test_disabled_where_it_fired_it_fires_again_after_restart(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    starts: List[int] = []

    def start(code: Any, offset: int) -> Any:
        if code is f.__code__:
            starts.append(offset)
            return M.DISABLE
        return None

    tool.register(M.events.PY_START, start)
    tool.set_events(M.events.PY_START)
    try:
        f()
        f()
        M.restart_events()
        f()
        f()
    finally:
        tool.set_events(0)
    assert len(starts) == 2 and len(set(starts)) == 1


def test_a_callback_raising_leaves_the_frame_from_its_start(M: Any, tool: Tool) -> None:
    def f() -> int:
        return 1

    def start(code: Any, offset: int) -> None:
        if code is f.__code__:
            raise KeyError("from PY_START")

    tool.register(M.events.PY_START, start)
    tool.set_events(M.events.PY_START)
    try:
        try:
            f()
        except KeyError as e:
            tb = e.__traceback__
        else:
            raise AssertionError("no exception")
    finally:
        tool.set_events(0)
    entries = []
    while tb is not None:
        entries.append((tb.tb_frame.f_code.co_name, tb.tb_lineno - f.__code__.co_firstlineno))
        tb = tb.tb_next
    # The frame's entry is on its `def` line, the callback's after it.
    assert entries[-2:] == [("f", 0), ("start", 5)]


def one_line(x: int) -> int:
    return x * x


def test_py_start_after_line_events_went_off_without_a_call(M: Any, tool: Tool) -> None:
    """Local LINE, a call, local events off, then PY_START|PY_RETURN: the next
    call starts with PY_START, as when a call came in between."""
    seen: List[tuple] = []
    E = M.events
    tool.register(E.LINE, lambda code, line: seen.append("line"))
    tool.register(E.PY_START, lambda code, offset: seen.append("start"))
    tool.register(E.PY_RETURN, lambda code, offset, value: seen.append(("return", value)))
    tool.set_local(one_line, E.LINE)
    one_line(1)
    tool.set_local(one_line, 0)
    tool.set_local(one_line, E.PY_START | E.PY_RETURN)
    one_line(3)
    one_line(4)
    assert seen == ["line", "start", ("return", 9), "start", ("return", 16)]


def generator(x: int) -> Iterator[int]:
    yield x
    yield x + 1


def loop_on_first_line(n: int) -> int:
    while 1:  # the loop goes back to this line (on 3.11 past its NOP)
        n -= 1
        if n < 0:
            return n


def continue_to_first_line(n: int) -> int:
    while 1:  # on 3.11 the `continue` jumps to this line's NOP, right after RESUME
        n -= 1
        if n == 1:
            continue
        if n < 0:
            return n


FUNCTIONS = pytest.mark.parametrize(
    "function, argument", [(one_line, 3), (generator, 5), (loop_on_first_line, 1),
                           (continue_to_first_line, 3)],
    ids=["function", "generator", "loop_on_first_line", "continue_to_first_line"])


def calls_after_events_came_back(M: Any, tool: Tool, function: Any, argument: int,
                                 before: str, after: str, traced: bool) -> None:
    """Events `before` on, two calls, events off, `after` on, two calls: those
    see what the calls of a copy of the function never monitored see (with a
    trace function set during the calls if `traced`)."""
    seen: List[tuple] = []
    E = M.events

    def events(names: str) -> int:
        return sum(getattr(E, name) for name in names.split())

    fresh = types.FunctionType(function.__code__.replace(), function.__globals__)
    first_line = function.__code__.co_firstlineno
    tool.register(E.LINE, lambda code, line: seen.append(("line", line - first_line)))
    tool.register(E.PY_START, lambda code, offset: seen.append(("start",)))
    tool.register(E.PY_RETURN, lambda code, offset, value: seen.append(("return", value)))
    tool.register(E.PY_YIELD, lambda code, offset, value: seen.append(("yield", value)))

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_name == function.__name__:
            seen.append(("trace " + event, frame.f_lineno - first_line))
        return trace

    def two_calls(f: Any) -> List[tuple]:
        seen.clear()
        if traced:
            sys.settrace(trace)
        try:
            for _ in range(2):
                result = f(argument)
                if function is generator:
                    list(result)
        finally:
            sys.settrace(None)
        return list(seen)

    tool.set_local(fresh, events(after))
    expected = two_calls(fresh)
    tool.set_local(fresh, 0)
    tool.set_local(function, events(before))
    two_calls(function)
    tool.set_local(function, 0)
    tool.set_local(function, events(after))
    assert two_calls(function) == expected
    assert ("start",) in expected or "PY_START" not in after


@FUNCTIONS
@pytest.mark.parametrize("before, after", [
    ("LINE", "PY_START"),
    ("LINE", "PY_START PY_RETURN PY_YIELD"),
    ("LINE", "PY_START LINE"),
    ("LINE PY_YIELD", "PY_START PY_RETURN PY_YIELD"),
    ("PY_START PY_RETURN", "LINE"),
])
def test_events_that_went_off_and_came_back_between_calls(
        M: Any, tool: Tool, function: Any, argument: int, before: str, after: str) -> None:
    calls_after_events_came_back(M, tool, function, argument, before, after, traced=False)


@FUNCTIONS
@pytest.mark.parametrize("before, after", [
    ("LINE", "PY_START"),
    ("LINE", "PY_START PY_RETURN"),
    ("LINE", "PY_START LINE"),
    ("PY_START PY_RETURN", "LINE"),
])
def test_events_that_went_off_and_came_back_under_a_trace_function(
        M: Any, tool: Tool, function: Any, argument: int, before: str, after: str) -> None:
    calls_after_events_came_back(M, tool, function, argument, before, after, traced=True)
