"""Several tools at once, local vs global events, free_tool_id, re-entrancy,
exceptions raised by callbacks, and threads."""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

import pytest

from .helpers import TOOL, Recorder, Tool, group1_events


def tag_callback(log: list, tag: Any, code: Any) -> Callable[..., None]:
    """A callback that logs *tag* for events of *code*."""

    def callback(c: Any, *args: Any) -> None:
        if c is code:
            log.append(tag)

    return callback


# --------------------------------------------------------------------------
# Delivery order and independence


def test_delivery_order_is_descending_tool_id(M: Any, make_tool: Any) -> None:
    def f() -> None:
        pass

    log: list[int] = []
    for t in (0, 2, 5, 1):
        make_tool(t).register(M.events.PY_START, tag_callback(log, t, f.__code__))
        M.set_events(t, M.events.PY_START)
    f()
    for t in (0, 2, 5, 1):
        M.set_events(t, 0)
    assert log == [5, 2, 1, 0]


def test_delivery_order_for_every_line(M: Any, make_tool: Any) -> None:
    def f() -> int:
        a = 1
        return a

    log: list[tuple] = []
    for t in (1, 4):
        tool = make_tool(t)
        tool.register(M.events.LINE, lambda c, line, t=t: log.append((t, line - f.__code__.co_firstlineno)) if c is f.__code__ else None)
        tool.set_events(M.events.LINE)
    f()
    for t in (1, 4):
        M.set_events(t, 0)
    assert log == [(4, 1), (1, 1), (4, 2), (1, 2)]


def test_delivery_order_mixed_local_and_global(M: Any, make_tool: Any) -> None:
    def f() -> None:
        pass

    log: list[int] = []
    t0, t3, t5 = make_tool(0), make_tool(3), make_tool(5)
    for t in (t0, t3, t5):
        t.register(M.events.PY_START, tag_callback(log, t.id, f.__code__))
    t0.set_events(M.events.PY_START)
    t3.set_local(f, M.events.PY_START)
    t5.set_local(f, M.events.PY_START)
    f()
    t0.set_events(0)
    assert log == [5, 3, 0]


def test_tools_get_only_their_own_events(M: Any, make_tool: Any) -> None:
    def f() -> int:
        return 1

    t1, t2 = make_tool(1), make_tool(2)
    with Recorder(t1, M.events.PY_START | M.events.LINE, f) as r1, Recorder(t2, M.events.PY_RETURN, f) as r2:
        f()
    assert r1.names() == ["PY_START", "LINE"]
    assert r2.names() == ["PY_RETURN"]


def test_removing_one_tool_keeps_the_other(M: Any, make_tool: Any) -> None:
    def f() -> None:
        pass

    t1, t2 = make_tool(1), make_tool(2)
    with Recorder(t1, M.events.PY_START, f) as r1, Recorder(t2, M.events.PY_START, f) as r2:
        f()
        r1.stop()
        f()
    assert (len(r1.events), len(r2.events)) == (1, 2)


def test_same_callback_for_several_tools(M: Any, make_tool: Any) -> None:
    def f() -> None:
        pass

    log: list[str] = []
    cb = tag_callback(log, "hit", f.__code__)
    for t in (1, 2, 3):
        make_tool(t).register(M.events.PY_START, cb)
        M.set_events(t, M.events.PY_START)
    f()
    for t in (1, 2, 3):
        M.set_events(t, 0)
    assert log == ["hit"] * 3


def test_all_six_tools(M: Any, make_tool: Any) -> None:
    def f() -> None:
        pass

    log: list[int] = []
    for t in range(6):
        make_tool(t).register(M.events.PY_RETURN, lambda c, o, v, t=t: log.append(t) if c is f.__code__ else None)
        M.set_events(t, M.events.PY_RETURN)
    f()
    for t in range(6):
        M.set_events(t, 0)
    assert log == [5, 4, 3, 2, 1, 0]


# --------------------------------------------------------------------------
# Local and global events


def test_local_and_global_same_event_delivered_once(M: Any, tool: Tool) -> None:
    def f() -> int:
        a = 1
        return a

    with Recorder(tool, group1_events(M), f) as rec:
        tool.set_local(f, group1_events(M))
        f()
    assert rec.names() == ["PY_START", "LINE", "LINE", "PY_RETURN"]


def test_local_and_global_are_ored(M: Any, tool: Tool) -> None:
    def f() -> int:
        a = 1
        return a

    rec = Recorder(tool, group1_events(M), f)
    with rec:
        tool.set_events(M.events.PY_START)
        tool.set_local(f, M.events.PY_RETURN)
        f()
    assert rec.names() == ["PY_START", "PY_RETURN"]


def test_local_event_applies_to_that_code_only(M: Any, tool: Tool) -> None:
    def g() -> int:
        return 2

    def f() -> int:
        def nested() -> int:
            return 3

        return g() + nested()

    with Recorder(tool, M.events.PY_START | M.events.PY_RETURN, f, local=True, record_all=True) as rec:
        assert f() == 5
    assert rec.compact() == [("PY_START", "f"), ("PY_RETURN", "f", 5)]


def test_local_events_of_one_tool_not_seen_by_another(M: Any, make_tool: Any) -> None:
    def f() -> None:
        pass

    t1, t2 = make_tool(1), make_tool(2)
    log: list[int] = []
    t1.register(M.events.PY_START, tag_callback(log, 1, f.__code__))
    t2.register(M.events.PY_START, tag_callback(log, 2, f.__code__))
    t1.set_local(f, M.events.PY_START)
    f()
    assert log == [1]


def test_removing_global_keeps_local(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    def g() -> None:
        pass

    with Recorder(tool, M.events.PY_START, f, g) as rec:
        tool.set_local(f, M.events.PY_START)
        tool.set_events(0)
        f()
        g()
    assert rec.compact() == [("PY_START", "f")]


# --------------------------------------------------------------------------
# Registered-but-disabled and enabled-but-unregistered


def test_callback_without_enabled_event_not_called(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    log: list[str] = []
    tool.register(M.events.PY_START, tag_callback(log, "start", f.__code__))
    tool.register(M.events.LINE, tag_callback(log, "line", f.__code__))
    tool.set_events(M.events.PY_RETURN)
    f()
    tool.set_events(0)
    assert log == []


def test_enabled_event_without_callback_is_harmless(M: Any, tool: Tool) -> None:
    def f() -> int:
        a = 1
        return a

    tool.set_events(group1_events(M))
    try:
        assert f() == 1
    finally:
        tool.set_events(0)


def test_callback_registered_on_other_tool_not_called(M: Any, make_tool: Any) -> None:
    def f() -> None:
        pass

    t1, t2 = make_tool(1), make_tool(2)
    log: list[str] = []
    t2.register(M.events.PY_START, tag_callback(log, "t2", f.__code__))
    t1.set_events(M.events.PY_START)
    f()
    t1.set_events(0)
    assert log == []


def test_unregistering_while_enabled_stops_delivery(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    log: list[str] = []
    tool.register(M.events.PY_START, tag_callback(log, "x", f.__code__))
    tool.set_events(M.events.PY_START)
    f()
    tool.register(M.events.PY_START, None)
    f()
    tool.register(M.events.PY_START, tag_callback(log, "y", f.__code__))
    f()
    tool.set_events(0)
    assert log == ["x", "y"]


def test_callback_replaced_while_enabled(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    log: list[str] = []
    tool.register(M.events.PY_START, tag_callback(log, "a", f.__code__))
    tool.set_events(M.events.PY_START)
    f()
    tool.register(M.events.PY_START, tag_callback(log, "b", f.__code__))
    f()
    tool.set_events(0)
    assert log == ["a", "b"]


def test_callback_set_from_inside_callback(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    log: list[str] = []

    def second(code: Any, off: int) -> None:
        if code is f.__code__:
            log.append("second")

    def first(code: Any, off: int) -> None:
        if code is f.__code__:
            log.append("first")
            M.register_callback(TOOL, M.events.PY_START, second)

    tool.register(M.events.PY_START, first)
    tool.set_events(M.events.PY_START)
    f()
    f()
    tool.set_events(0)
    assert log == ["first", "second"]


# --------------------------------------------------------------------------
# free_tool_id (3.12/3.13: releases the name only)


def test_free_tool_id_keeps_events_and_callbacks(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    log: list[str] = []
    tool.register(M.events.PY_START, tag_callback(log, "start", f.__code__))
    tool.set_events(M.events.PY_START)
    M.free_tool_id(TOOL)
    assert M.get_tool(TOOL) is None
    assert M.get_events(TOOL) == M.events.PY_START
    f()
    assert log == ["start"]


def test_free_tool_id_keeps_local_events(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    log: list[str] = []
    tool.register(M.events.PY_START, tag_callback(log, "start", f.__code__))
    tool.set_local(f, M.events.PY_START)
    M.free_tool_id(TOOL)
    assert M.get_local_events(TOOL, f.__code__) == M.events.PY_START
    f()
    assert log == ["start"]


def test_events_of_freed_tool_cannot_be_changed(M: Any, tool: Tool) -> None:
    tool.set_events(M.events.LINE)
    M.free_tool_id(TOOL)
    with pytest.raises(ValueError, match="tool 3 is not in use"):
        M.set_events(TOOL, 0)
    M.use_tool_id(TOOL, "again")
    assert M.get_tool(TOOL) == "again"
    M.set_events(TOOL, 0)
    assert M.get_events(TOOL) == 0


# --------------------------------------------------------------------------
# Re-entrancy: nothing is delivered for code run by a callback


def test_no_events_from_callback_code(M: Any, tool: Tool) -> None:
    def helper() -> int:
        x = 1
        return x

    def f() -> None:
        pass

    log: list[str] = []

    def start(code: Any, off: int) -> None:
        log.append("start " + code.co_name)
        helper()

    tool.register(M.events.PY_START, start)
    tool.register(M.events.LINE, lambda code, line: log.append("line " + code.co_name) if code is helper.__code__ else None)
    tool.set_local(f, M.events.PY_START)
    tool.set_local(helper, M.events.PY_START | M.events.LINE)
    f()
    assert log == ["start f"]
    helper()
    assert log == ["start f", "start helper", "line helper", "line helper"]


def test_no_events_for_other_tools_during_callback(M: Any, make_tool: Any) -> None:
    def helper() -> None:
        pass

    def f() -> None:
        pass

    t1, t4 = make_tool(1), make_tool(4)
    log: list[str] = []
    t4.register(M.events.PY_START, lambda code, off: helper() if code is f.__code__ else None)
    t1.register(M.events.PY_START, lambda code, off: log.append(code.co_name) if code in (f.__code__, helper.__code__) else None)
    t4.set_events(M.events.PY_START)
    t1.set_events(M.events.PY_START)
    f()
    t1.set_events(0)
    t4.set_events(0)
    assert log == ["f"]


def test_no_events_from_generator_driven_by_callback(M: Any, tool: Tool) -> None:
    def gen() -> Any:
        yield 1
        yield 2

    def f() -> None:
        pass

    log: list[str] = []

    def start(code: Any, off: int) -> None:
        log.append(code.co_name)
        assert list(gen()) == [1, 2]

    tool.register(M.events.PY_START, start)
    tool.register(M.events.PY_YIELD, lambda code, off, v: log.append("yield"))
    tool.set_local(f, M.events.PY_START)
    tool.set_local(gen, M.events.PY_START | M.events.PY_YIELD)
    f()
    assert log == ["f"]


def test_no_events_from_exec_in_callback(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    log: list[str] = []

    def start(code: Any, off: int) -> None:
        log.append(code.co_filename)
        if code is f.__code__:
            exec(compile("y = 1\n", "<conformance-cb>", "exec"), {})

    tool.register(M.events.PY_START, start)
    tool.set_events(M.events.PY_START)
    f()
    tool.set_events(0)
    assert "<conformance-cb>" not in log
    assert f.__code__.co_filename in log


# --------------------------------------------------------------------------
# Exceptions raised by callbacks


def test_line_callback_exception_caught_in_monitored_function(M: Any, tool: Tool) -> None:
    def f() -> str:
        try:
            x = 1  # noqa: F841
        except RuntimeError as e:
            return "caught " + str(e)
        return "not caught"

    def line(code: Any, lineno: int) -> None:
        if lineno == f.__code__.co_firstlineno + 2:
            raise RuntimeError("from callback")

    tool.register(M.events.LINE, line)
    tool.set_local(f, M.events.LINE)
    assert f() == "caught from callback"


def test_line_callback_exception_skips_the_line(M: Any, tool: Tool) -> None:
    log: list[str] = []

    def f() -> None:
        log.append("before")
        log.append("raising line")

    def line(code: Any, lineno: int) -> None:
        if lineno == f.__code__.co_firstlineno + 2:
            raise RuntimeError("stop")

    tool.register(M.events.LINE, line)
    tool.set_local(f, M.events.LINE)
    with pytest.raises(RuntimeError, match="stop") as info:
        f()
    assert log == ["before"]
    frames = []
    tb = info.value.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code, tb.tb_lineno))
        tb = tb.tb_next
    codes = [c for c, _ in frames]
    assert f.__code__ in codes
    assert frames[codes.index(f.__code__)][1] == f.__code__.co_firstlineno + 2


def test_py_start_callback_exception_propagates_to_caller(M: Any, tool: Tool) -> None:
    ran: list[str] = []

    def f() -> None:
        ran.append("body")

    def caller() -> str:
        try:
            f()
        except RuntimeError as e:
            return "caller caught " + str(e)
        return "no exception"

    def start(code: Any, off: int) -> None:
        if code is f.__code__:
            raise RuntimeError("start")

    tool.register(M.events.PY_START, start)
    tool.set_local(f, M.events.PY_START)
    assert caller() == "caller caught start"
    assert ran == []


def test_callback_exception_keeps_callback_registered(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    calls: list[int] = []

    def start(code: Any, off: int) -> None:
        if code is f.__code__:
            calls.append(1)
            raise RuntimeError("again")

    tool.register(M.events.PY_START, start)
    tool.set_local(f, M.events.PY_START)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            f()
    assert calls == [1, 1]
    assert tool.register(M.events.PY_START, None) is start


def test_callback_exception_skips_lower_tools(M: Any, make_tool: Any) -> None:
    def f() -> None:
        pass

    log: list[int] = []
    t1, t2, t4 = make_tool(1), make_tool(2), make_tool(4)

    def raising(code: Any, off: int) -> None:
        if code is f.__code__:
            log.append(2)
            raise RuntimeError("t2")

    t4.register(M.events.PY_START, tag_callback(log, 4, f.__code__))
    t2.register(M.events.PY_START, raising)
    t1.register(M.events.PY_START, tag_callback(log, 1, f.__code__))
    for t in (t1, t2, t4):
        t.set_local(f, M.events.PY_START)
    with pytest.raises(RuntimeError):
        f()
    assert log == [4, 2]


def test_py_return_callback_exception(M: Any, tool: Tool) -> None:
    def f() -> int:
        return 1

    def caller() -> str:
        try:
            f()
        except KeyError:
            return "caught"
        return "returned"

    def ret(code: Any, off: int, value: Any) -> None:
        if code is f.__code__:
            raise KeyError("ret")

    tool.register(M.events.PY_RETURN, ret)
    tool.set_local(f, M.events.PY_RETURN)
    assert caller() == "caught"


def test_py_yield_callback_exception(M: Any, tool: Tool) -> None:
    def g() -> Any:
        try:
            yield 1
        except KeyError:
            pass
        yield 2

    def yielded(code: Any, off: int, value: Any) -> None:
        if code is g.__code__:
            raise KeyError("y")

    tool.register(M.events.PY_YIELD, yielded)
    tool.set_local(g, M.events.PY_YIELD)
    with pytest.raises(KeyError):
        next(g())


def test_non_callable_callback_raises_at_event(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    tool.set_local(f, M.events.PY_START)
    # Registered only around the call (and through the builtin directly) so
    # that no other Python function can start while it is installed.
    try:
        with pytest.raises(TypeError, match="'int' object is not callable"):
            M.register_callback(TOOL, M.events.PY_START, 42)
            f()
    finally:
        M.register_callback(TOOL, M.events.PY_START, None)


def test_wrong_arity_callback_raises_at_event(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    tool.set_local(f, M.events.PY_START)
    try:
        with pytest.raises(TypeError):
            M.register_callback(TOOL, M.events.PY_START, lambda code: None)
            f()
    finally:
        M.register_callback(TOOL, M.events.PY_START, None)


def test_callbacks_receive_positional_arguments_only(M: Any, tool: Tool) -> None:
    def f() -> int:
        return 7

    got: list[tuple] = []

    def cb(*args: Any, **kwargs: Any) -> None:
        got.append((len(args), kwargs))

    for name in ("PY_START", "LINE", "PY_RETURN"):
        tool.register(getattr(M.events, name), cb)
    tool.set_local(f, M.events.PY_START | M.events.LINE | M.events.PY_RETURN)
    f()
    assert got == [(2, {}), (2, {}), (3, {})]


# --------------------------------------------------------------------------
# Threads


def test_events_from_other_threads(M: Any, tool: Tool) -> None:
    def f() -> int:
        return 1

    names: list[str] = []
    tool.register(M.events.PY_START, lambda code, off: names.append(threading.current_thread().name) if code is f.__code__ else None)
    tool.set_events(M.events.PY_START)
    try:
        worker = threading.Thread(target=f, name="worker")
        worker.start()
        worker.join()
        f()
    finally:
        tool.set_events(0)
    assert names == ["worker", "MainThread"]


def test_thread_started_before_set_events(M: Any, tool: Tool) -> None:
    def f() -> int:
        a = 1
        return a

    go = threading.Event()
    done = threading.Event()

    def worker() -> None:
        go.wait()
        f()
        done.set()

    thread = threading.Thread(target=worker, name="early")
    thread.start()
    log: list[tuple] = []
    tool.register(M.events.LINE, lambda code, line: log.append((threading.current_thread().name, line - f.__code__.co_firstlineno)) if code is f.__code__ else None)
    tool.set_events(M.events.LINE)
    try:
        go.set()
        assert done.wait(10)
        thread.join()
    finally:
        tool.set_events(0)
    assert log == [("early", 1), ("early", 2)]


def test_local_events_reach_other_threads(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    names: list[str] = []
    tool.register(M.events.PY_RETURN, lambda code, off, value: names.append(threading.current_thread().name))
    tool.set_local(f, M.events.PY_RETURN)
    threads = [threading.Thread(target=f, name="t%d" % i) for i in range(3)]
    for t in threads:
        t.start()
        t.join()
    assert names == ["t0", "t1", "t2"]


def test_reentrancy_guard_is_per_thread(M: Any, tool: Tool) -> None:
    # While the main thread sits in a callback, another thread still gets events.
    def f() -> None:
        pass

    def g() -> None:
        pass

    log: list[str] = []
    started = threading.Event()

    def start(code: Any, off: int) -> None:
        if code is f.__code__:
            thread = threading.Thread(target=g, name="inner")
            thread.start()
            thread.join()
            log.append("f")
        elif code is g.__code__:
            log.append("g in " + threading.current_thread().name)
            started.set()

    tool.register(M.events.PY_START, start)
    tool.set_local(f, M.events.PY_START)
    tool.set_local(g, M.events.PY_START)
    f()
    assert log == ["g in inner", "f"]


def test_disable_from_other_thread_is_shared(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    names: list[str] = []

    def start(code: Any, off: int) -> Any:
        names.append(threading.current_thread().name)
        return M.DISABLE

    tool.register(M.events.PY_START, start)
    tool.set_local(f, M.events.PY_START)
    thread = threading.Thread(target=f, name="worker")
    thread.start()
    thread.join()
    f()
    assert names == ["worker"]


# --------------------------------------------------------------------------
# Coexistence with sys.settrace / sys.setprofile


def test_settrace_and_monitoring_together(M: Any, tool: Tool) -> None:
    def f() -> int:
        a = 1
        return a

    traced: list[str] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is f.__code__:
            traced.append(event)
        return tracer

    old = sys.gettrace()
    with Recorder(tool, group1_events(M), f) as rec:
        sys.settrace(tracer)
        try:
            f()
        finally:
            sys.settrace(old)
    assert traced == ["call", "line", "line", "return"]
    assert rec.names() == ["PY_START", "LINE", "LINE", "PY_RETURN"]


def profiled_beside(tool: Tool, events: int, arg: Any = "ab") -> tuple[list[str], Recorder]:
    """Runs a function calling len(*arg*) under a sys.setprofile function and
    the tool's *events*: the profile events of that function, and what the
    tool recorded."""
    def f() -> int:
        try:
            return len(arg)
        except TypeError:
            return -1

    profiled: list[str] = []

    def profiler(frame: Any, event: str, arg: Any) -> None:
        if frame.f_code is f.__code__:
            profiled.append(event)

    old = sys.getprofile()
    with Recorder(tool, events, f) as rec:
        sys.setprofile(profiler)
        try:
            f()
        finally:
            sys.setprofile(old)
    return profiled, rec


def test_setprofile_and_monitoring_together(M: Any, tool: Tool) -> None:
    profiled, rec = profiled_beside(tool, M.events.PY_START | M.events.PY_RETURN)
    assert profiled == ["call", "c_call", "c_return", "return"]
    assert rec.names() == ["PY_START", "PY_RETURN"]


def test_trace_and_profile_functions_quiet_inside_callbacks(M: Any, tool: Tool) -> None:
    def f() -> int:
        return len("ab")

    def on_event(*args: Any) -> None:
        len("callback")    # a line and a C call a tracer or profiler would see

    seen: list[tuple[str, str]] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        seen.append(("trace", frame.f_code.co_name))
        return tracer

    def profiler(frame: Any, event: str, arg: Any) -> None:
        seen.append(("profile", frame.f_code.co_name))

    for event in (M.events.PY_START, M.events.LINE, M.events.CALL, M.events.PY_RETURN):
        tool.register(event, on_event)
    tool.set_local(f, M.events.PY_START | M.events.LINE | M.events.CALL | M.events.PY_RETURN)
    old_trace, old_profile = sys.gettrace(), sys.getprofile()
    sys.settrace(tracer)
    sys.setprofile(profiler)
    try:
        f()
    finally:
        sys.setprofile(old_profile)
        sys.settrace(old_trace)
    tool.set_local(f, 0)
    assert ("trace", "f") in seen and ("profile", "f") in seen
    assert [s for s in seen if s[1] == "on_event"] == []


def test_no_monitoring_events_inside_trace_function(M: Any, tool: Tool) -> None:
    def helper() -> None:
        pass

    def f() -> None:
        pass

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is f.__code__ and event == "call":
            helper()
        return None

    old = sys.gettrace()
    with Recorder(tool, M.events.PY_START, f, helper) as rec:
        sys.settrace(tracer)
        try:
            f()
        finally:
            sys.settrace(old)
    assert rec.compact() == [("PY_START", "f")]


# --------------------------------------------------------------------------
# Callbacks that change the state in the middle of a delivery


def three_lines() -> int:
    x = 1
    y = 2
    return x + y


def rel(line: int) -> int:
    return line - three_lines.__code__.co_firstlineno


def test_higher_tool_turns_lower_tool_off_mid_delivery(M: Any, make_tool: Any) -> None:
    high, low = make_tool(5, "high"), make_tool(3, "low")
    log: list = []

    def on_high(code: Any, line: int) -> None:
        if code is three_lines.__code__:
            log.append(("high", rel(line)))
            if rel(line) == 1:
                low.set_events(0)

    def on_low(code: Any, line: int) -> None:
        if code is three_lines.__code__:
            log.append(("low", rel(line)))

    high.register(M.events.LINE, on_high)
    low.register(M.events.LINE, on_low)
    high.set_events(M.events.LINE)
    low.set_events(M.events.LINE)
    three_lines()
    # The event being delivered still reaches the lower tool; later ones do not.
    assert log == [("high", 1), ("low", 1), ("high", 2), ("high", 3)]


def test_callback_frees_its_own_tool(M: Any, tool: Tool) -> None:
    log: list = []

    def on_line(code: Any, line: int) -> None:
        if code is three_lines.__code__:
            log.append(rel(line))
            if rel(line) == 1:
                M.free_tool_id(tool.id)

    tool.register(M.events.LINE, on_line)
    tool.set_events(M.events.LINE)
    three_lines()
    # Freeing the id leaves its events and callbacks in place (3.12 and 3.13).
    assert log == [1, 2, 3]
    assert M.get_tool(tool.id) is None
    with pytest.raises(ValueError):
        M.set_events(tool.id, 0)


def test_restart_events_from_a_callback(M: Any, tool: Tool) -> None:
    log: list = []

    def on_line(code: Any, line: int) -> Any:
        if code is not three_lines.__code__:
            return None
        log.append(rel(line))
        if rel(line) == 3 and len(log) < 6:
            M.restart_events()
        return M.DISABLE

    tool.register(M.events.LINE, on_line)
    tool.set_events(M.events.LINE)
    for _ in range(3):
        three_lines()
    # The restart at line 3 re-arms lines 1 and 2 for the second run; line 3
    # itself is disabled by the DISABLE its callback returns after it.
    assert log == [1, 2, 3, 1, 2]


def test_recursion_limit_with_a_callback_per_call(M: Any, tool: Tool) -> None:
    def depth_reached() -> int:
        level = 0

        def down() -> None:
            nonlocal level
            level += 1
            down()

        try:
            down()
        except RecursionError:
            pass
        return level

    plain = depth_reached()
    tool.register(M.events.PY_START, lambda code, offset: None)
    tool.set_events(M.events.PY_START)
    try:
        monitored = depth_reached()
    finally:
        tool.set_events(0)
    # The callback runs one frame deeper than the function it reports.
    assert monitored == plain - 1
    # And the program goes on normally with events on.
    tool.set_events(M.events.PY_START)
    try:
        assert depth_reached() == monitored
    finally:
        tool.set_events(0)


# --------------------------------------------------------------------------
# The callback itself: what it is made of is read at each event


class _Counter:
    def __init__(self) -> None:
        self.starts: list = []

    def on_start(self, code: Any, offset: int) -> None:
        self.starts.append(code.co_name)


def test_a_bound_method_callback_gets_its_self(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    counter = _Counter()
    tool.register(M.events.PY_START, counter.on_start)
    tool.set_events(M.events.PY_START)
    for _ in range(3):
        f()
    tool.set_events(0)
    assert counter.starts.count("f") == 3


def _warm_up_callbacks(M: Any, tool: Tool, f: Callable[[], None]) -> None:
    """Leave PY_START on after f and its callback have run with it on, off
    and on again: the callback's own code is instrumented, and the engine
    calls it by its fastest path from the next event on."""
    for _ in range(3):
        tool.set_events(M.events.PY_START)
        for _ in range(3):
            f()
        tool.set_events(0)
    tool.set_events(M.events.PY_START)
    f()


CHANGING_CALLBACKS = """
def on_start(code, offset, tag="first", *, kw="kw1"):
    if code is f.__code__ and on:
        log.append((tag, kw))
        if len(log) == 1:
            on_start.__defaults__ = ("second",)
        elif len(log) == 2:
            on_start.__kwdefaults__ = {"kw": "kw2"}
        elif len(log) == 3:
            on_start.__code__ = replacement.__code__


def replacement(code, offset, tag="?", *, kw="?"):
    if code is f.__code__:
        log.append(("replaced", tag, kw))
"""


def test_changes_to_the_callback_function_apply_at_the_next_event(M: Any, tool: Tool) -> None:
    """Defaults, keyword defaults and the code of the callback function,
    changed between events (by the callback itself here), are what the next
    event runs, also once the callback has run often with the events on."""
    def f() -> None:
        pass

    namespace: dict = {"f": f, "log": [], "on": False}
    exec(CHANGING_CALLBACKS, namespace)
    tool.register(M.events.PY_START, namespace["on_start"])
    _warm_up_callbacks(M, tool, f)
    namespace["on"] = True
    for _ in range(4):
        f()
    tool.set_events(0)
    assert namespace["log"] == [
        ("first", "kw1"), ("second", "kw1"), ("second", "kw2"), ("replaced", "second", "kw2")
    ]


def test_the_callback_function_called_by_the_program_gets_events(M: Any, tool: Tool) -> None:
    """Inside a callback its code gets no events; called by the program, it
    does, as any code."""
    seen: list = []

    def on_line(code: Any, line: int) -> None:
        seen.append(code.co_name)

    tool.register(M.events.LINE, on_line)
    tool.set_events(M.events.LINE)
    on_line(on_line.__code__, 0)
    tool.set_events(0)
    # Its own line as the program's call runs it, then the one it records.
    assert seen.count("on_line") == 2


def test_a_replaced_callback_is_released(M: Any, tool: Tool) -> None:
    import gc
    import weakref

    def f() -> None:
        pass

    counter = _Counter()
    alive = weakref.ref(counter)
    tool.register(M.events.PY_START, counter.on_start)
    _warm_up_callbacks(M, tool, f)
    tool.register(M.events.PY_START, None)
    tool.set_events(0)
    del counter
    gc.collect()
    assert alive() is None


def test_setprofile_and_c_return_events_together(M: Any, tool: Tool) -> None:
    E = M.events
    profiled, rec = profiled_beside(tool, E.CALL | E.C_RETURN | E.C_RAISE)
    assert profiled == ["call", "c_call", "c_return", "return"]
    assert rec.compact() == [("CALL", "f", len, "ab"), ("C_RETURN", "f", len, "ab")]


def test_setprofile_and_c_raise_events_together(M: Any, tool: Tool) -> None:
    E = M.events
    profiled, rec = profiled_beside(tool, E.CALL | E.C_RETURN | E.C_RAISE, arg=3)
    assert profiled == ["call", "c_call", "c_exception", "return"]
    assert rec.compact() == [("CALL", "f", len, 3), ("C_RAISE", "f", len, 3)]
