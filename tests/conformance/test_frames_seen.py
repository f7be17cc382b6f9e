"""What callbacks and other Python code see of monitored frames and functions.

In a callback, ``sys._getframe(1)`` is the monitored frame, positioned as
natively: at a CALL, C_RETURN or C_RAISE its ``f_lasti`` is the event's
offset (the call instruction); at EXCEPTION_HANDLED it is still where the
exception was raised (``f_lasti`` the raising instruction, ``f_lineno`` its
line), as the RAISE callback saw it, although the event's offset is the
handler's.  And the garbage collector's view of functions and their code is
the plain one while a tool has events on them.
"""

from __future__ import annotations

import gc
import sys
import threading
import traceback
import weakref
from typing import Any, Callable

import pytest

from lowimpact._lines import co_lines

from .helpers import (Tool, next_instruction_offset, offset_of, offsets_of, resume_offset, start_lasti,
                      traceback_entries)

CALL_OPNAMES = ("CALL", "CALL_KW", "CALL_FUNCTION_EX", "CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_METHOD")


def _python_callee(x: Any = None) -> Any:
    return x


def _raising_callee() -> None:
    raise KeyError("callee")


def test_call_events_see_f_lasti_at_the_call(M: Any, tool: Tool) -> None:
    E = M.events

    class K:
        def method(self, x: int) -> int:
            return x

    def f() -> Any:
        a = _python_callee(1)
        b = len([a, a])
        c = K().method(b)
        try:
            int("x")
        except ValueError:
            pass
        return max(a, b, c)

    seen: list = []

    def make(name: str) -> Callable[..., Any]:
        def callback(code: Any, offset: int, callable_: Any, arg0: Any) -> None:
            if code is f.__code__:
                frame = sys._getframe(1)
                seen.append((name, offset, frame.f_lasti, frame.f_code is code))
        return callback

    for name in ("CALL", "C_RETURN", "C_RAISE"):
        tool.register(getattr(E, name), make(name))
    tool.set_events(E.CALL | E.C_RETURN | E.C_RAISE)
    try:
        assert f() == 2
    finally:
        tool.set_events(0)
    assert [name for name, *_ in seen] == [
        "CALL",                   # _python_callee
        "CALL", "C_RETURN",       # len
        "CALL", "C_RETURN",       # K()
        "CALL",                   # method
        "CALL", "C_RAISE",        # int("x")
        "CALL", "C_RETURN",       # max
    ]
    assert sorted({offset for _, offset, _, _ in seen}) == offsets_of(f, *CALL_OPNAMES)
    assert [(name, offset, offset, True) for name, offset, _, _ in seen] == seen


def _raising_function() -> None:
    try:
        x = 1
        raise KeyError(x)
    except KeyError:
        pass
    try:
        _raising_callee()
    except KeyError:
        pass
    try:
        open("/nonexistent directory/file")
    except OSError:
        pass
    try:
        x = x // 0
    except ZeroDivisionError:
        pass


def test_exception_handled_sees_the_raising_instruction_and_line(M: Any, tool: Tool) -> None:
    E = M.events
    f = _raising_function
    seen: list = []

    def make(name: str) -> Callable[..., Any]:
        # Nothing here may raise: an exception from an EXCEPTION_HANDLED
        # callback re-enters the same handler (research §5.4).
        def callback(code: Any, offset: int, exc: Any) -> None:
            if code is f.__code__:
                frame = sys._getframe(1)
                seen.append((name, frame.f_lasti, frame.f_lineno))
        return callback

    tool.register(E.RAISE, make("RAISE"))
    tool.register(E.EXCEPTION_HANDLED, make("EXCEPTION_HANDLED"))
    tool.set_events(E.RAISE | E.EXCEPTION_HANDLED)
    try:
        f()
    finally:
        tool.set_events(0)
    first = f.__code__.co_firstlineno
    calls = offsets_of(f, *CALL_OPNAMES)
    raising = [
        (offset_of(f, "RAISE_VARARGS"), first + 3),
        (calls[1], first + 7),        # _raising_callee()
        (calls[2], first + 11),       # open(...)
        (offset_of(f, "BINARY_OP", "BINARY_FLOOR_DIVIDE"), first + 15),  # 3.10: its own opcode
    ]
    assert [name for name, _, _ in seen] == ["RAISE", "EXCEPTION_HANDLED"] * len(raising)
    # EXCEPTION_HANDLED sees the frame exactly as RAISE saw it ...
    assert seen[1::2] == [("EXCEPTION_HANDLED", lasti, line) for _, lasti, line in seen[0::2]]
    # ... on the raising line, at the raising instruction (3.12 points
    # f_lasti into the inline caches of a CALL whose Python callee raised).
    assert [line for _, _, line in seen[0::2]] == [line for _, line in raising]
    for (_, lasti, _), (start, _) in zip(seen[0::2], raising):
        assert start <= lasti < next_instruction_offset(f, start)


# --------------------------------------------------------------------------
# The garbage collector's view


def _gc_view(f: Callable[..., Any]) -> tuple:
    return (f in gc.get_referrers(f.__code__), f.__code__ in gc.get_referents(f))


@pytest.mark.parametrize("events", ["local LINE", "global PY_START", "global LINE"])
def test_gc_sees_functions_and_their_code(M: Any, tool: Tool, events: str) -> None:
    E = M.events

    def f(x: int) -> int:
        return x + 1

    tool.register(E.LINE, lambda code, line: None)
    tool.register(E.PY_START, lambda code, offset: None)
    if events == "local LINE":
        tool.set_local(f, E.LINE)
    else:
        tool.set_events(E.PY_START if events == "global PY_START" else E.LINE)
    try:
        before = _gc_view(f)
        assert f(1) == 2
        after_a_call = _gc_view(f)
    finally:
        tool.set_events(0)
        tool.set_local(f, 0)
    assert (before, after_a_call) == ((True, True), (True, True))


START_SOURCE = '''
def plain(a, b=2):
    total = a + b
    return total

def outer(x):
    def closure(y):
        return x + y
    return closure
'''


def _fresh_functions() -> dict:
    """Functions of code that has never run, so that nothing is prepared for it."""
    namespace: dict = {"__name__": "fresh"}
    exec(compile(START_SOURCE, "<start-before-shadow>", "exec"), namespace)
    return namespace


def test_py_start_sees_the_frame_at_its_resume(M: Any, tool: Tool) -> None:
    """At its first PY_START a function's frame is the callback's caller,
    standing at its RESUME on its def line (3.10: see start_lasti), below it the frame that called
    it; after a DISABLE it runs as before, and restart_events() brings its
    PY_START back, seen the same way."""
    E = M.events
    ns = _fresh_functions()
    plain, closure = ns["plain"], ns["outer"](10)
    seen: list = []

    def on_start(code: Any, offset: int) -> Any:
        if code in (plain.__code__, closure.__code__):
            frame = sys._getframe(1)
            seen.append((code.co_name, offset, frame.f_code is code, frame.f_lasti,
                         frame.f_lineno - code.co_firstlineno, frame.f_back.f_code.co_name,
                         frame.f_globals is ns))
        return M.DISABLE

    def calls() -> list:
        return [plain(1), plain(1, b=5), closure(3), closure(4)]

    tool.register(E.PY_START, on_start)
    tool.set_events(E.PY_START)
    try:
        results = calls()
        M.restart_events()
        results += calls()
    finally:
        tool.set_events(0)
    assert results == [3, 6, 13, 14] * 2
    view = [(code.__name__, resume_offset(code), True, start_lasti(code), 0, "calls", True)
            for code in (plain, closure)]
    assert seen == view * 2


@pytest.mark.parametrize("events", ["PY_START", "PY_START LINE"])
def test_py_start_under_a_trace_function_sees_the_def_line(M: Any, tool: Tool, events: str) -> None:
    """With a sys.settrace function the frame shows the line of its last
    line event (3.9 keeps it in the frame): PY_START still sees the def
    line, also where the body's first line event came before its probe."""
    E = M.events
    ns = _fresh_functions()
    plain = ns["plain"]
    seen: list = []

    def on_start(code: Any, offset: int) -> None:
        if code is plain.__code__:
            seen.append(sys._getframe(1).f_lineno - code.co_firstlineno)

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        return tracer

    tool.register(E.PY_START, on_start)
    tool.register(E.LINE, lambda *args: None)
    tool.set_events(E.PY_START | (E.LINE if "LINE" in events else 0))
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        results = [plain(1), plain(2)]
    finally:
        sys.settrace(previous)
        tool.set_events(0)
    assert results == [3, 4]
    assert seen == [0, 0]


def _entries_when_py_start_raises(M: Any, tool: Tool, code: Any, run: Callable[[], Any]) -> list:
    """The traceback entries (name, line relative to the def, tb_lasti) of
    the KeyError a PY_START callback raises as `code` starts in run()."""
    def on_start(started: Any, offset: int) -> Any:
        if started is code:
            raise KeyError("start")
        return M.DISABLE

    tool.register(M.events.PY_START, on_start)
    tool.set_events(M.events.PY_START)
    try:
        with pytest.raises(KeyError) as caught:
            run()
    finally:
        tool.set_events(0)
    return [(tb.tb_frame.f_code.co_name, tb.tb_lineno - tb.tb_frame.f_code.co_firstlineno,
             tb.tb_lasti) for tb in traceback_entries(caught.value.__traceback__)]


def test_py_start_callback_raising_at_a_first_call(M: Any, tool: Tool) -> None:
    """A PY_START callback that raises as a function first starts: the
    exception leaves the function, whose traceback entry is its def line."""
    plain = _fresh_functions()["plain"]
    entries = _entries_when_py_start_raises(M, tool, plain.__code__, lambda: plain(1))
    assert entries[2:] == [("plain", 0, resume_offset(plain)), ("on_start", 2, entries[3][2])]
    assert plain(1) == 3


def test_py_start_callback_raising_under_a_trace_function(M: Any, tool: Tool) -> None:
    """The same with a sys.settrace function, whose frames keep the line of
    their last line event on 3.9, which their traceback entries take."""
    plain = _fresh_functions()["plain"]

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        entries = _entries_when_py_start_raises(M, tool, plain.__code__, lambda: plain(1))
    finally:
        sys.settrace(previous)
    assert [entry[:2] for entry in entries[2:]] == [("plain", 0), ("on_start", 2)]


def test_py_start_callback_raising_as_a_generator_first_runs(M: Any, tool: Tool) -> None:
    """The same for a generator's first next(): its traceback entry is on
    its def line, at the PY_START offset; the generator is finished."""
    ns: dict = {}
    exec(compile("def gen(a):\n    yield a\n    yield a + 1\n", "<gen-start>", "exec"), ns)
    gen = ns["gen"]
    g = gen(1)
    entries = _entries_when_py_start_raises(M, tool, gen.__code__, lambda: next(g))
    assert entries[2] == ("gen", 0, resume_offset(gen))
    assert (list(g), list(gen(5))) == ([], [5, 6])


@pytest.mark.parametrize("local", [0, "LINE"])
def test_trace_and_profile_see_a_first_call_after_py_start(M: Any, tool: Tool, local: Any) -> None:
    """A function's first PY_START (the callback disables it, or asks for
    LINE events of the code) does not take the sys.settrace function's and
    the sys.setprofile function's call event away: every call is traced
    whole, from the first."""
    E = M.events
    plain = _fresh_functions()["plain"]
    traced: list = []

    def on_start(code: Any, offset: int) -> Any:
        if code is plain.__code__ and local:
            tool.set_local(code, getattr(E, local))
        return M.DISABLE

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is plain.__code__ and event in ("call", "return"):
            traced.append(event)
        return tracer

    def profiler(frame: Any, event: str, arg: Any) -> None:
        if frame.f_code is plain.__code__:
            traced.append("profile " + event)

    tool.register(E.PY_START, on_start)
    tool.set_events(E.PY_START)
    sys.settrace(tracer)
    sys.setprofile(profiler)
    try:
        results = [plain(1), plain(2)]
    finally:
        sys.settrace(None)
        sys.setprofile(None)
        tool.set_events(0)
        tool.set_local(plain, 0)
    assert results == [3, 4]
    assert traced == ["call", "profile call", "return", "profile return"] * 2
FIRST_UNITS_SOURCE = '''
def helper(x):
    return x + 1

def loop_first(items):
    for x in items:
        total = helper(x)
    return total

def try_first(x):
    try:
        y = helper(x)
    except TypeError:
        y = None
    return helper(y)
'''


@pytest.mark.parametrize("pattern", ["global", "coverage"])
def test_code_that_loops_or_tries_first_starts_as_natively(M: Any, tool: Tool, pattern: str) -> None:
    """Functions whose first units a loop jumps back to, or a try block
    covers, report PY_START and their lines from the first call, under
    PY_START and LINE everywhere and under the coverage pattern (LINE asked
    for from PY_START, then DISABLE)."""
    E = M.events
    namespace: dict = {}
    exec(compile(FIRST_UNITS_SOURCE, "<first-units>", "exec"), namespace)
    mine = {namespace[name].__code__: name for name in ("loop_first", "try_first")}
    seen: list = []

    def on_start(code: Any, offset: int) -> Any:
        if code in mine:
            seen.append(("start", mine[code]))
            if pattern == "coverage":
                tool.set_local(code, E.LINE)
        return M.DISABLE if pattern == "coverage" else None

    def on_line(code: Any, line: int) -> Any:
        if code in mine:
            seen.append(("line", mine[code], line - code.co_firstlineno))
        return M.DISABLE if pattern == "coverage" else None

    tool.register(E.PY_START, on_start)
    tool.register(E.LINE, on_line)
    tool.set_events(E.PY_START | (E.LINE if pattern == "global" else 0))
    try:
        results = [namespace["loop_first"]([1, 2]), namespace["try_first"](1)]
    finally:
        tool.set_events(0)
        for code in mine:
            tool.set_local(code, 0)
    assert results == [3, 3]
    assert seen == [
        ("start", "loop_first"), ("line", "loop_first", 1), ("line", "loop_first", 2),
        ("line", "loop_first", 1), ("line", "loop_first", 2), ("line", "loop_first", 1),
        ("line", "loop_first", 3),
        ("start", "try_first"), ("line", "try_first", 1), ("line", "try_first", 2),
        ("line", "try_first", 5),
    ] if pattern == "global" else [
        ("start", "loop_first"), ("line", "loop_first", 1), ("line", "loop_first", 2),
        ("line", "loop_first", 3),
        ("start", "try_first"), ("line", "try_first", 1), ("line", "try_first", 2),
        ("line", "try_first", 5),
    ]


def test_a_loop_first_function_waiting_in_a_call_as_events_go_on(M: Any, tool: Tool) -> None:
    """A function whose loop comes first calls, from the first instruction
    with a large inline cache, a C callable whose Python callback turns
    PY_START on: new functions of its code, and its later calls, report
    PY_START, as natively."""
    import functools
    import types

    E = M.events
    namespace: dict = {}
    exec(compile("def X(f, items):\n    for x in items:\n        f(x)\n    return 1\n",
                 "<waiting>", "exec"), namespace)
    X = namespace["X"]
    starts: list = []

    def hook(x: Any) -> None:
        if x == "on":
            tool.set_events(E.PY_START)
            types.FunctionType(X.__code__, namespace)(len, ["1"])
            X(len, ["2"])

    tool.register(E.PY_START, lambda code, offset: starts.append(code.co_name)
                  if code is X.__code__ else None)
    try:
        X(functools.partial(hook), ["a", "on", "b"])
        X(len, ["3"])
    finally:
        tool.set_events(0)
    assert starts == ["X", "X", "X"]


TRACED_SOURCE = '''
def plain(a):
    b = a + 1
    c = b * 2
    return c

def loop_first(a):
    for i in range(a):
        a += i
    return a

def gen(a):
    yield a
    yield a + 1

def calls_gen(a):
    return list(gen(a))
'''


def _traced_run(M: Any, tool: Tool, events: str, opcodes: bool) -> list:
    """What a sys.settrace function sees of two calls of each function of
    TRACED_SOURCE, first run now, under `events` ("coverage": PY_START, and
    from its callback LINE for the code that starts).  Opcode events are
    left out: f_trace_opcodes sees probes (docs/ENGINE.md)."""
    E = M.events
    namespace: dict = {"__name__": "traced"}
    exec(compile(TRACED_SOURCE, "<traced>", "exec"), namespace)
    functions = [namespace[name] for name in ("plain", "loop_first", "calls_gen")]
    codes = {f.__code__ for f in functions} | {namespace["gen"].__code__}
    seen: list = []

    def on_start(code: Any, offset: int) -> Any:
        if events == "coverage":
            tool.set_local(code, E.LINE)
        return M.DISABLE

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code in codes:
            frame.f_trace_opcodes = opcodes
            if event != "opcode":
                seen.append((frame.f_code.co_name, event, frame.f_lasti, frame.f_lineno))
        return tracer

    tool.register(E.LINE, lambda code, line: None)
    tool.register(E.PY_START, on_start)
    wanted = {"none": 0, "start": E.PY_START, "start_line": E.PY_START | E.LINE,
              "line": E.LINE, "coverage": E.PY_START}[events]
    tool.set_events(wanted)
    sys.settrace(tracer)
    try:
        for f in functions:
            f(2)
            f(3)
    finally:
        sys.settrace(None)
        tool.set_events(0)
        for code in codes:
            tool.set_local(code, 0)
    return seen


@pytest.mark.parametrize("opcodes", [False, True])
@pytest.mark.parametrize("events", ["start", "start_line", "line", "coverage"])
def test_trace_function_sees_the_first_line_once_where_it_is(M: Any, tool: Tool, events: str,
                                                           opcodes: bool) -> None:
    """A sys.settrace function sees a function's first line once, at its
    first instruction after RESUME, whatever the monitoring: the engine
    used to report it at the PY_START probe (f_lasti 0), and under the
    coverage pattern (or any PY_START whose callback asks for LINE) a
    second time where the frame landed."""
    assert _traced_run(M, tool, events, opcodes) == _traced_run(M, tool, "none", opcodes)


WAITING_SOURCE = '''
import sys

def key(v):
    turn_on(sys._getframe(1))
    return v

def wrap(x):
    return x

def in_a_call():
    y = sorted([2, 1], key=key)
    for x in range(2):
        y.append(x)
    return y

def next_line_after_the_call():
    y = wrap(
        sorted([2, 1], key=key))
    return y

def in_a_loop():
    total = 0
    for v in sorted([2, 1], key=key):
        total += v
    return total

class Turning:
    """Turns events on in __iter__ (at < 0) or in its at-th __next__."""
    def __init__(self, at):
        self.at = at
        self.n = 0
    def __iter__(self):
        if self.at < 0:
            turn_on(sys._getframe(1))
        return self
    def __next__(self):
        if self.n == self.at:
            turn_on(sys._getframe(1))
        self.n += 1
        if self.n > 2:
            raise StopIteration
        return self.n

def in_iter():
    total = 0
    for v in Turning(-1):
        total += v
    return total

def in_first_next():
    total = 0
    for v in Turning(0):
        total += v
    return total

def in_last_next():
    total = 0
    for v in Turning(2):
        total += v
    return total
'''


@pytest.mark.parametrize("opcodes", [False, True])
@pytest.mark.parametrize("name", ["in_a_call", "next_line_after_the_call", "in_a_loop",
                                  "in_iter", "in_first_next", "in_last_next"])
@pytest.mark.parametrize("events", ["LINE", "PY_START", "INSTRUCTION", "CALL", "JUMP"])
def test_trace_function_sees_no_line_at_a_trampoline(M: Any, tool: Tool, events: str,
                                                     name: str, opcodes: bool) -> None:
    """A traced frame that waits in a call (sorted(key=)) as events go on
    sees the line events of an unmonitored run: none where, on the engine,
    a jump takes it back into the trampoline in its call's inline cache
    (inline-cache offsets), nor where it lands in the line it was in (the
    landing pad's jump back; also from a trampoline armed in place at the
    loop's FOR_ITER, which a frame waiting in a Python __iter__ or
    __next__ falls into).  Opcode events are left out: f_trace_opcodes
    sees a trampoline's units (docs/ENGINE.md)."""
    E = M.events

    def run(wanted: int) -> list:
        namespace: dict = {"__name__": "waiting"}
        exec(compile(WAITING_SOURCE, "<waiting>", "exec"), namespace)
        function = namespace[name]
        on = []

        def turn_on(frame: Any) -> None:
            if not on:
                on.append(True)
                tool.set_events(wanted)

        namespace["turn_on"] = turn_on
        seen: list = []

        def tracer(frame: Any, event: str, arg: Any) -> Any:
            if frame.f_code is function.__code__:
                frame.f_trace_opcodes = opcodes
                if event != "opcode":
                    seen.append((event, frame.f_lasti, frame.f_lineno))
            return tracer

        sys.settrace(tracer)
        try:
            function()
        finally:
            sys.settrace(None)
            tool.set_events(0)
        return seen

    for event in (E.LINE, E.PY_START, E.INSTRUCTION, E.CALL, E.JUMP):
        tool.register(event, lambda *args: None)
    assert run(getattr(E, events)) == run(0)


DEEPEST_SOURCE = '''
def deep():
    turn_on(sys._getframe(1))
    return 4

def at_the_deepest():
    a = 1
    x = (deep(), a,
         a, a)
    return x
'''


def _trace_later(name: str, before: Callable[[], None]) -> tuple:
    """Runs a fresh function `name` of WAITING_SOURCE + DEEPEST_SOURCE whose
    turn_on(frame) calls `before`, then sets a trace function on `frame`
    (with f_trace_opcodes) and on its thread: (its result, what the trace
    function saw of its frame, opcode events left out)."""
    namespace: dict = {"__name__": "traced_later"}
    exec(compile(WAITING_SOURCE + DEEPEST_SOURCE, "<traced_later>", "exec"), namespace)
    function = namespace[name]
    seen: list = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is function.__code__ and event != "opcode":
            seen.append((event, frame.f_lasti, frame.f_lineno))
        return tracer

    def turn_on(frame: Any) -> None:
        if seen or frame.f_trace is not None:
            return
        before()
        frame.f_trace = tracer
        frame.f_trace_opcodes = True
        sys.settrace(tracer)

    namespace["turn_on"] = turn_on
    try:
        return function(), seen
    finally:
        sys.settrace(None)


@pytest.mark.parametrize("name", ["in_iter", "in_first_next", "in_last_next", "in_a_call",
                                  "at_the_deepest"])
@pytest.mark.parametrize("events", ["LINE", "INSTRUCTION", "CALL", "JUMP"])
def test_trace_function_set_while_a_reached_frame_waits(M: Any, tool: Tool, events: str,
                                                        name: str) -> None:
    """Events go on, then a trace function comes, with f_trace and
    f_trace_opcodes on a frame that waits in a call: the frame goes on as
    unmonitored, and its trace function sees what it sees there (opcode
    events aside, see the test above).  On the engine such a frame (in a
    loop over a Python iterator, or waiting where its expression fills the
    stack, at_the_deepest) may have gone on into a trampoline or onto a
    shadow using the value slot after its allocation, where the trace
    function's frame starts: UNARY_POSITIVE saw a function (TypeError), or
    a probe popped the trace function (a crash)."""
    E = M.events

    def run(wanted: int) -> tuple:
        try:
            return _trace_later(name, lambda: tool.set_events(wanted))
        finally:
            tool.set_events(0)

    for event in (E.LINE, E.INSTRUCTION, E.CALL, E.JUMP):
        tool.register(event, lambda *args: None)
    plain = run(0)
    assert plain[1], "the trace function saw the frame"
    assert run(getattr(E, events)) == plain


@pytest.mark.parametrize("name", ["in_first_next", "in_a_call", "at_the_deepest"])
@pytest.mark.parametrize("events", ["LINE", "INSTRUCTION"])
def test_trace_function_set_in_a_thread_after_its_frame_was_reached(M: Any, tool: Tool,
                                                                    events: str,
                                                                    name: str) -> None:
    """The same with the events turned on by another thread while the frame
    waits, and the trace function set later by the frame's own thread."""
    E = M.events

    def run(wanted: int) -> list:
        waiting, go = threading.Event(), threading.Event()

        def wait_for_events() -> None:
            waiting.set()
            go.wait()

        outcome: list = []

        def target() -> None:
            try:
                outcome.append(_trace_later(name, wait_for_events))
            except BaseException as exc:   # reported by the main thread
                outcome.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        waiting.wait()
        tool.set_events(wanted)
        go.set()
        thread.join()
        tool.set_events(0)
        return outcome

    for event in (E.LINE, E.INSTRUCTION):
        tool.register(event, lambda *args: None)
    plain = run(0)
    assert plain[0][1], "the trace function saw the frame"
    assert run(getattr(E, events)) == plain


AUDIT_HOOK_PROGRAM = '''
import json
import sys

from lowimpact import monitoring as M

from traced_later import _trace_later

E = M.events
M.use_tool_id(3, "audit hook")
for event in (E.LINE, E.INSTRUCTION, E.CALL, E.JUMP):
    M.register_callback(3, event, lambda *args: None)
wanted = getattr(E, sys.argv[2])
asked = []


def hook(event, args):
    if event == "sys.settrace" and asked:
        asked.clear()
        M.set_events(3, wanted)


sys.addaudithook(hook)
results = []
for on in (False, True):
    try:
        results.append(repr(_trace_later(sys.argv[1], lambda: asked.append(on))))
    except Exception as exc:
        results.append(repr(exc))
    M.set_events(3, 0)
print(json.dumps(results))
'''


@pytest.mark.parametrize("name", ["in_first_next", "in_a_call", "at_the_deepest"])
@pytest.mark.parametrize("events", ["LINE", "INSTRUCTION", "JUMP"])
def test_trace_function_set_after_an_audit_hook_turned_events_on(tmp_path: Any, events: str,
                                                                 name: str) -> None:
    """The same with the events turned on by a Python audit hook on
    'sys.settrace' (sys.addaudithook: in a new interpreter), which runs after
    lowimpact's own hook, before CPython sets the trace function.  On the
    engine the frames it reached borrowed the slot after their allocation,
    as if their thread did not trace: UNARY_POSITIVE saw a function."""
    import json
    import os
    import subprocess

    import lowimpact

    import inspect

    (tmp_path / "traced_later.py").write_text(
        "from __future__ import annotations\nimport sys\n"
        f"WAITING_SOURCE = {WAITING_SOURCE!r}\nDEEPEST_SOURCE = {DEEPEST_SOURCE!r}\n"
        + inspect.getsource(_trace_later))
    (tmp_path / "prog.py").write_text(AUDIT_HOOK_PROGRAM)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(lowimpact.__file__)))
    done = subprocess.run([sys.executable, "prog.py", name, events], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    plain, monitored = json.loads(done.stdout)
    assert plain.startswith("(") and ", [(" in plain, "the trace function saw the frame: " + plain
    assert monitored == plain


TRACE_INSIDE_SOURCE = '''
def deep():
    turn_on()
    return 4

def wrap(x):
    mark(sys._getframe(1))
    return x

def key(v):
    start(sys._getframe(1))
    return v

def deepest():
    a = 1
    x = (deep(), wrap(a),
         a, wrap(a))
    return x

def deepest_in_c():
    a = 1
    deep()
    y = sorted([2, 1], key=key)
    x = (a, a, wrap(a))
    return x, y

class Starting:
    @property
    def on(self):
        start(sys._getframe(1))
        return 2

def deepest_after_an_attribute():
    a = 1
    deep()
    x = (Starting().on, a, wrap(a))
    return x
'''


def _trace_set_inside(name: str, tool: Tool, wanted: int, monitored: bool,
                      starts: tuple) -> tuple:
    """Runs function `name` of a fresh TRACE_INSIDE_SOURCE, whose functions call
    turn_on(), which turns `wanted` on for `tool` if `monitored`, and may
    call start(frame) or mark(frame), which set a trace function on the
    thread and on `frame` (if it is the function's), with f_trace_opcodes.
    Which of 'turn_on' (at the caller of the function that calls it),
    'mark' and 'callback' (the tool's callbacks, at the frame) start it is
    `starts`.  (Its result, what the trace function saw of the frame, opcode
    events left out, and the references to the trace function it left.)"""
    namespace: dict = {"__name__": "trace_set_inside", "sys": sys}
    exec(compile(TRACE_INSIDE_SOURCE, "<trace_set_inside>", "exec"), namespace)
    function = namespace[name]
    first_line = function.__code__.co_firstlineno
    seen: list = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is function.__code__ and event != "opcode":
            seen.append((event, frame.f_lineno - first_line))
        return tracer

    def start(frame: Any) -> None:
        if frame.f_code is function.__code__ and frame.f_trace is None:
            frame.f_trace = tracer
            frame.f_trace_opcodes = True
            sys.settrace(tracer)

    def turn_on() -> None:
        if monitored:
            tool.set_events(wanted)
        elif "turn_on" in starts:
            start(sys._getframe(2))

    def callback(code: Any, *args: Any) -> None:
        if "callback" in starts and code is function.__code__:
            start(sys._getframe(1))

    tool.register(wanted, callback)
    namespace.update(turn_on=turn_on, start=start,
                     mark=lambda frame: start(frame) if "mark" in starts else None)
    references = sys.getrefcount(tracer)
    try:
        result = function()
    finally:
        sys.settrace(None)
        tool.set_events(0)
    return result, seen, sys.getrefcount(tracer) - references


@pytest.mark.parametrize("events", ["INSTRUCTION", "CALL"])
def test_trace_function_set_by_a_callback_of_a_reached_frame(M: Any, tool: Tool,
                                                             events: str) -> None:
    """Events go on while a frame waits in a call; when it goes on, the
    first callback of its events sets a trace function, with f_trace and
    f_trace_opcodes on the frame, which then fills its stack: the trace
    function sees what it sees when the same is done at the same point
    without monitoring.  On the engine the frame, reached while running,
    may have gone on onto a shadow using the value slot after its
    allocation; it waits in the probe's call as the trace function comes,
    where it cannot move, and its next probe at the deepest stack met the
    trace function's frame there: the probe popped the trace function (a
    reference lost, its event lost), and later a crash."""
    wanted = getattr(M.events, events)
    # Unmonitored, as the first instruction after the call, or the first call.
    plain = _trace_set_inside("deepest", tool, wanted, False,
                              ("turn_on",) if events == "INSTRUCTION" else ("mark",))
    assert plain[1], "the trace function saw the frame"
    assert _trace_set_inside("deepest", tool, wanted, True, ("callback",)) == plain


@pytest.mark.parametrize("name", ["deepest_in_c", "deepest_after_an_attribute"])
@pytest.mark.parametrize("events", ["INSTRUCTION", "CALL"])
def test_trace_function_set_while_a_reached_frame_waits_in_c(M: Any, tool: Tool,
                                                             events: str, name: str) -> None:
    """Events go on while a frame waits in a call, and it goes on; then a
    function that C code (sorted's key, a property) calls for it sets a
    trace function, with f_trace and f_trace_opcodes on the frame, which
    then fills its stack: the trace function sees what it sees without
    monitoring.  On the engine the frame may run a shadow using the value
    slot after its allocation; it waits in C as the trace function comes,
    where it cannot move, and its probe at the deepest stack met the trace
    function's frame there (a crash; after a property, the first probe that
    fires after the call is that one)."""
    wanted = getattr(M.events, events)
    plain = _trace_set_inside(name, tool, wanted, False, ())
    assert plain[1], "the trace function saw the frame"
    assert _trace_set_inside(name, tool, wanted, True, ()) == plain


def _traced_with_call_events(M: Any, tool: Tool, source: str, name: str, opcodes: bool,
                             monitored: bool, *args: Any, **names: Any) -> tuple:
    """Calls function `name` of a fresh `source` with `args` in a thread that
    traces (f_trace_opcodes as `opcodes` on every frame); its turn_on()
    turns CALL events on for `tool` if `monitored`; `names` go in its
    globals.  Its result (or the traceback entries below this one of the
    KeyError it raised: function name, line relative to the function's),
    what the trace function saw of the function's frames (event, relative
    line, the frame's `n`; opcode events left out), and the CALL events of
    its code (relative line, callee name)."""
    E = M.events
    namespace: dict = {"__name__": "traced_calls", **names}
    exec(compile(source, "<traced_calls>", "exec"), namespace)
    function = namespace[name]
    first_line = function.__code__.co_firstlineno
    seen: list = []
    calls: list = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = opcodes
        if frame.f_code is function.__code__ and event != "opcode":
            seen.append((event, frame.f_lineno - first_line, frame.f_locals.get("n")))
        return tracer

    def callback(code: Any, offset: int, called: Any, arg0: Any) -> None:
        if code is function.__code__:
            line = next(line for start, end, line in co_lines(code) if start <= offset < end)
            calls.append((line - first_line, called.__name__))

    def turn_on() -> None:
        if monitored:
            tool.set_events(E.CALL)
        if names.get("ending") == "trace_off":
            sys.settrace(None)

    tool.register(E.CALL, callback)
    namespace["turn_on"] = turn_on
    sys.settrace(tracer)
    try:
        result = function(*args)
    except KeyError as error:
        result = [(entry.name, entry.lineno - first_line)
                  for entry in traceback.extract_tb(error.__traceback__)][1:]
    finally:
        sys.settrace(None)
        tool.set_events(0)
    return result, seen, calls


TRACED_DEEPEST_SOURCE = '''
def deep():
    turn_on()
    return 4

def wrap(x):
    return x

class Turning:
    @property
    def on(self):
        turn_on()
        return 5

def deepest():
    a = 1
    x = (deep(), a, a, wrap(a))
    y = (a, a, a, wrap(a))
    return x, y

def deepest_attribute():
    a = 1
    x = (a, a, Turning().on)
    y = (a, a, a, wrap(a))
    return x, y
'''


@pytest.mark.parametrize("name", ["deepest", "deepest_attribute"])
@pytest.mark.parametrize("opcodes", [False, True])
def test_frame_of_a_traced_thread_reached_at_its_deepest(M: Any, tool: Tool, name: str,
                                                         opcodes: bool) -> None:
    """A thread traces (sys.settrace, with or without f_trace_opcodes) and
    events go on while one of its frames waits in a call (Python, or a
    property from C): the frame gets its CALL events at its deepest stack,
    as natively, and the trace function sees what it sees unmonitored.  On
    the engine, such a frame had no room there for the shadow it needed
    (the slot after its allocation, which frames of a thread that traces
    may not borrow) and went on in its original without events; a
    trampoline in the inline cache of the call it waited in, placed for
    room it did not have, met the trace function's frame ('bad operand
    type for unary +')."""
    plain = _traced_with_call_events(M, tool, TRACED_DEEPEST_SOURCE, name, opcodes, False)
    assert plain[1], "the trace function saw the frame"
    assert _traced_with_call_events(M, tool, TRACED_DEEPEST_SOURCE, name, opcodes, True) == (
        plain[0], plain[1], [(3, "wrap")] if name == "deepest_attribute"
        else [(2, "wrap"), (3, "wrap")])


TRACED_RECURSION_SOURCE = '''
def wrap(x):
    return x

def rec(n):
    a = 1
    if n == 0:
        turn_on()
        if ending == "raise":
            raise KeyError(n)
        return (a, a, a, wrap(a))
    x = (a, a, a, rec(n - 1), a, wrap(a))
    return x
'''


@pytest.mark.parametrize("ending", ["return", "raise", "trace_off"])
@pytest.mark.parametrize("opcodes", [False, True])
@pytest.mark.parametrize("depth", [1, 150])
def test_frames_of_a_traced_thread_reached_in_a_recursion(M: Any, tool: Tool, depth: int,
                                                          opcodes: bool, ending: str) -> None:
    """A thread traces (with or without f_trace_opcodes); events go on at the
    bottom of a recursion, whose frames wait in a call of a Python function,
    each with its stack one short of its deepest; then the recursion returns,
    raises through every frame, or turns the trace function off first.
    Every frame gets its CALL event after the call, and the trace function
    sees what it sees unmonitored (the 'exception' event in each frame at
    the line of the call, the traceback the same).  150 frames span more
    than one chunk of the data stack.  On the engine each frame lands on a
    shadow that needs the slot after its allocation, which it claims from
    the data stack; a trampoline in the inline cache of the call the frame
    waited in hid the line of the unit it stood at from the 'exception'
    event (f_lineno -1)."""
    plain = _traced_with_call_events(M, tool, TRACED_RECURSION_SOURCE, "rec", opcodes, False,
                                     depth, ending=ending)
    assert plain[1], "the trace function saw the frames"
    assert _traced_with_call_events(M, tool, TRACED_RECURSION_SOURCE, "rec", opcodes, True,
                                    depth, ending=ending) == (
        plain[0], plain[1], [(5, "KeyError")] if ending == "raise"
        else [(6, "wrap")] + [(7, "wrap")] * depth)


SETTRACE_IN_A_LOOP_SOURCE = '''
def deep():
    turn_on()

def wrap(x):
    return x

def loop():
    a = 1
    deep()
    for i in range(3):
        x = (a, settrace(tracer), wrap(a))
    return x

def loop_deeper():
    a = 1
    deep()
    for i in range(3):
        x = (a, a, a, a, wrap(settrace(tracer)), a, wrap(a))
    return x
'''


@pytest.mark.parametrize("name", ["loop", "loop_deeper"])
@pytest.mark.parametrize("events", ["CALL", "LINE", "INSTRUCTION"])
def test_settrace_called_in_a_loop_of_a_reached_frame(M: Any, tool: Tool, events: str,
                                                      name: str) -> None:
    """Events go on while a frame waits in a call; when it goes on, it calls
    sys.settrace itself, in a loop: the function returns, its events go on,
    and the trace function sees the frames it calls, as unmonitored.  On
    the engine the frame, on a shadow that borrowed the slot after its
    allocation, waits in C as the trace function comes, and was given a
    trampoline that landed it on the shadow it ran, whose landing pad went
    on where the trampoline was: it landed there again, for ever."""
    wanted = getattr(M.events, events)

    def run(monitored: bool) -> tuple:
        namespace: dict = {"__name__": "settrace_in_a_loop", "settrace": sys.settrace}
        exec(compile(SETTRACE_IN_A_LOOP_SOURCE, "<settrace_in_a_loop>", "exec"), namespace)
        function = namespace[name]
        seen: list = []
        fired: list = []

        def tracer(frame: Any, event: str, arg: Any) -> Any:
            seen.append((frame.f_code.co_name, event))
            return tracer

        def callback(code: Any, *args: Any) -> None:
            if code is function.__code__:
                fired.append(args[1].__name__ if events == "CALL" else
                             args[0] - function.__code__.co_firstlineno if events == "LINE"
                             else "instruction")

        def turn_on() -> None:
            if monitored:
                tool.set_events(wanted)

        tool.register(wanted, callback)
        namespace.update(tracer=tracer, turn_on=turn_on)
        try:
            result = function()
        finally:
            sys.settrace(None)
            tool.set_events(0)
        return result, seen, fired

    plain = run(False)
    assert plain[1], "the trace function saw the frames called"
    monitored = run(True)
    assert monitored[:2] == plain[:2]
    if events == "CALL":
        calls = ["settrace", "wrap"] if name == "loop" else ["settrace", "wrap", "wrap"]
        assert monitored[2] == ["range"] + calls * 3
    elif events == "LINE":
        assert monitored[2] == [3, 4] * 3 + [3, 5]
    else:
        assert monitored[2], "INSTRUCTION events in the frame"


def test_a_closure_callback_runs_in_a_frame_of_its_own(M: Any, tool: Tool) -> None:
    """Callbacks are commonly closures (a counter's ``nonlocal``), which 3.9
    calls through its general path and the engine calls itself: each call
    gets a fresh frame of the callback's code, called from the event's
    frame, with its arguments and free variables; a frame that outlives
    its call is an ordinary object the collector tracks, and one that does
    not lets go of the arguments."""
    E = M.events
    count = 0
    kept: list = []
    released: list = []

    class Value:
        pass

    def f(x: int) -> Any:
        value = Value()
        value.x = x
        return value

    def on_return(code: Any, offset: int, retval: Any) -> None:
        nonlocal count
        if code is not f.__code__:
            return
        count += 1
        me = sys._getframe()
        if retval.x == 1:
            kept.append(me)
        else:
            released.append(weakref.ref(retval))
        assert me.f_code is on_return.__code__
        assert me.f_back is not None and me.f_back.f_code is f.__code__
        assert me.f_locals["retval"] is retval and me.f_locals["count"] == count

    tool.register(E.PY_RETURN, on_return)
    tool.set_events(E.PY_RETURN)
    results = [f(1), f(2)]
    tool.set_events(0)
    assert count == 2 and [r.x for r in results] == [1, 2]
    del results
    gc.collect()
    assert released[0]() is None
    frame = kept.pop()
    assert gc.is_tracked(frame) and frame.f_locals["retval"].x == 1
    assert frame.f_locals["count"] == 2 and frame.f_back.f_code is f.__code__


def test_each_call_of_a_callback_starts_a_frame_afresh(M: Any, tool: Tool) -> None:
    """However the engine comes by a callback's frame, each call finds it as
    a new frame: what the callback's last call left in its locals, its
    trace settings and its trace function is gone, and it is called from
    the event's frame."""
    E = M.events
    count = 0
    seen: list = []

    def f(x: int) -> int:
        return x

    def look(frame: Any, line: int) -> None:
        # (Not kept in a local of the callback, which its locals' snapshot
        # would hold: the frame would outlive its call.)
        seen.append((sorted(frame.f_locals), frame.f_trace_lines, frame.f_trace_opcodes,
                     frame.f_trace, frame.f_back.f_code is f.__code__, line))
        frame.f_trace_lines = False
        frame.f_trace_opcodes = True
        frame.f_trace = look

    def on_start(code: Any, offset: int) -> None:
        nonlocal count
        if code is not f.__code__:
            return
        look(sys._getframe(), sys._getframe().f_lineno - on_start.__code__.co_firstlineno)
        left = count
        count += 1
        assert sys._getframe().f_locals["left"] == left

    tool.register(E.PY_START, on_start)
    tool.set_events(E.PY_START)
    results = [f(i) for i in range(20)]
    tool.set_events(0)
    assert results == list(range(20)) and count == 20
    assert seen == [(["code", "count", "f", "look", "offset", "on_start"], True, False, None, True, 4)] * 20


_BUILTINS_PROBE = """
def make(seen, target):
    def on_start(code, offset):
        if code is target:
            seen.append(name())
    return on_start

def probe():
    return name()
"""


def test_a_callback_sees_the_builtins_a_call_of_it_would(M: Any, tool: Tool) -> None:
    """A callback's builtins are those a plain call of it from the event's
    frame gets, its globals' ``__builtins__`` changed or not (3.9 looks them
    up in the globals at each call from another module's code, 3.10+ keep
    the function's own)."""
    E = M.events
    namespace: dict = {"__builtins__": {"name": lambda: "first"}}
    exec(_BUILTINS_PROBE, namespace)
    seen: list = []

    def f() -> None:
        pass

    def call_and_probe() -> Any:
        f()
        return namespace["probe"]()

    tool.register(E.PY_START, namespace["make"](seen, f.__code__))
    tool.set_events(E.PY_START)
    try:
        expected = [call_and_probe(), call_and_probe()]
        namespace["__builtins__"] = {"name": lambda: "second"}
        expected += [call_and_probe(), call_and_probe()]
    finally:
        tool.set_events(0)
    assert seen == expected
