"""Behaviour that monitoring must leave as it is without it, found by running
the stdlib's regression tests with every event on (tools/transparency.py):
error messages that depend on the code around an instruction, and what
``dis`` and tracebacks show of code that ran monitored.

Each test compares a monitored run with an unmonitored one in the same
interpreter, so the expectations hold whatever the version says.
"""

from __future__ import annotations

import dis
import io
import sys
import traceback
from typing import Any, Callable

from .helpers import Recorder, Tool
from .test_first_calls import FUNCTIONS, first_calls, fresh_functions


def run_coroutine(coro: Any) -> Any:
    try:
        while True:
            coro.send(None)
    except StopIteration as stop:
        return stop.value


def outcome(f: Callable[[], Any]) -> str:
    try:
        return repr(f())
    except Exception as e:  # noqa: BLE001 - the outcome is compared
        return f"{type(e).__name__}: {e}"


class ExitReturnsInt:
    """An asynchronous context manager whose __aexit__ is not awaitable."""

    async def __aenter__(self) -> "ExitReturnsInt":
        return self

    def __aexit__(self, *exc: Any) -> int:
        return 456


async def leave_by_break() -> int:
    for i in range(2):
        async with ExitReturnsInt():
            break
    return i


async def leave_at_the_end() -> int:
    async with ExitReturnsInt():
        pass
    return 1


def test_async_with_exit_not_awaitable_message(M: Any, tool: Tool) -> None:
    """The interpreter words the error after the instructions before the
    await; the __aexit__ call is still reported."""
    unmonitored = [outcome(lambda: run_coroutine(c())) for c in (leave_by_break, leave_at_the_end)]
    E = M.events
    with Recorder(tool, E.CALL | E.LINE | E.PY_START | E.PY_RETURN, leave_by_break,
                  leave_at_the_end) as rec:
        monitored = [outcome(lambda: run_coroutine(c())) for c in (leave_by_break, leave_at_the_end)]
    assert monitored == unmonitored
    assert "__aexit__" in unmonitored[0]
    exits = [e.args[2] for e in rec.events
             if e.name == "CALL" and getattr(e.args[1], "__name__", None) == "__aexit__"]
    assert exits == [None, None]


def test_first_calls_leave_no_object_for_the_collector(M: Any, tool: Tool) -> None:
    """The count of the objects the collector tracks (a leak check the
    stdlib's tests make, in test_descr) stays as it is when functions run
    for the first time with events on."""
    funcs = fresh_functions()
    for f in funcs:
        f(0)
    counted, tracked = first_calls(M, tool, M.events, funcs)
    assert tracked < FUNCTIONS // 4, tracked


def recursion_traceback() -> list:
    """The functions of the traceback of a runaway recursion."""

    def down() -> None:
        down()

    try:
        down()
    except RecursionError as error:
        return [entry.name for entry in traceback.extract_tb(error.__traceback__)]
    raise AssertionError("no RecursionError")


def test_runaway_recursion_stops_in_the_program(M: Any, tool: Tool) -> None:
    """Callbacks that call C functions on every start and call: the
    RecursionError still comes from the recursive function (the stdlib's
    test_traceback checks the traceback of one)."""
    plain = recursion_traceback()
    E = M.events
    counts: dict = {}

    def count(code: Any, *args: Any) -> None:
        counts[code] = counts.get(code, 0) + 1

    tool.register(E.PY_START, count)
    tool.register(E.CALL, count)
    tool.set_events(E.PY_START | E.CALL)
    try:
        monitored = recursion_traceback()
    finally:
        tool.set_events(0)
    assert plain[-1] == "down"
    assert monitored[-1] == "down"
    assert len(monitored) in (len(plain) - 1, len(plain))


def test_stack_size_and_code_info_of_code_run_monitored(M: Any, tool: Tool) -> None:
    """What ``dis.code_info`` shows (the stack size among it) of a function
    that runs with events on, while they are on and after."""

    def f(x: Any) -> Any:
        return [x] + [x, (x, x)]

    before = (f.__code__.co_stacksize, dis.code_info(f))
    E = M.events
    with Recorder(tool, E.PY_START | E.PY_RETURN | E.LINE | E.CALL, f):
        f(1)
        during = (f.__code__.co_stacksize, dis.code_info(f))
    assert during == before
    assert (f.__code__.co_stacksize, dis.code_info(f)) == before


def catches() -> tuple:
    """Tracebacks of exceptions caught where they were raised: once, and
    re-raised to an outer handler of the same function."""
    try:
        1 / 0
    except ZeroDivisionError as e:
        once = e.__traceback__
    try:
        try:
            {}["key"]
        except KeyError:
            raise
    except KeyError as e:
        again = e.__traceback__
    return once, again


def tracebacks_seen() -> list:
    seen = []
    for tb in catches():
        out = io.StringIO()
        dis.distb(tb, file=out)
        seen.append((tb.tb_lasti, tb.tb_lineno, out.getvalue()))
    return seen


def test_caught_traceback_offsets(M: Any, tool: Tool) -> None:
    """tb_lasti (and so dis.distb, which marks the instruction with -->) of
    a traceback kept after the function that caught it returned."""
    plain = tracebacks_seen()
    E = M.events
    with Recorder(tool, E.PY_START | E.PY_RETURN | E.LINE | E.CALL, catches):
        monitored = tracebacks_seen()
    assert monitored == plain
    assert all("-->" in listing for _, _, listing in plain)


def _divide(x: int) -> float:
    return 1 / x


def _returns_a_value() -> Any:
    yield 1
    return "done"


def _raises_and_loops() -> list:
    out = []
    try:
        out.append(_divide(0))
    except ZeroDivisionError:
        out.append("caught")
    for item in _returns_a_value():
        out.append(item)
    return out


def exceptions_traced() -> list:
    """What a sys.settrace function sees at each 'exception' event of
    _raises_and_loops(): the exception and the offset and line of the
    traceback's entry for the frame (where pdb's post-mortem `list` puts
    its >> mark)."""
    seen = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if event == "exception" and frame.f_code is _raises_and_loops.__code__:
            tb = arg[2]
            seen.append((arg[0].__name__, tb.tb_frame is frame, tb.tb_lasti, tb.tb_lineno))
        return tracer

    sys.settrace(tracer)
    try:
        _raises_and_loops()
    finally:
        sys.settrace(None)
    return seen


def test_exception_events_of_a_trace_function(M: Any, tool: Tool) -> None:
    """A sys.settrace function's 'exception' events, in a frame that runs
    monitored: the callee's exception with the frame's own traceback entry
    (at the call), and, before 3.12, the StopIteration of a generator that
    returns a value at the end of a for loop (bdb's `next` out of a
    generator stops there)."""
    plain = exceptions_traced()
    E = M.events
    with Recorder(tool, E.LINE | E.RAISE | E.STOP_ITERATION | E.PY_UNWIND, _raises_and_loops,
                  _returns_a_value):
        monitored = exceptions_traced()
    assert monitored == plain
    assert plain[0][:2] == ("ZeroDivisionError", True)
