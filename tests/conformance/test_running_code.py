"""Events that start or stop while the code they concern is running.

Native ``sys.monitoring`` instruments code objects in place, so a change
reaches every frame at once.  lowimpact on 3.11 moves frames and functions
onto instrumented copies and starts others through an entry trampoline;
these tests hold it to the native results for everything a frame does after
the change, wherever that frame was at the time: looping, deep in a
recursion, on another thread, in a C call, or not started yet.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from .helpers import Recorder, Tool, with_exit_rel_line


def _expected_total(n: int) -> int:
    return sum(i * 2 + len(str(i)) for i in range(n))


def test_function_keeps_looping_while_its_own_events_start(M: Any, tool: Tool) -> None:
    # The frame that enables the events stays in f's loop, under a C call
    # (map), until f returns; f warms up in that loop meanwhile, so the
    # interpreter rewrites f's bytecode while later calls start through it.
    E = M.events
    starts: list[str] = []
    tool.register(E.PY_START, lambda code, offset: starts.append(code.co_name))

    def enable(_: Any) -> int:
        tool.set_events(E.PY_START)
        return 0

    def f(n: int, first: bool) -> int:
        total = 0
        for i in range(n):
            if first and i == 0:
                list(map(enable, [0]))
            total += i * 2 + len(str(i))
        return total

    assert f(50, True) == _expected_total(50)
    results = [f(50, False) for _ in range(5)]
    tool.set_events(0)
    assert [f(50, False) for _ in range(3)] == [_expected_total(50)] * 3
    assert results == [_expected_total(50)] * 5
    assert starts.count("f") == 5


def test_small_stack_function_with_unwind_and_start(M: Any, tool: Tool) -> None:
    # PY_UNWIND needs more stack than a one-value function has.
    E = M.events

    def g() -> None:
        raise KeyError

    def caller() -> str:
        try:
            g()
        except KeyError:
            return "caught"
        return "no"

    tool.set_local(g, E.PY_START)
    with Recorder(tool, E.PY_UNWIND, g) as rec:
        tool.register(E.PY_START, rec.callback("PY_START"))
        assert [caller(), caller()] == ["caught", "caught"]
    tool.set_local(g, 0)
    assert rec.compact() == [
        ("PY_START", "g"),
        ("PY_UNWIND", "g", "KeyError"),
        ("PY_START", "g"),
        ("PY_UNWIND", "g", "KeyError"),
    ]


def test_events_start_deep_in_a_recursion(M: Any, tool: Tool) -> None:
    E = M.events
    recorder = Recorder(tool, E.PY_START | E.PY_RETURN)

    def down(n: int) -> int:
        if n == 0:
            recorder.__enter__()
            return 0
        return down(n - 1) + 1

    recorder.watch(down)
    try:
        assert down(5) == 5
        assert down(2) == 2
    finally:
        recorder.stop()
    # The frames that were running return with PY_RETURN; the second call is
    # seen whole.
    assert recorder.compact() == (
        [("PY_RETURN", "down", i) for i in range(6)]
        + [("PY_START", "down")] * 3
        + [("PY_RETURN", "down", i) for i in range(3)]
    )


def test_functions_made_by_a_running_frame(M: Any, tool: Tool) -> None:
    E = M.events
    recorder = Recorder(tool, E.PY_START | E.PY_RETURN)
    made: list[Callable[[], int]] = []

    def maker() -> None:
        recorder.__enter__()
        for i in range(3):
            def made_here(i: int = i) -> int:
                return i

            recorder.watch(made_here)
            made.append(made_here)

    try:
        maker()
        assert [f() for f in made] == [0, 1, 2]
    finally:
        recorder.stop()
    assert recorder.compact() == [
        x for i in range(3) for x in (("PY_START", "made_here"), ("PY_RETURN", "made_here", i))
    ]


def test_other_thread_running_when_events_start(M: Any, tool: Tool) -> None:
    E = M.events
    calls: list[str] = []
    tool.register(E.PY_START, lambda code, offset: calls.append(code.co_name))
    started = threading.Event()
    go_on = threading.Event()
    results: list[int] = []

    def work(i: int) -> int:
        return i * i

    def loop() -> None:
        started.set()
        go_on.wait()
        results.extend(work(i) for i in range(4))

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        started.wait()
        tool.set_events(E.PY_START)
    finally:
        go_on.set()
        thread.join()
    tool.set_events(0)
    assert results == [0, 1, 4, 9]
    assert calls.count("work") == 4


def test_events_stop_while_a_frame_loops(M: Any, tool: Tool) -> None:
    E = M.events
    lines: list[int] = []

    def line(code: Any, number: int) -> None:
        if code is f.__code__:
            lines.append(number - f.__code__.co_firstlineno)

    def stop(_: Any) -> int:
        tool.set_events(0)
        return 0

    def f() -> int:
        total = 0
        for i in range(4):
            if i == 1:
                list(map(stop, [0]))
            total += i
        return total

    tool.register(E.LINE, line)
    tool.set_events(E.LINE)
    assert f() == 6
    assert f() == 6
    # Events end where set_events(0) returns: nothing from the rest of the
    # first call, nothing from the second.
    assert lines == [1, 2, 3, 5, 2, 3, 4]
def test_events_start_under_a_c_call(M: Any, tool: Tool) -> None:
    E = M.events
    recorder = Recorder(tool, E.PY_START | E.PY_RETURN)

    def leaf(x: int) -> int:
        return x + 1

    def outer() -> list[int]:
        # sorted() calls key from C: outer's frame belongs to another
        # evaluation loop while the events start.
        def key(x: int) -> int:
            if x == 0:
                recorder.__enter__()
            return leaf(x)

        recorder.watch(key)
        ordered = sorted([2, 0, 1], key=key)
        return ordered

    recorder.watch(leaf, outer)
    try:
        assert outer() == [0, 1, 2]
    finally:
        recorder.stop()
    assert recorder.compact() == [
        ("PY_START", "leaf"),
        ("PY_RETURN", "leaf", 1),
        ("PY_RETURN", "key", 1),
        ("PY_START", "key"),
        ("PY_START", "leaf"),
        ("PY_RETURN", "leaf", 2),
        ("PY_RETURN", "key", 2),
        ("PY_RETURN", "outer", [0, 1, 2]),
    ]




def test_events_start_while_a_frame_loops(M: Any, tool: Tool) -> None:
    E = M.events
    lines: list[int] = []

    def line(code: Any, number: int) -> None:
        if code is f.__code__:
            lines.append(number - f.__code__.co_firstlineno)

    def start(_: Any) -> int:
        tool.set_events(E.LINE)
        return 0

    def f() -> int:
        total = 0
        for i in range(3):
            if i == 1:
                list(map(start, [0]))
            total += i
        return total

    tool.register(E.LINE, line)
    try:
        assert f() == 3
    finally:
        tool.set_events(0)
    # From the line after the call on, within the same iteration.
    assert lines == [5, 2, 3, 5, 2, 6]


def _loop_in_thread(M: Any, tool: Tool, events: int, callback_event: int) -> list[Any]:
    """Start a thread looping in spin(), enable *events* locally on spin from
    this thread, and return what the callbacks saw from the thread."""
    seen: list[Any] = []
    got_one = threading.Event()
    running = threading.Event()
    stop = [False]

    def spin() -> int:
        # Only C calls in the loop: the thread's frame stays the one its
        # evaluation loop runs.
        count = 0
        while not stop[0]:
            count += 1
            if count == 1000:
                running.set()
        return count

    def callback(code: Any, *args: Any) -> None:
        if code is spin.__code__ and threading.current_thread() is thread:
            seen.append(args)
            got_one.set()

    tool.register(callback_event, callback)
    thread = threading.Thread(target=spin)
    thread.start()
    try:
        assert running.wait(10)
        tool.set_local(spin, events)
        assert got_one.wait(10), "the running loop never reported an event"
    finally:
        stop[0] = True
        thread.join()
        tool.set_local(spin, 0)
    return seen


def test_loop_in_another_thread_gets_line_events(M: Any, tool: Tool) -> None:
    seen = _loop_in_thread(M, tool, M.events.LINE, M.events.LINE)
    assert seen


def test_loop_in_another_thread_gets_branch_events(M: Any, tool: Tool) -> None:
    seen = _loop_in_thread(M, tool, M.events.BRANCH, M.events.BRANCH)
    assert seen


def test_loop_in_another_thread_gets_instruction_events(M: Any, tool: Tool) -> None:
    seen = _loop_in_thread(M, tool, M.events.INSTRUCTION, M.events.INSTRUCTION)
    assert seen


# --------------------------------------------------------------------------
# set_local_events() on a function that already runs with other probes: its
# later calls (here the recursion of the frame that set them) start with
# every event asked for, from PY_START on.


def _recursion_setting_its_own_events(M: Any, tool: Tool, events: int) -> Callable[[int], int]:
    def f(depth: int) -> int:
        if depth <= 0:
            return 0
        if depth == 2:
            tool.set_local(f, events)
        total = sum(0 for _ in range(0))
        return total + f(depth - 1) + 1

    return f


def test_local_events_set_inside_a_function_whose_nested_code_has_events(M: Any, tool: Tool) -> None:
    # The nested genexpr's events give f a copy without probes of its own.
    E = M.events
    seen: list[str] = []
    tool.register(E.PY_START, lambda code, offset: seen.append(code.co_name))
    f = _recursion_setting_its_own_events(M, tool, E.PY_START)
    genexpr = next(c for c in f.__code__.co_consts if getattr(c, "co_name", "") == "<genexpr>")
    tool.set_local(genexpr, E.PY_START)
    assert f(3) == 3
    assert seen == ["<genexpr>", "<genexpr>", "f", "<genexpr>", "f"]


def test_local_start_and_line_set_inside_a_function_under_global_instruction_events(
    M: Any, tool: Tool
) -> None:
    # f runs with INSTRUCTION probes when it adds PY_START and LINE for itself:
    # the recursive call must report both from its first line.
    E = M.events
    seen: list[tuple] = []
    f = _recursion_setting_its_own_events(M, tool, E.PY_START | E.LINE)
    first = f.__code__.co_firstlineno
    tool.register(E.INSTRUCTION, lambda code, offset: None)
    tool.register(E.PY_START, lambda code, offset: seen.append(("start", code.co_name)))
    tool.register(E.LINE, lambda code, line: seen.append(("line", code.co_name, line - first)))
    tool.set_events(E.INSTRUCTION)
    assert f(2) == 2
    tool.set_events(0)
    f_events = [e for e in seen if e[1] == "f"]
    assert f_events[:3] == [("line", "f", 5), ("line", "f", 6), ("start", "f")]
    assert f_events[3:5] == [("line", "f", 1), ("line", "f", 3)]


def test_local_events_removed_then_added_for_functions_made_by_a_running_parent(
    M: Any, tool: Tool
) -> None:
    # Each call of outer makes a new inner from outer's constants: after the
    # events of inner change twice, those functions report what is asked now.
    E = M.events
    seen: list[str] = []
    tool.register(E.PY_START, lambda code, offset: seen.append(code.co_name))

    def outer(n: int) -> int:
        def inner(x: int) -> int:
            return x + 1

        return inner(n)

    inner_code = next(c for c in outer.__code__.co_consts if getattr(c, "co_name", "") == "inner")
    tool.set_local(inner_code, E.PY_START)
    assert outer(1) == 2
    tool.set_local(inner_code, 0)
    assert outer(2) == 3
    tool.set_local(inner_code, E.PY_START)
    assert outer(3) == 4
    assert seen == ["inner", "inner"]


def test_coverage_pattern_on_code_that_loops_or_returns_at_once(M: Any, tool: Tool) -> None:
    # PY_START everywhere, LINE set from its callback for the code that
    # starts: a function whose loop starts on its first line and a one-line
    # __exit__ (code with no room before its first jump) report their lines
    # on every call, the first as the second.
    E = M.events
    lines: list[tuple] = []

    class Guard:
        def __enter__(self) -> "Guard":
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

    def spin(n: int) -> int:
        while n:
            n -= 1
        return n

    def work(n: int) -> int:
        with Guard():
            left = spin(n)
        return left

    # By identity: under pytest-xdist, other threads run other __exit__s.
    measured = {spin.__code__, work.__code__, Guard.__exit__.__code__}

    def start(code: Any, offset: int) -> Any:
        if code in measured:
            tool.set_local(code, E.LINE)
        return M.DISABLE

    def line(code: Any, line: int) -> None:
        if code in measured:
            lines.append((code.co_name, line - code.co_firstlineno))

    tool.register(E.PY_START, start)
    tool.register(E.LINE, line)
    tool.set_events(E.PY_START)
    assert work(2) == 0
    first = list(lines)
    assert work(2) == 0
    tool.set_events(0)
    assert lines[len(first):] == first
    # The `with` line again at the exit, where the compiler puts the exit
    # call there (3.10+; 3.9: on the body's line).
    exit_line = with_exit_rel_line(work)
    assert first == [
        ("work", 1), ("work", 2),
        ("spin", 1), ("spin", 2), ("spin", 1), ("spin", 2), ("spin", 1), ("spin", 3),
    ] + ([("work", exit_line)] if exit_line != 2 else []) + [("__exit__", 1), ("work", 3)]


def test_trace_and_profile_functions_set_in_a_frame_running_when_events_came(
        M: Any, tool: Tool) -> None:
    """A frame turns LINE on for itself, then sets and clears a profile and a
    trace function in its loop: its lines keep coming, sys.gettrace() and
    sys.getprofile() show what it set, and the functions see what they see
    unmonitored (3.10 reaches the frame through the thread's own trace and
    profile hooks, which must stay out of sight)."""
    import sys

    E = M.events

    def run(monitored: bool) -> tuple:
        lines: list = []
        profiled: list = []
        traced: list = []

        def profiler(frame: Any, event: str, arg: Any) -> None:
            if event in ("call", "return"):
                profiled.append((frame.f_code.co_name, event))

        def tracer(frame: Any, event: str, arg: Any) -> Any:
            traced.append((frame.f_code.co_name, event))
            return tracer

        def helper() -> int:
            return 1

        def on() -> None:
            if monitored:
                tool.set_local(f.__code__, E.LINE)

        def f() -> list:
            hooks = []
            on()
            for i in range(4):
                hooks.append((sys.gettrace() is tracer, sys.getprofile() is profiler))
                if i == 0:
                    sys.setprofile(profiler)
                elif i == 1:
                    sys.setprofile(None)
                    sys.settrace(tracer)
                elif i == 2:
                    sys.settrace(None)
                helper()
            return hooks

        tool.register(E.LINE, lambda code, line: lines.append(line - f.__code__.co_firstlineno))
        try:
            hooks = f()
        finally:
            sys.settrace(None)
            sys.setprofile(None)
            tool.set_events(0)
            tool.set_local(f.__code__, 0)
        return hooks, profiled, traced, lines

    plain = run(False)
    assert plain[0] == [(False, False), (False, True), (True, False), (False, False)]
    assert plain[1] and plain[2], "the functions saw helper()"
    monitored = run(True)
    assert monitored[:3] == plain[:3]
    # From the line after on() on, every line of the loop.
    assert monitored[3] == [3, 4, 5, 6, 12] + [3, 4, 5, 7, 8, 9, 12] + \
        [3, 4, 5, 7, 10, 11, 12] + [3, 4, 5, 7, 10, 12] + [3, 13]
