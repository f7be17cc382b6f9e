"""RAISE, RERAISE, EXCEPTION_HANDLED, PY_UNWIND, PY_THROW and STOP_ITERATION.

Offsets of RAISE/RERAISE/PY_UNWIND are not reliable instruction starts
natively (3.13 reports inline-cache units, or the unit before a CALL for
exceptions from callees), so most tests compare kinds, exception objects
and lines.  The compiler's cleanup handlers add RERAISE/EXCEPTION_HANDLED
pairs that vary between versions (gh-112086); tests that meet them check
properties (first and last events, the balance property) instead of the
whole sequence.  STOP_ITERATION and RAISE(StopIteration) are
interchangeable natively (it depends on specialization), so tests accept
either.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable

import pytest

from .helpers import (
    Event,
    Recorder,
    Tool,
    drive,
    handler_offsets,
    line_of_offset,
    offset_of,
    rel_line_of_offset,
    traceback_entries,
)


def EXC(M: Any) -> int:
    E = M.events
    return E.RAISE | E.RERAISE | E.EXCEPTION_HANDLED | E.PY_UNWIND | E.PY_THROW | E.STOP_ITERATION


def of(rec: Recorder, target: Any) -> list[Event]:
    code = target if isinstance(target, types.CodeType) else target.__code__
    return [e for e in rec.events if e.code is code]


def kinds(rec: Recorder, target: Any) -> list[str]:
    return [e.name for e in of(rec, target)]


def check_balance(events: list[Event]) -> None:
    """Each RAISE/RERAISE is followed by one EXCEPTION_HANDLED or PY_UNWIND for the same exception."""
    pending = None
    for e in events:
        if e.name in ("RAISE", "RERAISE"):
            assert pending is None, "%s while %s is unresolved" % (e.compact(), pending.compact())
            pending = e
        elif e.name in ("EXCEPTION_HANDLED", "PY_UNWIND"):
            assert pending is not None, "%s without RAISE/RERAISE" % (e.compact(),)
            assert e.value is pending.value, (pending.compact(), e.compact())
            pending = None
    assert pending is None, "unresolved %s" % (pending.compact(),)


@types.coroutine
def _suspend(value: Any = None) -> Any:
    return (yield value)


# --------------------------------------------------------------------------
# raise / except


def test_raise_and_handle(M: Any, tool: Tool) -> None:
    exc = KeyError("k")

    def f() -> Any:
        try:
            raise exc
        except KeyError as e:
            return e

    with Recorder(tool, EXC(M), f) as rec:
        assert f() is exc
    assert rec.compact() == [("RAISE", "f", "KeyError"), ("EXCEPTION_HANDLED", "f", "KeyError")]
    raise_event, handled = rec.events
    assert raise_event.value is exc and handled.value is exc
    assert raise_event.offset == offset_of(f, "RAISE_VARARGS")
    assert handled.offset in handler_offsets(f)
    assert len(raise_event.args) == 2


def test_raise_line_of_failing_instruction(M: Any, tool: Tool) -> None:
    def f(a: int) -> Any:
        try:
            x = 1
            y = x / a
            return y
        except ZeroDivisionError:
            return None

    with Recorder(tool, M.events.RAISE, f) as rec:
        f(0)
    [event] = rec.events
    assert isinstance(event.value, ZeroDivisionError)
    assert rel_line_of_offset(f, event.offset) == 3


def test_exception_handled_before_handler_line(M: Any, tool: Tool) -> None:
    def f() -> None:
        try:
            raise KeyError
        except KeyError:
            pass

    with Recorder(tool, EXC(M) | M.events.LINE, f) as rec:
        f()
    assert rec.compact() == [
        ("LINE", "f", 1),
        ("LINE", "f", 2),
        ("RAISE", "f", "KeyError"),
        ("EXCEPTION_HANDLED", "f", "KeyError"),
        ("LINE", "f", 3),
        ("LINE", "f", 4),
    ]


def test_unhandled_exception_unwinds(M: Any, tool: Tool) -> None:
    def f() -> None:
        raise KeyError("out")

    with Recorder(tool, EXC(M), f) as rec:
        with pytest.raises(KeyError):
            f()
    assert rec.compact() == [("RAISE", "f", "KeyError"), ("PY_UNWIND", "f", "KeyError")]
    assert rec.events[0].value is rec.events[1].value
    assert rel_line_of_offset(f, rec.events[1].offset) == 1


def test_exception_through_frames(M: Any, tool: Tool) -> None:
    def inner() -> None:
        raise KeyError("i")

    def middle() -> None:
        inner()

    def f() -> str:
        try:
            middle()
        except KeyError:
            return "caught"
        return "no"

    with Recorder(tool, EXC(M), f, middle, inner) as rec:
        assert f() == "caught"
    assert rec.compact() == [
        ("RAISE", "inner", "KeyError"),
        ("PY_UNWIND", "inner", "KeyError"),
        ("RAISE", "middle", "KeyError"),
        ("PY_UNWIND", "middle", "KeyError"),
        ("RAISE", "f", "KeyError"),
        ("EXCEPTION_HANDLED", "f", "KeyError"),
    ]
    assert len({id(e.value) for e in rec.events}) == 1


def test_bare_raise_is_reraise(M: Any, tool: Tool) -> None:
    def f() -> None:
        try:
            try:
                raise KeyError
            except KeyError:
                raise
        except KeyError:
            pass

    with Recorder(tool, EXC(M), f) as rec:
        f()
    names = rec.names()
    assert names[:3] == ["RAISE", "EXCEPTION_HANDLED", "RERAISE"]
    assert names.count("RAISE") == 1
    assert rel_line_of_offset(f, rec.events[2].offset) == 5
    assert names[-1] == "EXCEPTION_HANDLED"
    assert "PY_UNWIND" not in names
    check_balance(rec.events)
    assert len({id(e.value) for e in rec.events}) == 1


def test_named_reraise_is_raise(M: Any, tool: Tool) -> None:
    def f() -> None:
        try:
            try:
                raise KeyError
            except KeyError as e:
                raise e
        except KeyError:
            pass

    with Recorder(tool, EXC(M), f) as rec:
        f()
    raises = rec.only("RAISE")
    assert len(raises) == 2
    assert [rel_line_of_offset(f, r.offset) for r in raises] == [3, 5]
    assert rec.names()[:4] == ["RAISE", "EXCEPTION_HANDLED", "RAISE", "EXCEPTION_HANDLED"]
    check_balance(rec.events)


def test_raise_new_exception_in_except(M: Any, tool: Tool) -> None:
    def f() -> Any:
        try:
            try:
                raise KeyError
            except KeyError as e:
                raise ValueError("v") from e
        except ValueError as e:
            return e

    with Recorder(tool, EXC(M), f) as rec:
        result = f()
    assert [(e.name, type(e.value).__name__) for e in rec.only("RAISE")] == [("RAISE", "KeyError"), ("RAISE", "ValueError")]
    assert rec.events[-1].name == "EXCEPTION_HANDLED" and rec.events[-1].value is result
    check_balance(rec.events)


def test_non_matching_except_still_handled_event(M: Any, tool: Tool) -> None:
    # EXCEPTION_HANDLED means "a handler was entered", not "swallowed".
    def f() -> None:
        try:
            try:
                raise KeyError
            except ValueError:
                pass
        except KeyError:
            pass

    with Recorder(tool, EXC(M), f) as rec:
        f()
    names = rec.names()
    assert names[:2] == ["RAISE", "EXCEPTION_HANDLED"]
    assert "RERAISE" in names
    assert names.count("RAISE") == 1
    assert names[-1] == "EXCEPTION_HANDLED"
    check_balance(rec.events)


def test_try_finally_propagating(M: Any, tool: Tool) -> None:
    ran: list[str] = []

    def f() -> None:
        try:
            try:
                raise KeyError
            finally:
                ran.append("finally")
        except KeyError:
            pass

    with Recorder(tool, EXC(M), f) as rec:
        f()
    assert ran == ["finally"]
    names = rec.names()
    assert names[:3] == ["RAISE", "EXCEPTION_HANDLED", "RERAISE"]
    assert names[-1] == "EXCEPTION_HANDLED"
    check_balance(rec.events)


def test_finally_without_exception_has_no_events(M: Any, tool: Tool) -> None:
    def f() -> int:
        try:
            x = 1
        finally:
            x = 2
        return x

    with Recorder(tool, EXC(M), f) as rec:
        f()
    assert rec.events == []


def test_with_exit_swallowing(M: Any, tool: Tool) -> None:
    class Swallow:
        def __enter__(self) -> "Swallow":
            return self

        def __exit__(self, *exc: Any) -> bool:
            return True

    def f() -> str:
        with Swallow():
            raise KeyError
        return "after"

    with Recorder(tool, EXC(M), f) as rec:
        assert f() == "after"
    assert rec.compact() == [("RAISE", "f", "KeyError"), ("EXCEPTION_HANDLED", "f", "KeyError")]


def test_with_exit_not_swallowing(M: Any, tool: Tool) -> None:
    class Keep:
        def __enter__(self) -> "Keep":
            return self

        def __exit__(self, *exc: Any) -> bool:
            return False

    def f() -> None:
        try:
            with Keep():
                raise KeyError
        except KeyError:
            pass

    with Recorder(tool, EXC(M), f) as rec:
        f()
    names = rec.names()
    assert names[:3] == ["RAISE", "EXCEPTION_HANDLED", "RERAISE"]
    assert names[-1] == "EXCEPTION_HANDLED"
    check_balance(rec.events)


# `except*` is 3.11 syntax: these functions are compiled where it exists.
EXCEPT_STAR_SOURCE = """
def all_handled():
    seen = []
    try:
        raise ExceptionGroup("eg", [KeyError(1), ValueError(2)])
    except* KeyError:
        seen.append("k")
    except* ValueError:
        seen.append("v")
    return seen

def partly_handled():
    try:
        raise ExceptionGroup("eg", [KeyError(1), ValueError(2)])
    except* KeyError:
        pass
"""

needs_except_star = pytest.mark.skipif(sys.version_info < (3, 11), reason="except* is 3.11 syntax")


def _except_star(name: str) -> Any:
    namespace: dict = {}
    exec(compile(EXCEPT_STAR_SOURCE, "<except-star>", "exec"), namespace)
    return namespace[name]


@needs_except_star
def test_exception_groups_except_star(M: Any, tool: Tool) -> None:
    f = _except_star("all_handled")
    with Recorder(tool, EXC(M), f) as rec:
        assert f() == ["k", "v"]
    raises = rec.only("RAISE")
    assert len(raises) == 1 and isinstance(raises[0].value, ExceptionGroup)  # noqa: F821
    assert rec.names()[:2] == ["RAISE", "EXCEPTION_HANDLED"]
    assert "PY_UNWIND" not in rec.names()


@needs_except_star
def test_exception_groups_partly_unhandled(M: Any, tool: Tool) -> None:
    f = _except_star("partly_handled")
    with Recorder(tool, EXC(M), f) as rec:
        with pytest.raises(ExceptionGroup) as info:  # noqa: F821
            f()
    assert rec.names()[:2] == ["RAISE", "EXCEPTION_HANDLED"]
    assert rec.events[-1].name == "PY_UNWIND"
    assert rec.events[-1].value is info.value
    assert [type(x) for x in info.value.exceptions] == [ValueError]


def test_exception_in_comprehension(M: Any, tool: Tool) -> None:
    def f() -> Any:
        try:
            return [1 / x for x in (1, 0)]
        except ZeroDivisionError as e:
            return e

    with Recorder(tool, EXC(M), f) as rec:
        result = f()
    mine = of(rec, f)
    assert mine[-1].name == "EXCEPTION_HANDLED" and mine[-1].value is result
    assert [e.name for e in mine].count("RAISE") == 1
    check_balance(mine)


def _exc_info_seen(M: Any, tool: Tool, event: str) -> list[tuple]:
    """(exception the callback got, sys.exc_info()'s exception in it) for
    each `event` of a function that raises KeyError, then, handling it,
    ValueError."""
    def f() -> None:
        try:
            raise KeyError("a")
        except KeyError:
            try:
                raise ValueError("b")
            except ValueError:
                pass

    seen: list[tuple] = []

    def callback(code: Any, off: int, exc: BaseException) -> None:
        if code is f.__code__:
            seen.append((type(exc).__name__, type(sys.exc_info()[1]).__name__))

    tool.register(getattr(M.events, event), callback)
    tool.set_events(getattr(M.events, event))
    try:
        f()
    finally:
        tool.set_events(0)
    return seen


def test_sys_exc_info_in_raise_callback_is_the_handled_exception(M: Any, tool: Tool) -> None:
    assert _exc_info_seen(M, tool, "RAISE") == [("KeyError", "NoneType"), ("ValueError", "KeyError")]


def test_exception_handled_callback_sees_what_was_handled_before(M: Any, tool: Tool) -> None:
    seen = _exc_info_seen(M, tool, "EXCEPTION_HANDLED")
    assert seen[0] == ("KeyError", "NoneType")
    assert ("ValueError", "KeyError") in seen
    assert sys.exc_info() == (None, None, None)


def test_exception_carries_its_traceback_as_it_leaves_each_frame(M: Any, tool: Tool) -> None:
    """RAISE and PY_UNWIND of the frames an uncaught exception leaves find
    its __traceback__ holding every frame it left so far, the current one
    first (a debugger reads it at PY_UNWIND to tell an uncaught exception)."""
    def crash() -> None:
        raise KeyError("k")

    def middle() -> None:
        crash()

    seen: list[tuple] = []

    def callback(name: str) -> Callable[..., None]:
        def record(code: Any, off: int, exc: BaseException) -> None:
            if code in (crash.__code__, middle.__code__):
                entries = []
                tb = exc.__traceback__
                while tb is not None:
                    entries.append(tb.tb_frame.f_code.co_name)
                    tb = tb.tb_next
                seen.append((name, code.co_name, entries))

        return record

    E = M.events
    tool.register(E.RAISE, callback("RAISE"))
    tool.register(E.PY_UNWIND, callback("PY_UNWIND"))
    tool.set_events(E.RAISE | E.PY_UNWIND)
    try:
        with pytest.raises(KeyError):
            middle()
    finally:
        tool.set_events(0)
    assert seen == [
        ("RAISE", "crash", ["crash"]),
        ("PY_UNWIND", "crash", ["crash"]),
        ("RAISE", "middle", ["middle", "crash"]),
        ("PY_UNWIND", "middle", ["middle", "crash"]),
    ]


def test_raise_callback_exception_replaces_in_flight(M: Any, tool: Tool) -> None:
    def f() -> None:
        raise KeyError("original")

    def raise_cb(code: Any, off: int, exc: BaseException) -> None:
        if code is f.__code__ and isinstance(exc, KeyError):
            raise RuntimeError("from callback")

    tool.register(M.events.RAISE, raise_cb)
    tool.set_events(M.events.RAISE)
    try:
        with pytest.raises(RuntimeError, match="from callback") as info:
            f()
    finally:
        tool.set_events(0)
    assert info.value.__context__ is None


@pytest.mark.parametrize("event", ["RAISE", "PY_UNWIND"])
def test_callback_exception_leaving_a_frame_has_no_entry_for_it(M: Any, tool: Tool,
                                                               event: str) -> None:
    """An exception a RAISE or PY_UNWIND callback raises as another leaves a
    frame goes on from there: its traceback starts with the callback's own
    frame and then the callers, without the frame the first one left."""
    def inner() -> None:
        raise KeyError("leaves inner")

    def outer() -> list:
        try:
            inner()
        except RuntimeError as error:
            return [tb.tb_frame.f_code.co_name for tb in traceback_entries(error.__traceback__)]
        raise AssertionError("the callback's exception did not propagate")

    def callback(code: Any, off: int, exc: BaseException) -> None:
        if code is inner.__code__ and isinstance(exc, KeyError):
            raise RuntimeError("from callback")

    tool.register(getattr(M.events, event), callback)
    tool.set_events(getattr(M.events, event))
    try:
        names = outer()
    finally:
        tool.set_events(0)
    assert names == ["outer", "callback"]


def test_raise_after_a_callback_replaced_an_exception_leaving_the_frame(M: Any, tool: Tool) -> None:
    """The exception a RAISE callback raised as another left the frame is the
    caller's business; a later call of the function (whose frame may reuse the
    same memory, its exceptions too) still reports its own raises."""
    def f(fail: bool) -> None:
        if fail:
            raise KeyError("leaves the frame")
        try:
            raise ValueError("handled here")
        except ValueError:
            pass

    seen: list = []

    def raise_cb(code: Any, off: int, exc: BaseException) -> None:
        if code is f.__code__:
            seen.append(type(exc))
            if isinstance(exc, KeyError):
                raise RuntimeError("from callback")

    tool.register(M.events.RAISE, raise_cb)
    tool.set_events(M.events.RAISE)
    try:
        for _ in range(20):
            try:
                f(True)
            except RuntimeError:
                pass  # freed here: the next exception may take its memory
            else:
                raise AssertionError("the callback's exception did not propagate")
            f(False)
    finally:
        tool.set_events(0)
    assert seen == [KeyError, ValueError] * 20


# --------------------------------------------------------------------------
# Generators and coroutines


def test_exception_escaping_generator(M: Any, tool: Tool) -> None:
    def g() -> Any:
        yield 1
        {}["x"]

    with Recorder(tool, EXC(M), g) as rec:
        with pytest.raises(KeyError):
            list(g())
    # The implicit StopIteration->RuntimeError wrapper handles and re-raises it.
    assert rec.names() == ["RAISE", "EXCEPTION_HANDLED", "RERAISE", "PY_UNWIND"]
    assert rel_line_of_offset(g, rec.events[0].offset) == 2
    check_balance(rec.events)
    assert len({id(e.value) for e in rec.events}) == 1


def test_raise_stopiteration_inside_generator(M: Any, tool: Tool) -> None:
    def g() -> Any:
        yield 1
        raise StopIteration

    with Recorder(tool, EXC(M), g) as rec:
        with pytest.raises(RuntimeError) as info:
            list(g())
    assert isinstance(info.value.__cause__, StopIteration)
    # From 3.12 the conversion to RuntimeError is a handler in the bytecode
    # (RAISE, EXCEPTION_HANDLED, RERAISE RuntimeError, PY_UNWIND RuntimeError);
    # without it the frame unwinds with the StopIteration.
    assert rec.events[0].compact() == ("RAISE", "g", "StopIteration")
    assert rec.events[0].value is info.value.__cause__
    assert rec.events[-1].name == "PY_UNWIND"
    assert type(rec.events[-1].value) in (StopIteration, RuntimeError)
    check_balance(rec.events)


def test_throw_handled_in_generator(M: Any, tool: Tool) -> None:
    exc = KeyError("k")

    def g() -> Any:
        try:
            yield 1
        except KeyError:
            yield "caught"

    with Recorder(tool, EXC(M) | M.events.PY_YIELD, g) as rec:
        it = g()
        next(it)
        assert it.throw(exc) == "caught"
    assert rec.compact() == [
        ("PY_YIELD", "g", 1),
        ("PY_THROW", "g", "KeyError"),
        ("RAISE", "g", "KeyError"),
        ("EXCEPTION_HANDLED", "g", "KeyError"),
        ("PY_YIELD", "g", "caught"),
    ]
    assert all(e.value is exc for e in rec.events[1:4])
    assert len(rec.events[1].args) == 2
    it.close()


def test_throw_not_handled_in_generator(M: Any, tool: Tool) -> None:
    def g() -> Any:
        yield 1

    it = g()
    next(it)
    with Recorder(tool, EXC(M), g) as rec:
        with pytest.raises(KeyError):
            it.throw(KeyError("k"))
    # The implicit handler of generators reports what leaves them.
    assert rec.names() == ["PY_THROW", "RAISE", "EXCEPTION_HANDLED", "RERAISE", "PY_UNWIND"]
    check_balance(rec.events)


def test_throw_into_unstarted_generator(M: Any, tool: Tool) -> None:
    def g() -> Any:
        yield 1

    with Recorder(tool, EXC(M) | M.events.PY_START, g) as rec:
        with pytest.raises(KeyError):
            g().throw(KeyError("k"))
    assert rec.compact() == [("PY_THROW", "g", "KeyError"), ("RAISE", "g", "KeyError"), ("PY_UNWIND", "g", "KeyError")]


def test_close_generator_inside_try(M: Any, tool: Tool) -> None:
    # With a handler around the yield both versions throw GeneratorExit in;
    # without one 3.13 short-circuits close() and reports nothing.
    ran: list[str] = []

    def g() -> Any:
        try:
            yield 1
        finally:
            ran.append("finally")

    it = g()
    next(it)
    with Recorder(tool, EXC(M), g) as rec:
        it.close()
    assert ran == ["finally"]
    names = rec.names()
    assert names[:2] == ["PY_THROW", "RAISE"]
    assert names[-1] == "PY_UNWIND"
    assert all(isinstance(e.value, GeneratorExit) for e in rec.events)
    check_balance(rec.events)


def test_close_unstarted_generator_no_events(M: Any, tool: Tool) -> None:
    def g() -> Any:
        try:
            yield 1
        finally:
            pass

    it = g()
    with Recorder(tool, EXC(M) | M.events.PY_START, g) as rec:
        it.close()
    assert rec.events == []


def test_throw_through_yield_from_handled_inside(M: Any, tool: Tool) -> None:
    def inner() -> Any:
        try:
            yield 1
        except KeyError:
            yield "caught"

    def outer() -> Any:
        yield from inner()

    it = outer()
    next(it)
    with Recorder(tool, EXC(M) | M.events.PY_YIELD, outer, inner) as rec:
        assert it.throw(KeyError("k")) == "caught"
    assert [e.compact() for e in of(rec, inner)] == [
        ("PY_THROW", "inner", "KeyError"),
        ("RAISE", "inner", "KeyError"),
        ("EXCEPTION_HANDLED", "inner", "KeyError"),
        ("PY_YIELD", "inner", "caught"),
    ]
    # throw() is passed down to the inner generator by the runtime: the outer
    # frame is not thrown into.  (Natively it reports no PY_YIELD either for
    # the value coming back this way; that is not asserted.)
    assert [e.name for e in of(rec, outer) if e.name != "PY_YIELD"] == []
    it.close()


def test_throw_through_yield_from_not_handled(M: Any, tool: Tool) -> None:
    def inner() -> Any:
        yield 1

    def outer() -> Any:
        yield from inner()

    it = outer()
    next(it)
    with Recorder(tool, EXC(M), outer, inner) as rec:
        with pytest.raises(KeyError):
            it.throw(KeyError("k"))
    assert kinds(rec, inner) == ["PY_THROW", "RAISE", "EXCEPTION_HANDLED", "RERAISE", "PY_UNWIND"]
    assert kinds(rec, outer)[:2] == ["PY_THROW", "RAISE"]
    assert kinds(rec, outer)[-1] == "PY_UNWIND"
    # The inner frame finishes unwinding before the outer one is thrown into.
    assert rec.names().index("PY_UNWIND") < [e.code for e in rec.events].index(outer.__code__)
    check_balance(of(rec, inner))
    check_balance(of(rec, outer))


def test_throw_into_coroutine(M: Any, tool: Tool) -> None:
    async def c() -> str:
        try:
            await _suspend()
        except KeyError:
            return "caught"
        return "no"

    coro = c()
    coro.send(None)
    with Recorder(tool, EXC(M), c, _suspend) as rec:
        with pytest.raises(StopIteration) as info:
            coro.throw(KeyError("k"))
    assert info.value.value == "caught"
    names = [(e.name, e.code.co_name) for e in rec.events]
    assert names[0] == ("PY_THROW", "_suspend")
    assert names.index(("PY_UNWIND", "_suspend")) < names.index(("PY_THROW", "c"))
    assert names[-1] == ("EXCEPTION_HANDLED", "c")
    check_balance(of(rec, c))
    check_balance(of(rec, _suspend.__code__))


def test_exception_in_coroutine_propagates_to_awaiter(M: Any, tool: Tool) -> None:
    async def inner() -> None:
        raise KeyError("i")

    async def outer() -> str:
        try:
            await inner()
        except KeyError:
            return "caught"
        return "no"

    with Recorder(tool, EXC(M), outer, inner) as rec:
        assert drive(outer()) == "caught"
    assert kinds(rec, inner)[0] == "RAISE" and kinds(rec, inner)[-1] == "PY_UNWIND"
    assert kinds(rec, outer)[0] == "RAISE" and kinds(rec, outer)[-1] == "EXCEPTION_HANDLED"
    check_balance(of(rec, inner))
    check_balance(of(rec, outer))


# --------------------------------------------------------------------------
# StopIteration in its various forms


def _stop_events(events: list[Event]) -> list[Event]:
    return [e for e in events if e.name == "STOP_ITERATION" or (e.name == "RAISE" and isinstance(e.value, StopIteration))]


def test_for_loop_over_generator_stop(M: Any, tool: Tool) -> None:
    def one() -> Any:
        yield 1
        return "r"

    def f() -> None:
        for i in range(3):
            for x in one():
                pass

    with Recorder(tool, EXC(M), f) as rec:
        f()
    stops = _stop_events(rec.events)
    # One per exhaustion, STOP_ITERATION or RAISE(StopIteration) depending on specialization.
    assert len(stops) == 3
    for e in stops:
        assert e.value.value == "r"
        assert rel_line_of_offset(f, e.offset) == 2
    assert not [e for e in rec.events if e.name in ("EXCEPTION_HANDLED", "PY_UNWIND", "RERAISE")]


def test_yield_from_stop(M: Any, tool: Tool) -> None:
    def one() -> Any:
        yield 1
        return "r"

    def d() -> Any:
        r = yield from one()
        return r

    with Recorder(tool, EXC(M) | M.events.PY_RETURN, d) as rec:
        for _ in range(3):
            assert list(d()) == [1]
    stops = _stop_events(rec.events)
    assert len(stops) == 3
    for e in stops:
        assert e.value.value == "r"
        assert rel_line_of_offset(d, e.offset) == 1
    assert [e.value for e in rec.only("PY_RETURN")] == ["r"] * 3


def test_await_stop(M: Any, tool: Tool) -> None:
    async def inner() -> int:
        return 5

    async def outer() -> int:
        v = await inner()
        return v

    with Recorder(tool, EXC(M), outer) as rec:
        for _ in range(3):
            assert drive(outer()) == 5
    stops = _stop_events(rec.events)
    assert len(stops) == 3
    assert all(e.value.value == 5 for e in stops)


def test_stop_iteration_event_arguments(M: Any, tool: Tool) -> None:
    def one() -> Any:
        yield 1
        return "r"

    def f() -> None:
        for x in one():
            pass

    with Recorder(tool, M.events.STOP_ITERATION | M.events.RAISE, f) as rec:
        for _ in range(4):
            f()
    for e in rec.events:
        assert e.code is f.__code__
        assert isinstance(e.value, StopIteration)
        assert len(e.args) == 2


def test_next_on_exhausted_iterator(M: Any, tool: Tool) -> None:
    def f() -> str:
        it = iter([])
        try:
            next(it)
        except StopIteration:
            return "stop"
        return "no"

    E = M.events
    with Recorder(tool, EXC(M) | E.CALL | E.C_RETURN | E.C_RAISE, f) as rec:
        assert f() == "stop"
    # A real StopIteration raised by the builtin next(): C_RAISE, then ordinary handling.
    assert rec.names() == ["CALL", "C_RETURN", "CALL", "C_RAISE", "RAISE", "EXCEPTION_HANDLED"]
    c_raise = rec.only("C_RAISE")[0]
    assert c_raise.args[1] is next and type(c_raise.args[2]).__name__ == "list_iterator"
    assert rec.compact()[-2:] == [("RAISE", "f", "StopIteration"), ("EXCEPTION_HANDLED", "f", "StopIteration")]


def test_iterator_class_raising_stop_iteration(M: Any, tool: Tool) -> None:
    class Once:
        def __init__(self) -> None:
            self.done = False

        def __iter__(self) -> "Once":
            return self

        def __next__(self) -> int:
            if self.done:
                raise StopIteration
            self.done = True
            return 1

    def f() -> list:
        out = []
        for x in Once():
            out.append(x)
        return out

    with Recorder(tool, EXC(M), f, Once.__next__) as rec:
        assert f() == [1]
    assert kinds(rec, Once.__next__) == ["RAISE", "PY_UNWIND"]
    consumer = of(rec, f)
    # The loop ends normally: at most a RAISE of the StopIteration, never handled/unwound.
    assert [e.name for e in consumer] in ([], ["RAISE"])
    assert all(isinstance(e.value, StopIteration) for e in consumer)


def test_async_for_termination(M: Any, tool: Tool) -> None:
    async def ag() -> Any:
        yield 1

    async def c() -> list:
        out = []
        async for v in ag():
            out.append(v)
        return out

    with Recorder(tool, EXC(M), c) as rec:
        assert drive(c()) == [1]
    # Each step may show as a StopIteration RAISE; the end is StopAsyncIteration, handled.
    tail = [(e.name, type(e.value).__name__) for e in rec.events if not isinstance(e.value, StopIteration)]
    assert tail == [("RAISE", "StopAsyncIteration"), ("EXCEPTION_HANDLED", "StopAsyncIteration")]


def test_async_for_reraises_other_exceptions(M: Any, tool: Tool) -> None:
    class Failing:
        def __aiter__(self) -> "Failing":
            return self

        async def __anext__(self) -> Any:
            raise KeyError("k")

    async def c() -> str:
        try:
            async for _ in Failing():
                pass
        except KeyError:
            return "caught"
        return "no"

    with Recorder(tool, EXC(M), c) as rec:
        assert drive(c()) == "caught"
    # END_ASYNC_FOR handles what __anext__ raised and re-raises all but StopAsyncIteration.
    assert kinds(rec, c) == ["RAISE", "EXCEPTION_HANDLED", "RERAISE", "EXCEPTION_HANDLED"]
    check_balance(of(rec, c))


def test_each_raise_in_a_loop_is_reported(M: Any, tool: Tool) -> None:
    """Exceptions raised one after the other at one place are distinct raises,
    even when each reuses the memory of the last (same frame, same addresses)."""

    def f() -> int:
        d: dict = {}
        caught = 0
        for key in range(5):
            try:
                d[key]
            except KeyError:
                caught += 1
        return caught

    with Recorder(tool, EXC(M), f) as rec:
        assert f() == 5
    assert rec.names() == ["RAISE", "EXCEPTION_HANDLED"] * 5
    assert [type(e.value) for e in rec.events] == [KeyError] * 10


# --------------------------------------------------------------------------
# Balance and ordering


def test_balance_in_a_complex_function(M: Any, tool: Tool) -> None:
    class CM:
        def __enter__(self) -> "CM":
            return self

        def __exit__(self, *a: Any) -> bool:
            return False

    def f() -> list:
        log = []
        for exc in (KeyError, ValueError, TypeError):
            try:
                try:
                    with CM():
                        raise exc
                finally:
                    log.append("f")
            except KeyError:
                log.append("k")
            except ValueError:
                try:
                    raise
                except ValueError:
                    log.append("v")
            except TypeError as e:
                try:
                    raise RuntimeError from e
                except RuntimeError:
                    log.append("t")
        return log

    with Recorder(tool, EXC(M), f) as rec:
        assert f() == ["f", "k", "f", "v", "f", "t"]
    check_balance(rec.events)
    assert "PY_UNWIND" not in rec.names()
    assert len(rec.only("RAISE")) == 4


def test_generator_and_coroutine_interleaving(M: Any, tool: Tool) -> None:
    def gen_a() -> Any:
        yield "a1"
        yield "a2"

    def gen_b() -> Any:
        try:
            yield "b1"
        except KeyError:
            yield "b-caught"

    async def coro() -> str:
        got = await _suspend("c1")
        return got

    E = M.events
    events = E.PY_START | E.PY_RESUME | E.PY_YIELD | E.PY_RETURN | E.PY_THROW | E.RAISE | E.EXCEPTION_HANDLED
    with Recorder(tool, events, gen_a, gen_b, coro) as rec:
        a, b, c = gen_a(), gen_b(), coro()
        out = [next(a), next(b), c.send(None), next(a), b.throw(KeyError("k"))]
        try:
            c.send("c-done")
        except StopIteration as stop:
            out.append(stop.value)
        out.append(next(a, "a-end"))
    assert out == ["a1", "b1", "c1", "a2", "b-caught", "c-done", "a-end"]
    assert rec.compact() == [
        ("PY_START", "gen_a"),
        ("PY_YIELD", "gen_a", "a1"),
        ("PY_START", "gen_b"),
        ("PY_YIELD", "gen_b", "b1"),
        ("PY_START", "coro"),
        ("PY_YIELD", "coro", "c1"),
        ("PY_RESUME", "gen_a"),
        ("PY_YIELD", "gen_a", "a2"),
        ("PY_THROW", "gen_b", "KeyError"),
        ("RAISE", "gen_b", "KeyError"),
        ("EXCEPTION_HANDLED", "gen_b", "KeyError"),
        ("PY_YIELD", "gen_b", "b-caught"),
        ("PY_RESUME", "coro"),
        ("PY_RETURN", "coro", "c-done"),
        ("PY_RESUME", "gen_a"),
        ("PY_RETURN", "gen_a", None),
    ]
    b.close()


def test_exception_events_with_lines(M: Any, tool: Tool) -> None:
    def f() -> str:
        try:
            x = {}
            return x["missing"]
        except KeyError:
            return "handled"

    with Recorder(tool, EXC(M) | M.events.LINE, f) as rec:
        assert f() == "handled"
    assert [e[0] if e[0] != "LINE" else e for e in rec.compact()] == [
        ("LINE", "f", 1),
        ("LINE", "f", 2),
        ("LINE", "f", 3),
        "RAISE",
        "EXCEPTION_HANDLED",
        ("LINE", "f", 4),
        ("LINE", "f", 5),
    ]
    assert line_of_offset(f, rec.only("RAISE")[0].offset) == f.__code__.co_firstlineno + 3


@pytest.mark.parametrize("returned", [None, "r", (1, 2), ValueError("v")], ids=repr)
def test_stop_iteration_value_of_yield_from(M: Any, tool: Tool, returned: Any) -> None:
    def inner() -> Any:
        yield 1
        return returned

    def outer() -> Any:
        try:
            raise KeyError
        except KeyError:
            # The value comes back while KeyError is being handled: making
            # the event's exception must not chain anything onto it.
            return (yield from inner())

    with Recorder(tool, M.events.STOP_ITERATION, outer) as rec:
        assert list(outer()) == [1]
    (event,) = rec.events
    assert type(event.value) is StopIteration
    # Made as raising StopIteration(value) would: a tuple gives the arguments.
    expected = returned if isinstance(returned, tuple) else () if returned is None else (returned,)
    assert event.value.args == expected
    if isinstance(returned, BaseException):
        assert returned.__context__ is None


class _ThrowingSub:
    """A subiterator (not a generator) whose throw() raises KeyError."""

    def __iter__(self) -> "_ThrowingSub":
        return self

    def __next__(self) -> int:
        return 1

    def throw(self, *args: Any) -> None:
        raise KeyError("from sub")


def _delegating(log: list) -> Any:
    try:
        # The loop's SEND jumps past the try block (into the inlined
        # finally of the return): where throw() resumes the frame.
        return (yield from _ThrowingSub())
    finally:
        log.append("finally")


@pytest.mark.parametrize("names", [("LINE",), ("STOP_ITERATION",), ("LINE", "STOP_ITERATION"),
                                   ("LINE", "BRANCH", "JUMP", "INSTRUCTION", "STOP_ITERATION")],
                         ids=lambda names: "+".join(names))
def test_throw_ending_a_yield_from_reaches_the_handler_around_it(M: Any, tool: Tool, names: tuple) -> None:
    E = M.events
    events = 0
    for name in names:
        events |= getattr(E, name)
        tool.register(getattr(E, name), lambda *args: None)
    tool.set_local(_delegating, events)
    try:
        for _ in range(2):
            log: list = []
            gen = _delegating(log)
            assert next(gen) == 1
            with pytest.raises(KeyError):
                gen.throw(ValueError)
            assert log == ["finally"]
    finally:
        tool.set_local(_delegating, 0)
