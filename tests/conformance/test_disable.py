"""Returning DISABLE from callbacks, and restart_events().

DISABLE turns one event off at one code location for one tool.  Whether a
disabled location survives turning the event off and on again depends on
re-instrumentation timing natively (research §15 (12)), so no test here
toggles events to re-arm: restart_events() is the documented way.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from .helpers import (
    Event,
    Recorder,
    Tool,
    first_offset_of_line,
    group1_events,
    return_offsets,
    yield_offsets,
)


def disable_if(M: Any, predicate: Callable[[Event], bool]) -> Callable[[Event], Any]:
    return lambda event: M.DISABLE if predicate(event) else None


# --------------------------------------------------------------------------
# Local events: one location, one tool


def test_disable_py_start(M: Any, tool: Tool) -> None:
    def f() -> int:
        return 1

    with Recorder(tool, M.events.PY_START, f, returns=M.DISABLE) as rec:
        for _ in range(3):
            f()
    assert rec.compact() == [("PY_START", "f")]


def test_disable_py_start_leaves_other_functions(M: Any, tool: Tool) -> None:
    def f() -> int:
        return 1

    def g() -> int:
        return 2

    with Recorder(tool, M.events.PY_START, f, g, returns=disable_if(M, lambda e: e.code is f.__code__)) as rec:
        for _ in range(2):
            f()
            g()
    assert rec.compact() == [("PY_START", "f"), ("PY_START", "g"), ("PY_START", "g")]


def test_disable_py_start_leaves_other_events_of_same_code(M: Any, tool: Tool) -> None:
    def f() -> int:
        return 1

    with Recorder(tool, group1_events(M), f, returns=disable_if(M, lambda e: e.name == "PY_START")) as rec:
        f()
        f()
    assert rec.names() == ["PY_START", "LINE", "PY_RETURN", "LINE", "PY_RETURN"]


def test_disable_applies_to_all_functions_sharing_the_code(M: Any, tool: Tool) -> None:
    def make(n: int) -> Callable[[], int]:
        def add() -> int:
            return n

        return add

    a, b = make(1), make(2)
    assert a.__code__ is b.__code__
    with Recorder(tool, M.events.PY_START, a, returns=M.DISABLE) as rec:
        a()
        b()
        make(3)()
    assert len(rec.events) == 1


def test_disable_line_only_that_line(M: Any, tool: Tool) -> None:
    def f() -> int:
        a = 1
        b = 2
        return a + b

    with Recorder(tool, M.events.LINE, f, returns=disable_if(M, lambda e: e.rel_line == 2)) as rec:
        f()
        f()
        f()
    assert rec.lines(f) == [1, 2, 3, 1, 3, 1, 3]


def test_disable_line_in_a_loop(M: Any, tool: Tool) -> None:
    def f() -> int:
        n = 0
        for i in range(3):
            n += i
        return n

    with Recorder(tool, M.events.LINE, f, returns=disable_if(M, lambda e: e.rel_line == 3)) as rec:
        assert f() == 3
    assert rec.lines(f) == [1, 2, 3, 2, 2, 2, 4]


def test_disable_every_line(M: Any, tool: Tool) -> None:
    def f() -> int:
        a = 1
        return a

    with Recorder(tool, M.events.LINE, f, returns=M.DISABLE) as rec:
        for _ in range(3):
            assert f() == 1
    assert rec.lines(f) == [1, 2]


def test_disable_py_return_only_that_return(M: Any, tool: Tool) -> None:
    def f(a: bool) -> str:
        if a:
            return "first"
        return "second"

    first = [o for o in return_offsets(f) if o < first_offset_of_line(f, 3)]
    with Recorder(tool, M.events.PY_RETURN, f, returns=disable_if(M, lambda e: e.value == "first")) as rec:
        for _ in range(2):
            f(True)
            f(False)
    assert [e.value for e in rec.events] == ["first", "second", "second"]
    assert rec.events[0].offset in first


def test_disabled_return_after_a_local_of_warm_code(M: Any, tool: Tool) -> None:
    # `return y` after `y = x`: the value comes from the local read right
    # before the return, in code run often enough to be quickened (the
    # engine then has to undo the superinstruction it forms with its probe).
    def f(x: int) -> int:
        a = 1
        b = 2
        c = 3
        y = x
        return y

    calls = []

    def on_return(code: Any, offset: int, value: Any) -> Any:
        calls.append(value)
        return M.DISABLE if len(calls) > 30 else None

    tool.register(M.events.PY_RETURN, on_return)
    tool.register(M.events.LINE, lambda code, line: None)
    tool.set_local(f, M.events.PY_RETURN | M.events.LINE)
    results = [f(i) for i in range(100)]
    tool.set_local(f, 0)
    assert results == list(range(100))
    assert calls == list(range(31))


def test_disable_py_yield_only_that_yield(M: Any, tool: Tool) -> None:
    def g() -> Any:
        yield "a"
        yield "b"

    with Recorder(tool, M.events.PY_YIELD, g, returns=disable_if(M, lambda e: e.value == "a")) as rec:
        for _ in range(3):
            assert list(g()) == ["a", "b"]
    assert [e.value for e in rec.events] == ["a", "b", "b", "b"]
    assert [e.offset for e in rec.events[:2]] == yield_offsets(g)


def test_disable_py_resume_only_that_location(M: Any, tool: Tool) -> None:
    def g() -> Any:
        yield 1
        yield 2

    resumes: list[int] = []
    with Recorder(tool, M.events.PY_RESUME, g, returns=M.DISABLE) as rec:
        for _ in range(2):
            list(g())
    resumes = [e.offset for e in rec.events]
    # Two resume points, each reported once.
    assert len(resumes) == 2 and len(set(resumes)) == 2


def test_disable_in_suspended_generator(M: Any, tool: Tool) -> None:
    def g() -> Any:
        for i in range(4):
            yield i

    it = g()
    next(it)
    with Recorder(tool, M.events.PY_YIELD, g, returns=M.DISABLE) as rec:
        assert list(it) == [1, 2, 3]
    assert [e.value for e in rec.events] == [1]


def test_disable_with_local_events(M: Any, tool: Tool) -> None:
    def f() -> int:
        x = 1
        return x

    with Recorder(tool, group1_events(M), f, local=True, returns=M.DISABLE) as rec:
        f()
        f()
    assert rec.names() == ["PY_START", "LINE", "LINE", "PY_RETURN"]


def test_disable_is_per_tool(M: Any, make_tool: Any) -> None:
    def f() -> int:
        a = 1
        return a

    t1, t2 = make_tool(1), make_tool(2)
    with Recorder(t1, group1_events(M), f, returns=M.DISABLE) as r1, Recorder(t2, group1_events(M), f) as r2:
        f()
        f()
    assert r1.names() == ["PY_START", "LINE", "LINE", "PY_RETURN"]
    assert r2.names() == ["PY_START", "LINE", "LINE", "PY_RETURN"] * 2


def test_disable_by_lower_tool_leaves_higher_tool(M: Any, make_tool: Any) -> None:
    def f() -> None:
        pass

    t0, t5 = make_tool(0), make_tool(5)
    with Recorder(t5, M.events.PY_START, f) as r5, Recorder(t0, M.events.PY_START, f, returns=M.DISABLE) as r0:
        for _ in range(3):
            f()
    assert len(r0.events) == 1 and len(r5.events) == 3


def test_disable_local_tool_leaves_global_tool(M: Any, make_tool: Any) -> None:
    def f() -> int:
        return 0

    t1, t2 = make_tool(1), make_tool(2)
    with Recorder(t1, M.events.LINE, f, local=True, returns=M.DISABLE) as r1, Recorder(t2, M.events.LINE, f) as r2:
        f()
        f()
    assert len(r1.events) == 1 and len(r2.events) == 2


def test_value_other_than_disable_keeps_location(M: Any, tool: Tool) -> None:
    def f() -> int:
        return 1

    for value in (None, False, 0, 1, "DISABLE", M.MISSING, object()):
        with Recorder(tool, group1_events(M), f, returns=value) as rec:
            f()
            f()
        assert len(rec.events) == 6, value


# --------------------------------------------------------------------------
# restart_events


def test_restart_events_rearms_global(M: Any, tool: Tool) -> None:
    def f() -> int:
        a = 1
        return a

    with Recorder(tool, group1_events(M), f, returns=M.DISABLE) as rec:
        f()
        f()
        assert len(rec.events) == 4
        M.restart_events()
        f()
        f()
    assert rec.names() == ["PY_START", "LINE", "LINE", "PY_RETURN"] * 2


def test_restart_events_rearms_local(M: Any, tool: Tool) -> None:
    def f() -> int:
        return 1

    with Recorder(tool, M.events.PY_START, f, local=True, returns=M.DISABLE) as rec:
        f()
        f()
        M.restart_events()
        f()
        f()
    assert len(rec.events) == 2


def test_restart_events_rearms_every_tool(M: Any, make_tool: Any) -> None:
    def f() -> None:
        pass

    t1, t4 = make_tool(1), make_tool(4)
    with Recorder(t1, M.events.PY_START, f, returns=M.DISABLE) as r1, Recorder(
        t4, M.events.PY_START, f, local=True, returns=M.DISABLE
    ) as r4:
        f()
        f()
        M.restart_events()
        f()
        f()
    assert (len(r1.events), len(r4.events)) == (2, 2)


def test_restart_events_rearms_lines(M: Any, tool: Tool) -> None:
    def f(a: bool) -> int:
        x = 1
        if a:
            x = 2
        return x

    with Recorder(tool, M.events.LINE, f, returns=M.DISABLE) as rec:
        f(True)
        first = rec.lines(f)
        rec.clear()
        f(True)
        assert rec.lines(f) == []
        M.restart_events()
        f(False)
    assert first == [1, 2, 3, 4]
    assert rec.lines(f) == [1, 2, 4]


def test_restart_events_twice_before_the_code_runs_again(M: Any, tool: Tool) -> None:
    # Each round disables the lines again (the second call runs code without
    # them), so the next restart has them to re-arm; two restarts in a row
    # leave nothing less armed than one.
    def f() -> int:
        x = 1
        return x

    rounds = []
    with Recorder(tool, M.events.LINE, f, returns=M.DISABLE) as rec:
        for restarts in (1, 2, 1, 3):
            f()
            f()
            rounds.append(rec.lines(f))
            rec.clear()
            for _ in range(restarts):
                M.restart_events()
    assert rounds == [[1, 2]] * 4


def test_restart_events_after_the_disabled_code_died(M: Any, tool: Tool) -> None:
    # Much code whose lines were disabled goes away before the restart,
    # before and after `kept` disabled its own, which come back.
    import gc

    def kept() -> int:
        x = 1
        return x

    source = "def f():\n    x = 1\n    return x\n"
    with Recorder(tool, M.events.LINE, kept, returns=M.DISABLE, filename="<restart-died>") as rec:
        for round in range(70):
            namespace: dict = {}
            exec(compile(source, "<restart-died>", "exec"), namespace)
            namespace["f"]()
            namespace["f"]()
            del namespace
            if round == 10:
                kept()
                kept()
        died = [e.args[0] for e in rec.events if e.code is not kept.__code__]
        rec.clear()
        gc.collect()
        M.restart_events()
        kept()
    assert died == [1, 2, 3] * 70
    assert rec.lines(kept) == [1, 2]


def test_restart_events_reaches_functions_made_after_it(M: Any, tool: Tool) -> None:
    def make() -> Callable[[], int]:
        def inner() -> int:
            x = 1
            return x

        return inner

    g = make()
    inner = g.__code__
    with Recorder(tool, M.events.LINE, g, returns=M.DISABLE) as rec:
        g()
        g()
        rec.clear()
        M.restart_events()
        h = make()
        h()
        seen = [rec.lines(inner)]
        rec.clear()
        g()
        h()
        seen.append(rec.lines(inner))
    assert seen == [[1, 2], []]


def test_restart_events_from_the_function_whose_lines_are_disabled(M: Any, tool: Tool) -> None:
    # The bdb pattern: restart_events() as the function runs; its frame on
    # the stack gets its lines back at once (natively the rest of the line
    # of the call counts as a line of its own: its code was instrumented
    # anew meanwhile), its next call those it did not disable since.
    def f(restart: bool) -> int:
        x = 1
        if restart:
            M.restart_events()
        return x

    with Recorder(tool, M.events.LINE, f, returns=M.DISABLE) as rec:
        f(False)
        f(False)
        rec.clear()
        f(True)
        during = rec.lines(f)
        rec.clear()
        f(False)
    assert during == [3, 4]
    assert rec.lines(f) == [1, 2]


def test_disable_line_is_per_line_start_instruction(M: Any, tool: Tool) -> None:
    # The loop header has two line-start instructions: the first evaluation
    # of the iterable, and the loop test reached by the backward jump.
    # Disabling the first leaves the second armed.
    def f() -> None:
        for i in range(3):
            pass
        return None

    with Recorder(tool, M.events.LINE, f, returns=M.DISABLE) as rec:
        f()
        f()
    assert rec.lines(f) == [1, 2, 1, 3]


def test_restart_events_rearms_suspended_generator(M: Any, tool: Tool) -> None:
    def g() -> Any:
        while True:
            yield 1

    it = g()
    next(it)
    with Recorder(tool, M.events.PY_YIELD, g, returns=M.DISABLE) as rec:
        next(it)
        next(it)
        M.restart_events()
        next(it)
        next(it)
    it.close()
    assert len(rec.events) == 2


def test_restart_events_twice_before_a_suspended_generator_resumes(M: Any, tool: Tool) -> None:
    # A generator suspended on code without its disabled lines (a compacted
    # copy in the engine) resumes only after two restarts, between which
    # other generators of the code disabled the lines again: it reports
    # every line from its resumption on, as the others do after each restart.
    def gen() -> Any:
        x = 1
        yield x
        y = 2
        yield y
        return x + y

    with Recorder(tool, M.events.LINE, gen, returns=M.DISABLE) as rec:
        for _ in range(3):
            list(gen())
        g = gen()
        next(g)
        rec.clear()
        M.restart_events()
        list(gen())
        between = rec.lines(gen)
        rec.clear()
        list(gen())
        M.restart_events()
        list(g)
        resumed = rec.lines(gen)
    assert between == [1, 2, 3, 4, 5]
    assert resumed == [3, 4, 5]


def test_restart_events_without_disable_changes_nothing(M: Any, tool: Tool) -> None:
    def f() -> None:
        pass

    with Recorder(tool, group1_events(M), f) as rec:
        f()
        M.restart_events()
        f()
    assert len(rec.events) == 6


# --------------------------------------------------------------------------
# DISABLE from events that cannot be disabled


def _raise_in_except() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        raise


def _raise_and_catch() -> str:
    try:
        raise KeyError("k")
    except KeyError:
        return "handled"


def _unwind() -> None:
    raise KeyError("k")


def _gen() -> Any:
    yield 1


def _throw() -> None:
    it = _gen()
    next(it)
    it.throw(KeyError("k"))


def _c_return() -> int:
    return len([])


def _c_raise() -> int:
    return len(1)  # type: ignore[arg-type]


NON_DISABLE = [
    ("RAISE", _raise_and_catch, _raise_and_catch),
    ("EXCEPTION_HANDLED", _raise_and_catch, _raise_and_catch),
    ("RERAISE", _raise_in_except, _raise_in_except),
    ("PY_UNWIND", _unwind, _unwind),
    ("PY_THROW", _throw, _gen),
    ("C_RETURN", _c_return, _c_return),
    ("C_RAISE", _c_raise, _c_raise),
]


@pytest.mark.parametrize("name, run, where", NON_DISABLE, ids=[n[0] for n in NON_DISABLE])
def test_disable_from_non_local_event_raises(M: Any, tool: Tool, name: str, run: Any, where: Any) -> None:
    E = M.events
    bit = getattr(E, name)
    calls: list[Any] = []

    def cb(code: Any, *args: Any) -> Any:
        if code is where.__code__:
            calls.append(args)
            return M.DISABLE
        return None

    tool.register(bit, cb)
    tool.set_events(bit | (E.CALL | E.C_RETURN | E.C_RAISE if name.startswith("C_") else 0))
    try:
        with pytest.raises(ValueError) as info:
            run()
    finally:
        tool.set_events(0)
    assert str(info.value) == "Cannot disable %s events. Callback removed." % name
    assert len(calls) == 1
    # The callback was unregistered by the failed DISABLE.
    assert tool.register(bit, None) is None


def test_disable_from_raise_replaces_the_exception(M: Any, tool: Tool) -> None:
    def f() -> None:
        raise KeyError("original")

    tool.register(M.events.RAISE, lambda code, off, exc: M.DISABLE if code is f.__code__ else None)
    tool.set_events(M.events.RAISE)
    try:
        with pytest.raises(ValueError) as info:
            f()
    finally:
        tool.set_events(0)
    # Natively the ValueError's traceback does not include f (it replaced the
    # KeyError after f's frame was recorded), so only the chaining is checked.
    assert info.value.__context__ is None


def test_disable_from_raise_can_be_caught_in_monitored_function(M: Any, tool: Tool) -> None:
    def f() -> str:
        try:
            try:
                raise KeyError("original")
            except KeyError:
                return "KeyError"
        except ValueError as e:
            return "ValueError: " + str(e)

    tool.register(M.events.RAISE, lambda code, off, exc: M.DISABLE if code is f.__code__ else None)
    tool.set_events(M.events.RAISE)
    try:
        result = f()
    finally:
        tool.set_events(0)
    assert result == "ValueError: Cannot disable RAISE events. Callback removed."


def test_raise_events_stop_after_callback_removed(M: Any, tool: Tool) -> None:
    seen: list[str] = []

    def f() -> None:
        try:
            raise KeyError
        except KeyError:
            pass

    def cb(code: Any, off: int, exc: BaseException) -> Any:
        if code is f.__code__:
            seen.append(type(exc).__name__)
            return M.DISABLE
        return None

    tool.register(M.events.RAISE, cb)
    tool.set_events(M.events.RAISE)
    try:
        with pytest.raises(ValueError):
            f()
        f()
        f()
    finally:
        tool.set_events(0)
    assert seen == ["KeyError"]


def test_disable_from_non_local_event_leaves_other_tools(M: Any, make_tool: Any) -> None:
    def f() -> None:
        try:
            raise KeyError
        except KeyError:
            pass

    t1, t4 = make_tool(1), make_tool(4)
    seen: list[str] = []
    t4.register(M.events.RAISE, lambda code, off, exc: M.DISABLE if code is f.__code__ else None)
    t1.register(M.events.RAISE, lambda code, off, exc: seen.append(type(exc).__name__) if code is f.__code__ else None)
    t1.set_events(M.events.RAISE)
    t4.set_events(M.events.RAISE)
    try:
        with pytest.raises(ValueError):
            f()
        # Tool 4's failing callback kept tool 1 from seeing that event (lower ids
        # are skipped once a callback raises); now only tool 1 is left.
        assert seen == []
        f()
    finally:
        t1.set_events(0)
        t4.set_events(0)
    assert seen == ["KeyError"]
    assert M.register_callback(4, M.events.RAISE, None) is None


class _Arg:
    """An argument whose lifetime the tests watch through a weak reference."""


def test_call_disabled_during_the_call_still_ends_and_releases(M: Any, tool: Tool) -> None:
    import gc
    import weakref

    E = M.events
    seen: list[str] = []

    def on_call(code: Any, offset: int, callable: Any, arg0: Any) -> Any:
        if code is f.__code__:
            seen.append("CALL")
            return M.DISABLE
        return None

    def on_start(code: Any, offset: int) -> Any:
        # Most of f's event locations end up disabled, mid-call.
        return M.DISABLE if code is f.__code__ else None

    def on_return(code: Any, offset: int, callable: Any, arg0: Any) -> None:
        if code is f.__code__:
            seen.append("C_RETURN")

    def f(a: Any) -> int:
        return id(a)

    tool.register(E.CALL, on_call)
    tool.register(E.C_RETURN, on_return)
    tool.register(E.PY_START, on_start)
    tool.set_events(E.PY_START | E.CALL | E.C_RETURN | E.C_RAISE)
    try:
        arg = _Arg()
        alive = weakref.ref(arg)
        f(arg)
        f(arg)
        del arg
        gc.collect()
        assert alive() is None
    finally:
        tool.set_events(0)
    assert seen == ["CALL", "C_RETURN"]


def test_events_off_during_a_call_release_its_arguments(M: Any, tool: Tool) -> None:
    import gc
    import weakref

    E = M.events
    ended: list[Any] = []

    def stop(item: Any) -> int:
        tool.set_events(0)
        return 0

    def f(items: list[Any]) -> list[Any]:
        return sorted(items, key=stop)

    tool.register(E.CALL, lambda *args: None)
    tool.register(E.C_RETURN, lambda code, *args: ended.append(code))
    tool.set_events(E.CALL | E.C_RETURN | E.C_RAISE)
    items = [_Arg()]
    alive = weakref.ref(items[0])
    try:
        f(items)
    finally:
        tool.set_events(0)
    del items
    gc.collect()
    assert alive() is None
    assert f.__code__ not in ended
