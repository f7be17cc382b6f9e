"""Events enabled for a frame that is already running reach its next instruction.

Natively ``set_events`` and ``set_local_events`` instrument the code object
in place, so the frame that runs it sees the new events at its very next
instruction, whatever it is doing: starting (the PY_START callback of
coverage.py, bdb and debugpy turns LINE on for the starting code), stopped
in one of its own callbacks (a debugger adding BRANCH, INSTRUCTION, CALL or
PY_RETURN from a LINE callback), calling the API itself, waiting for a
callee (in Python or under a C function such as ``sorted`` or ``map``), or
looping on another thread.

Most expectations compare a frame that got its events late with a call that
had them from the start: from the point where they were enabled on, the two
must report the same events.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import types
from typing import Any, Callable

import pytest

from .helpers import Event, Tool, code_of


def rel(code: Any, line: int) -> int:
    return line - code.co_firstlineno


def summary(event: Event) -> tuple:
    """Event name, code name and every argument, lines made relative."""
    if event.name == "LINE":
        return ("LINE", event.code.co_name, event.rel_line)
    return (event.name, event.code.co_name) + tuple(event.args)


def register_all(tool: Tool, names: tuple, codes: list, log: list,
                 hook: Callable[[Event], Any] = lambda event: None) -> None:
    """Register a recording callback for each event of *names*; events of
    code objects other than *codes* are ignored.  *hook* runs after each
    recorded event and its result is returned to the VM."""
    ids = {id(c) for c in codes}

    def make(name: str) -> Callable[..., Any]:
        def callback(code: Any, *args: Any) -> Any:
            if id(code) not in ids:
                return None
            event = Event(name, code, args)
            log.append(event)
            return hook(event)

        return callback

    for name in names:
        tool.register(getattr(tool.M.events, name), make(name))


def loop_function() -> Callable[[int], int]:
    def f(n: int) -> int:
        total = 0
        for i in range(n):
            if i:
                total += abs(-i)
        return total

    return f


# --------------------------------------------------------------------------
# PY_START turns LINE on for the starting code


@pytest.mark.parametrize("start_returns", ["none", "disable"])
def test_line_enabled_by_py_start_reaches_the_first_call(M: Any, tool: Tool, start_returns: str) -> None:
    # coverage.py returns DISABLE from PY_START; bdb and debugpy return None.
    E = M.events

    def f(n: int) -> int:
        a = 1
        for i in range(n):
            a += i
        return a

    lines: list = []

    def on_start(code: Any, offset: int) -> Any:
        if code is f.__code__:
            M.set_local_events(tool.id, code, E.LINE)
        return M.DISABLE if start_returns == "disable" else None

    def on_line(code: Any, line: int) -> None:
        if code is f.__code__:
            lines.append(rel(code, line))

    tool.register(E.PY_START, on_start)
    tool.register(E.LINE, on_line)
    tool.set_events(E.PY_START)
    try:
        assert f(2) == 2
        first = list(lines)
        lines.clear()
        assert f(2) == 2
    finally:
        tool.set_events(0)
        tool.set_local(f, 0)
    assert first == [1, 2, 3, 2, 3, 2, 4]
    assert lines == first


def test_line_enabled_by_py_start_reaches_module_code_run_by_exec(M: Any, tool: Tool) -> None:
    E = M.events
    filename = "<live module %s>" % id(tool)
    code = compile("a = 1\nb = 2\nfor i in range(2):\n    a += i\nc = a\n", filename, "exec")
    lines: list = []

    def on_start(started: Any, offset: int) -> None:
        if started is code:
            M.set_local_events(tool.id, started, E.LINE)

    def on_line(running: Any, line: int) -> None:
        if running is code:
            lines.append(line)

    tool.register(E.PY_START, on_start)
    tool.register(E.LINE, on_line)
    tool.set_events(E.PY_START)
    namespace: dict = {}
    try:
        exec(code, namespace)
    finally:
        tool.set_events(0)
        tool.set_local(code, 0)
    assert namespace["c"] == 2
    assert lines == [1, 2, 3, 4, 3, 4, 3, 5]


# --------------------------------------------------------------------------
# A LINE callback adds events for the frame that reported the line


@pytest.mark.parametrize(
    "added",
    [("BRANCH", "JUMP"), ("INSTRUCTION",), ("BRANCH", "JUMP", "INSTRUCTION", "PY_RETURN")],
    ids="+".join,
)
def test_events_added_by_a_line_callback_reach_the_running_frame(M: Any, tool: Tool, added: tuple) -> None:
    E = M.events
    f = loop_function()
    code = code_of(f)
    extra = 0
    for name in added:
        extra |= getattr(E, name)
    live: list = []

    def add_at_first_line(event: Event) -> None:
        if event.name == "LINE" and event.rel_line == 1 and not tool.get_local(f) & extra:
            M.set_local_events(tool.id, code, E.LINE | extra)

    register_all(tool, ("LINE",) + added, [code], live, add_at_first_line)
    tool.set_local(f, E.LINE)
    try:
        assert f(3) == 3
        # The same call with every event on from the start.
        reference: list = []
        register_all(tool, ("LINE",) + added, [code], reference)
        assert f(3) == 3
    finally:
        tool.set_local(f, 0)
    assert [e.name for e in reference if e.name != "LINE"], "the reference run saw no added event"
    assert [summary(e) for e in live] == [summary(e) for e in reference]


def test_call_added_by_a_line_callback_steps_into_the_callee(M: Any, tool: Tool) -> None:
    # A debugger's "step into": at the line of a call, turn CALL on for the
    # frame, and from CALL turn LINE on for the callee.
    E = M.events

    def callee(x: int) -> int:
        return x + 1

    def f(n: int) -> int:
        a = 0
        for i in range(n):
            if i:
                a += callee(i)
        return a

    log: list = []

    def hook(event: Event) -> None:
        if event.name == "LINE" and event.code is f.__code__ and event.rel_line == 4:
            M.set_local_events(tool.id, f.__code__, E.LINE | E.CALL)
        if event.name == "CALL" and event.args[1] is callee:
            M.set_local_events(tool.id, callee.__code__, E.LINE)

    register_all(tool, ("LINE", "CALL"), [f.__code__, callee.__code__], log, hook)
    tool.set_local(f, E.LINE)
    try:
        assert f(3) == 5
    finally:
        tool.set_local(f, 0)
        tool.set_local(callee, 0)
    compact = [e.compact() for e in log]
    assert compact == [
        ("LINE", "f", 1),
        ("LINE", "f", 2),
        ("LINE", "f", 3),
        ("LINE", "f", 2),
        ("LINE", "f", 3),
        ("LINE", "f", 4),
        ("CALL", "f", callee, 1),
        ("LINE", "callee", 1),
        ("LINE", "f", 2),
        ("LINE", "f", 3),
        ("LINE", "f", 4),
        ("CALL", "f", callee, 2),
        ("LINE", "callee", 1),
        ("LINE", "f", 2),
        ("LINE", "f", 5),
    ]


def test_py_return_added_by_a_line_callback_at_the_last_line(M: Any, tool: Tool) -> None:
    E = M.events
    f = loop_function()
    log: list = []

    def hook(event: Event) -> None:
        if event.name == "LINE" and event.rel_line == 5:
            M.set_local_events(tool.id, code_of(f), E.LINE | E.PY_RETURN)

    register_all(tool, ("LINE", "PY_RETURN"), [code_of(f)], log, hook)
    tool.set_local(f, E.LINE)
    try:
        assert f(2) == 1
    finally:
        tool.set_local(f, 0)
    assert [e.compact() for e in log] == [
        ("LINE", "f", 1),
        ("LINE", "f", 2),
        ("LINE", "f", 3),
        ("LINE", "f", 2),
        ("LINE", "f", 3),
        ("LINE", "f", 4),
        ("LINE", "f", 2),
        ("LINE", "f", 5),
        ("PY_RETURN", "f", 1),
    ]


# --------------------------------------------------------------------------
# A function turns events on for itself


def test_function_turns_on_its_own_lines(M: Any, tool: Tool) -> None:
    E = M.events
    log: list = []

    def f() -> int:
        a = 1
        M.set_local_events(tool.id, f.__code__, E.LINE)
        b = 2
        return a + b

    register_all(tool, ("LINE",), [f.__code__], log)
    try:
        assert f() == 3
    finally:
        tool.set_local(f, 0)
    assert [e.compact() for e in log] == [("LINE", "f", 3), ("LINE", "f", 4)]


def test_set_events_right_before_return(M: Any, tool: Tool) -> None:
    E = M.events
    log: list = []

    def f() -> int:
        a = 1
        M.set_events(tool.id, E.PY_RETURN)
        return a

    register_all(tool, ("PY_RETURN",), [f.__code__], log)
    try:
        assert f() == 1
    finally:
        tool.set_events(0)
    assert [e.compact() for e in log] == [("PY_RETURN", "f", 1)]


def test_set_local_events_right_before_return(M: Any, tool: Tool) -> None:
    E = M.events
    log: list = []

    def f() -> int:
        a = 1
        M.set_local_events(tool.id, f.__code__, E.PY_RETURN | E.LINE)
        return a

    register_all(tool, ("PY_RETURN", "LINE"), [f.__code__], log)
    try:
        assert f() == 1
    finally:
        tool.set_local(f, 0)
    assert [e.compact() for e in log] == [("LINE", "f", 3), ("PY_RETURN", "f", 1)]


# --------------------------------------------------------------------------
# A callee turns events on for a caller that is waiting for it


def test_callee_turns_on_events_of_its_caller(M: Any, tool: Tool) -> None:
    E = M.events
    log: list = []

    def callee() -> None:
        M.set_local_events(tool.id, caller.__code__, E.LINE | E.PY_RETURN)

    def caller() -> int:
        callee()
        y = 2
        return y

    register_all(tool, ("LINE", "PY_RETURN"), [caller.__code__], log)
    try:
        assert caller() == 2
    finally:
        tool.set_local(caller, 0)
    assert [e.compact() for e in log] == [("LINE", "caller", 2), ("LINE", "caller", 3), ("PY_RETURN", "caller", 2)]


@pytest.mark.parametrize("raised_in", ["callee", "callee of callee", "caller's callee after"])
def test_caller_reached_keeps_its_events_past_exceptions_in_callees(
    M: Any, tool: Tool, raised_in: str
) -> None:
    """Exceptions raised and caught in frames the running caller calls,
    before or after it gets events, leave its events as they were (3.10
    reaches that caller through the trace hook, which the interpreter calls
    at every exception of every frame)."""
    E = M.events
    log: list = []

    def thrower() -> int:
        try:
            raise KeyError(1)
        except KeyError:
            return 1

    def middle() -> int:
        return thrower() + thrower()

    def callee() -> int:
        M.set_local_events(tool.id, caller.__code__, E.LINE | E.PY_RETURN)
        if raised_in == "callee":
            return thrower()
        return middle() if raised_in == "callee of callee" else 0

    def caller() -> int:
        x = callee()
        x += thrower() if raised_in == "caller's callee after" else 0
        y = x + 1
        return y

    register_all(tool, ("LINE", "PY_RETURN"), [caller.__code__], log)
    try:
        result = caller()
    finally:
        tool.set_local(caller, 0)
    assert result == (3 if raised_in == "callee of callee" else 2)
    assert [e.compact() for e in log] == [
        ("LINE", "caller", 2), ("LINE", "caller", 3), ("LINE", "caller", 4),
        ("PY_RETURN", "caller", result)]


def _caller_under_c(kind: str, key: Callable[[int], int]) -> Callable[[], list]:
    """A function that reaches *key* through a C function, returning right
    after that call or running one more line first."""
    if kind == "sorted, then return":
        def caller() -> list:
            return sorted([1, 0, 2], key=key)
    elif kind == "sorted, one more line":
        def caller() -> list:
            r = sorted([1, 0, 2], key=key)
            s = r
            return s
    elif kind == "map, then return":
        def caller() -> list:
            return list(map(key, [1, 0, 2]))
    else:
        def caller() -> list:
            r = list(map(key, [1, 0, 2]))
            s = r
            return s
    return caller


KINDS = ["sorted, then return", "sorted, one more line", "map, then return", "map, one more line"]


@pytest.mark.parametrize("kind", KINDS)
def test_callback_of_a_c_function_turns_on_local_events_of_the_caller(M: Any, tool: Tool, kind: str) -> None:
    E = M.events
    log: list = []

    def key(x: int) -> int:
        if x == 0:
            M.set_local_events(tool.id, caller.__code__, E.LINE | E.PY_RETURN)
        return x

    caller = _caller_under_c(kind, key)
    register_all(tool, ("LINE", "PY_RETURN"), [caller.__code__], log)
    try:
        result = caller()
    finally:
        tool.set_local(caller, 0)
    expected_result = [0, 1, 2] if kind.startswith("sorted") else [1, 0, 2]
    assert result == expected_result
    expected = [("LINE", "caller", 2), ("LINE", "caller", 3)] if kind.endswith("line") else []
    assert [e.compact() for e in log] == expected + [("PY_RETURN", "caller", expected_result)]


@pytest.mark.parametrize("kind", KINDS)
def test_callback_of_a_c_function_turns_on_global_events(M: Any, tool: Tool, kind: str) -> None:
    E = M.events
    log: list = []

    def key(x: int) -> int:
        if x == 0:
            M.set_events(tool.id, E.PY_RETURN)
        return x

    caller = _caller_under_c(kind, key)
    register_all(tool, ("PY_RETURN",), [caller.__code__], log)
    try:
        result = caller()
    finally:
        tool.set_events(0)
    assert [e.compact() for e in log] == [("PY_RETURN", "caller", result)]


# --------------------------------------------------------------------------
# The call the frame waits in raises


def _raising_caller(kind: str, key: Callable[[int], int]) -> Callable[[], int]:
    if kind == "except":
        def caller() -> int:
            try:
                sorted([1, 0, 2], key=key)
            except KeyError:
                x = 1
            return x
    elif kind == "finally":
        def caller() -> int:
            x = 0
            try:
                sorted([1, 0, 2], key=key)
            finally:
                x += 1
            return x
    elif kind == "with":
        import contextlib

        def caller() -> int:
            with contextlib.suppress(KeyError):
                sorted([1, 0, 2], key=key)
            return 2
    else:
        def caller() -> int:
            sorted([1, 0, 2], key=key)
            return 3
    return caller


@pytest.mark.parametrize("kind", ["except", "finally", "with", "no handler"])
def test_exception_from_the_call_the_frame_waits_in(M: Any, tool: Tool, kind: str) -> None:
    # The frame reports the exception and goes on with the new events, as
    # one that had them from the start does.
    E = M.events
    events = E.LINE | E.RAISE | E.EXCEPTION_HANDLED | E.PY_UNWIND | E.PY_RETURN
    log: list = []
    turn_on = [True]

    def key(x: int) -> int:
        if x == 0:
            if turn_on[0]:
                M.set_events(tool.id, events)
            raise KeyError(x)
        return x

    caller = _raising_caller(kind, key)
    register_all(tool, ("LINE", "RAISE", "EXCEPTION_HANDLED", "PY_UNWIND", "PY_RETURN"),
                 [caller.__code__], log)

    def run() -> list:
        log.clear()
        try:
            caller()
        except KeyError:
            pass
        finally:
            tool.set_events(0)
        return [tuple(type(a).__name__ if isinstance(a, BaseException) else a for a in summary(e))
                for e in log]

    late = run()
    turn_on[0] = False
    tool.set_events(events)
    early = run()
    # From the RAISE on, the two agree.
    first_raise = next(i for i, e in enumerate(early) if e[0] == "RAISE")
    assert late == early[first_raise:]
    assert late[0][0] == "RAISE" and late[-1][0] == ("PY_UNWIND" if kind in ("finally", "no handler") else "PY_RETURN")


def _handlers(code: Any) -> bytes:
    """Where its exception handlers are: 3.10's SETUP_* instructions name them
    in its bytecode, 3.11+'s exception table."""
    return getattr(code, "co_exceptiontable", code.co_code)


def test_code_shows_its_own_exception_table_while_a_frame_waits(M: Any, tool: Tool) -> None:
    import dis

    seen: list = []

    def key(x: int) -> int:
        if x == 0:
            tool.set_events(M.events.LINE)
            seen.append((_handlers(caller.__code__), caller.__code__ == clone,
                         dis.Bytecode(caller).dis(), _handlers(caller.__code__.replace()),
                         _handlers(caller.__code__.replace(co_name="x"))))
        return x

    caller = _raising_caller("finally", key)
    clone = caller.__code__.replace()
    table = _handlers(caller.__code__)
    before = (table, True, dis.Bytecode(caller).dis(), table, table)
    tool.register(M.events.LINE, lambda code, line: None)
    try:
        caller()
    finally:
        tool.set_events(0)
    assert seen == [before]


# --------------------------------------------------------------------------
# Another thread turns LINE on for a hot loop that another tool instruments


@pytest.mark.parametrize("other_event", ["PY_RETURN", "BRANCH", "JUMP", "CALL"])
def test_line_reaches_a_loop_already_instrumented_for_another_tool(
    M: Any, make_tool: Callable[..., Tool], other_event: str
) -> None:
    E = M.events
    tool = make_tool(3)
    other = make_tool(4, "other")
    count = [0]
    stop = [False]
    limit = [sys.maxsize]
    first_line_at: list = []
    running = threading.Event()

    def spin() -> int:
        n = 0
        while not stop[0] and n < limit[0]:
            n += 1
            count[0] = n
            if n == 100:
                running.set()
        return n

    def on_line(code: Any, line: int) -> None:
        if code is spin.__code__ and not first_line_at:
            first_line_at.append(count[0])
            stop[0] = True

    tool.register(E.LINE, on_line)
    other.register(getattr(E, other_event), lambda *args: None)
    other.set_local(spin, getattr(E, other_event))
    thread = threading.Thread(target=spin)
    thread.start()
    try:
        assert running.wait(10)
        tool.set_local(spin, E.LINE)
        # Counted after the change: the loop may have reported its line
        # already, never before.
        enabled_at = count[0]
        # Natively the next instruction reports; give up after many more
        # iterations than that, so a miss fails rather than hangs.
        limit[0] = enabled_at + 100_000
    finally:
        if limit[0] == sys.maxsize:
            stop[0] = True  # something failed before the loop got its bound
        thread.join()
        tool.set_local(spin, 0)
        other.set_local(spin, 0)
    assert first_line_at, "the loop ran %d iterations without reporting LINE" % (count[0] - enabled_at)
    assert first_line_at[0] - enabled_at <= 10


# --------------------------------------------------------------------------
# A generator or coroutine that waits for its subiterator in `yield from` or
# `await` when the events come: natively its next yield through the loop
# reports PY_YIELD (the loop's YIELD_VALUE is instrumented in place).  The
# events of the generators' own lines are left out: 3.13.0 re-reports the
# delegating line after an inner yield.

def _waiting_events(M: Any) -> int:
    E = M.events
    return E.PY_YIELD | E.PY_RESUME | E.PY_RETURN | E.STOP_ITERATION


def _delegation_log(tool: Tool, codes: list) -> list:
    log: list = []
    register_all(tool, ("PY_YIELD", "PY_RESUME", "PY_RETURN", "STOP_ITERATION"), codes, log)
    return log


def _turn_on(M: Any, tool: Tool, how: str, codes: list) -> None:
    if how == "global":
        M.set_events(tool.id, _waiting_events(M))
    else:
        for code in codes:
            tool.set_local(code, _waiting_events(M))


@pytest.mark.parametrize("beside", [None, "PY_START", "PY_RESUME"])
@pytest.mark.parametrize("how", ["global", "local"])
def test_yield_from_waiting_when_events_come_reports_its_next_yield(
        M: Any, make_tool: Callable[..., Tool], how: str, beside: str) -> None:
    # Beside another tool's events the delegating frame runs an instrumented
    # copy of its code on the engine, without PY_YIELD.
    tool = make_tool(3)
    if beside is not None:
        other = make_tool(4, "other")
        other.register(getattr(M.events, beside), lambda *args: None)
        other.set_events(getattr(M.events, beside))

    def inner() -> Any:
        yield 1
        _turn_on(M, tool, how, [inner.__code__, outer.__code__])
        yield 2
        return "r"

    def outer() -> Any:
        x = yield from inner()
        return x

    log = _delegation_log(tool, [inner.__code__, outer.__code__])
    try:
        assert list(outer()) == [1, 2]
    finally:
        tool.set_events(0)
        tool.set_local(inner, 0)
        tool.set_local(outer, 0)
    assert [e.compact() for e in log] == [
        ("PY_YIELD", "inner", 2),
        ("PY_YIELD", "outer", 2),
        ("PY_RESUME", "outer"),
        ("PY_RESUME", "inner"),
        ("PY_RETURN", "inner", "r"),
        ("STOP_ITERATION", "outer", "StopIteration"),
        ("PY_RETURN", "outer", "r"),
    ]


class _CountingIterator:
    """An iterator whose ``__next__`` (Python code, run from C by the
    delegating frame's loop) turns the events on at its second item."""

    def __init__(self, on_second: Callable[[], None]) -> None:
        self.n = 0
        self.on_second = on_second

    def __iter__(self) -> "_CountingIterator":
        return self

    def __next__(self) -> int:
        self.n += 1
        if self.n == 2:
            self.on_second()
        if self.n > 2:
            raise StopIteration
        return self.n


def test_yield_from_an_iterator_waiting_when_events_come(M: Any, tool: Tool) -> None:
    def outer() -> Any:
        yield from _CountingIterator(lambda: M.set_events(tool.id, _waiting_events(M)))
        return 0

    log = _delegation_log(tool, [outer.__code__])
    try:
        assert list(outer()) == [1, 2]
    finally:
        tool.set_events(0)
    # Natively a SEND on an iterator that is not a generator reports no
    # STOP_ITERATION (its __next__ raised the exception, not a return).
    assert [e.compact() for e in log if e.name != "STOP_ITERATION"] == [
        ("PY_YIELD", "outer", 2),
        ("PY_RESUME", "outer"),
        ("PY_RETURN", "outer", 0),
    ]


def test_yield_from_with_no_inline_cache_near_waiting_when_events_come(M: Any, tool: Tool) -> None:
    # The engine's trampoline for the loop goes in the inline cache of
    # another instruction: `relay` has none, and goes on in its original
    # until it is next suspended when events change (ENGINE.md).
    def inner() -> Any:
        yield 1
        M.set_events(tool.id, _waiting_events(M))
        yield 2

    def relay(it: Any) -> Any:
        yield from it

    log = _delegation_log(tool, [relay.__code__])
    try:
        assert list(relay(inner())) == [1, 2]
    finally:
        tool.set_events(0)
    natively = [("PY_YIELD", "relay", 2), ("PY_RESUME", "relay"),
                ("STOP_ITERATION", "relay", "StopIteration"), ("PY_RETURN", "relay", None)]
    assert [e.compact() for e in log] == (natively if sys.version_info[:2] != (3, 11) else [])


class _Box:
    value = 7


def _inner_turning_on(M: Any, tool: Tool) -> Any:
    yield 1
    M.set_events(tool.id, _waiting_events(M))
    yield 2
    return "r"


_AFTER_THE_LOOP = [
    ("PY_YIELD", "outer", 2),
    ("PY_RESUME", "outer"),
    ("STOP_ITERATION", "outer", "StopIteration"),
    ("PY_RETURN", "outer", ("r", 7)),
]


def test_yield_from_with_inline_caches_only_after_the_loop_waiting_when_events_come(
        M: Any, tool: Tool) -> None:
    # `outer` has no instruction with an inline cache before its loop: on the
    # engine the trampoline goes in the cache of the attribute access after
    # it, which the loop's YIELD_VALUE reaches by a forward jump.
    def outer(it: Any, box: Any) -> Any:
        x = yield from it
        y = x
        return (y, box.value)

    log = _delegation_log(tool, [outer.__code__])
    try:
        assert list(outer(_inner_turning_on(M, tool), _Box())) == [1, 2]
    finally:
        tool.set_events(0)
    assert [e.compact() for e in log] == _AFTER_THE_LOOP


def test_yield_from_whose_only_inline_cache_is_under_the_exit_trampoline(
        M: Any, tool: Tool) -> None:
    # The engine's trampoline where the loop exits (STORE_FAST x and the
    # next three units) covers the attribute access, the only instruction
    # with an inline cache: no room for the YIELD_VALUE's trampoline, and
    # the frame is reached only when the subiterator ends (ENGINE.md).
    def outer(it: Any, box: Any) -> Any:
        x = yield from it
        return (x, box.value)

    log = _delegation_log(tool, [outer.__code__])
    try:
        assert list(outer(_inner_turning_on(M, tool), _Box())) == [1, 2]
    finally:
        tool.set_events(0)
    assert [e.compact() for e in log] == (
        _AFTER_THE_LOOP if sys.version_info[:2] != (3, 11) else [("PY_RETURN", "outer", ("r", 7))])


def test_recursive_yield_from_waiting_when_events_come(M: Any, tool: Tool) -> None:
    # Every frame of the code waits in the same loop.
    def walk(n: int) -> Any:
        if n == 0:
            M.set_events(tool.id, _waiting_events(M))
            yield "leaf"
            return
        yield from walk(n - 1)

    log = _delegation_log(tool, [walk.__code__])
    try:
        assert list(walk(2)) == ["leaf"]
    finally:
        tool.set_events(0)
    assert [e.compact() for e in log] == (
        [("PY_YIELD", "walk", "leaf")] * 3 + [("PY_RESUME", "walk")] * 3 +
        [("PY_RETURN", "walk", None), ("STOP_ITERATION", "walk", "StopIteration")] * 2 +
        [("PY_RETURN", "walk", None)])


def test_await_waiting_when_events_come_reports_its_next_yield(M: Any, tool: Tool) -> None:
    @types.coroutine
    def suspend(value: Any) -> Any:
        return (yield value)

    async def inner() -> str:
        await suspend(1)
        M.set_events(tool.id, _waiting_events(M))
        got = await suspend(2)
        return got

    async def outer() -> str:
        v = await inner()
        return v + "!"

    log = _delegation_log(tool, [inner.__code__, outer.__code__])
    coro = outer()
    try:
        assert coro.send(None) == 1
        assert coro.send(None) == 2
        with pytest.raises(StopIteration) as info:
            coro.send("in")
    finally:
        tool.set_events(0)
    assert info.value.value == "in!"
    assert [e.compact() for e in log] == [
        ("PY_YIELD", "inner", 2),
        ("PY_YIELD", "outer", 2),
        ("PY_RESUME", "outer"),
        ("PY_RESUME", "inner"),
        ("STOP_ITERATION", "inner", "StopIteration"),
        ("PY_RETURN", "inner", "in"),
        ("STOP_ITERATION", "outer", "StopIteration"),
        ("PY_RETURN", "outer", "in!"),
    ]


def test_yield_from_suspended_when_events_come(M: Any, tool: Tool) -> None:
    # Suspended, not waiting: the frame is not executing, and moves.
    def inner() -> Any:
        yield 1
        yield 2

    def outer() -> Any:
        yield from inner()

    log = _delegation_log(tool, [inner.__code__, outer.__code__])
    gen = outer()
    try:
        assert next(gen) == 1
        tool.set_events(_waiting_events(M))
        assert list(gen) == [2]
    finally:
        tool.set_events(0)
    assert [e.compact() for e in log] == [
        ("PY_RESUME", "outer"),
        ("PY_RESUME", "inner"),
        ("PY_YIELD", "inner", 2),
        ("PY_YIELD", "outer", 2),
        ("PY_RESUME", "outer"),
        ("PY_RESUME", "inner"),
        ("PY_RETURN", "inner", None),
        ("STOP_ITERATION", "outer", "StopIteration"),
        ("PY_RETURN", "outer", None),
    ]


OLDER_GENERATORS = """\
import json, sys

def inner(turn_on):
    yield 1
    if turn_on:
        turn_on()
    yield 2

def outer(it):
    yield from it
    return sys.hexversion

older = outer(inner(0))
assert next(older) == 1
if sys.version_info < (3, 12):
    import lowimpact
    lowimpact.install()
M = sys.monitoring
log = []
M.use_tool_id(3, "t")
M.register_callback(3, M.events.PY_YIELD, lambda code, offset, value: log.append([code.co_name, value]))
newer = outer(inner(lambda: M.set_events(3, M.events.PY_YIELD)))
assert list(newer) == [1, 2]
assert list(older) == [2]
M.set_events(3, 0)
print(json.dumps(log))
"""


def test_generators_from_before_the_import_resume_where_they_were(tmp_path: Any) -> None:
    # Generators created before lowimpact's import have no spare stack
    # slots: on the engine those that need more for a shadow stay on their
    # original code when events come (`older`, whose `yield from` is at its
    # deepest stack).  They must go on where they were: the entry trampoline
    # of `inner` would cover where the older `inner` goes on after `yield 1`,
    # and the trampoline of the `yield from` loop, for `newer`, would take
    # `older` past the end of its stack.
    import lowimpact

    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(lowimpact.__file__)))
    (tmp_path / "older.py").write_text(OLDER_GENERATORS)
    done = subprocess.run([sys.executable, "older.py"], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    log = json.loads(done.stdout)
    natively = [["inner", 2], ["outer", 2], ["inner", 2], ["outer", 2]]
    # On the 3.11 engine the older generators go on without the events, and
    # so does `newer`'s delegating frame, whose loop `older` shares (3.10
    # reaches running frames another way).
    assert log == (natively if sys.version_info[:2] != (3, 11) else [["inner", 2]])


def test_callee_callback_reaches_a_waiting_frame_while_another_is_reached(
    M: Any, tool: Tool
) -> None:
    # This frame gets LINE as it runs (the 3.10 back end reaches it, and the
    # thread's trace hook is the engine's from then on); then a callee's
    # callback gives LINE to `work`, which waits in a call below it.
    def helper(i: int) -> int:
        return i * 2

    def work(n: int) -> int:
        total = 0
        for i in range(n):
            total += helper(i)
            total += 1
        return total

    first = work.__code__.co_firstlineno
    lines: list = []

    def line(code: Any, number: int) -> Any:
        if code is helper.__code__:
            M.set_local_events(tool.id, work.__code__, M.events.LINE)
            return M.DISABLE
        if code is work.__code__:
            lines.append(number - first)
        return None

    tool.register(M.events.LINE, line)
    here = sys._getframe().f_code
    M.set_local_events(tool.id, here, M.events.LINE)
    M.set_local_events(tool.id, helper.__code__, M.events.LINE)
    try:
        assert work(3) == 9
    finally:
        for code in (here, helper.__code__, work.__code__):
            M.set_local_events(tool.id, code, 0)
    assert lines == [4, 2, 3, 4, 2, 3, 4, 2, 5]
