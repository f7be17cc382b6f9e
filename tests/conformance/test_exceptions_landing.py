"""Exception events where the exception lands, and for loops that end.

Cases an engine that reports a raise where the exception lands (the 3.10
back end: at the handler it enters, or as the frame exits) and that
replaces the iterator of a for loop must get right: re-raises in threads
and in frames without a handler, loops that end by break, by an error of
the generator, or that are disabled and restarted.  Native 3.12/3.13 are the oracle.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Iterator

from .helpers import Recorder, Tool, rel_line_of_offset


def EXC(M: Any) -> int:
    E = M.events
    return E.RAISE | E.RERAISE | E.EXCEPTION_HANDLED | E.PY_UNWIND | E.STOP_ITERATION


def _reraise_current() -> None:
    raise


def test_bare_raise_in_a_function_without_handler(M: Any, tool: Tool) -> None:
    def f() -> str:
        try:
            raise KeyError("k")
        except KeyError:
            try:
                _reraise_current()
            except KeyError:
                return "caught"
        return "no"

    with Recorder(tool, EXC(M), f, _reraise_current) as rec:
        assert f() == "caught"
    inner = [e.name for e in rec.events if e.code is _reraise_current.__code__]
    assert inner == ["RERAISE", "PY_UNWIND"]
    assert len({id(e.value) for e in rec.events}) == 1


def test_reraises_in_two_threads(M: Any, tool: Tool) -> None:
    def f(n: int) -> int:
        caught = 0
        for i in range(n):
            try:
                try:
                    raise KeyError(i)
                except KeyError:
                    raise
            except KeyError:
                caught += 1
        return caught

    results: list = []
    with Recorder(tool, EXC(M), f) as rec:
        threads = [threading.Thread(target=lambda: results.append(f(200))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [200, 200]
    names = rec.names()
    # Each exception is raised once, then raised again (by the bare raise,
    # and natively by the compiler's cleanup handler too).
    assert names.count("RAISE") == 400
    assert names.count("RERAISE") >= 400
    assert "PY_UNWIND" not in names


def _gen_ok() -> Iterator[int]:
    yield 1
    yield 2
    return 3


def _gen_failing() -> Iterator[int]:
    yield 1
    raise KeyError("from the generator")


def test_for_loop_left_by_break_reports_no_stop(M: Any, tool: Tool) -> None:
    closed: list = []

    def g() -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    def f() -> int:
        for x in g():
            break
        return x

    with Recorder(tool, M.events.STOP_ITERATION | M.events.RAISE, f) as rec:
        assert f() == 1
    assert closed == [True]
    assert rec.events == []


def test_for_loop_over_a_failing_generator(M: Any, tool: Tool) -> None:
    def f() -> str:
        try:
            for x in _gen_failing():
                pass
        except KeyError as e:
            return str(e)
        return "no"

    with Recorder(tool, EXC(M), f) as rec:
        assert f() == "'from the generator'"
    assert rec.compact() == [("RAISE", "f", "KeyError"), ("EXCEPTION_HANDLED", "f", "KeyError")]
    # (Natively the offset is FOR_ITER's or a unit near it, by version.)
    assert rel_line_of_offset(f, rec.events[0].offset) == 2


def test_stop_iteration_disabled_then_restarted(M: Any, tool: Tool) -> None:
    def f() -> int:
        total = 0
        for x in _gen_ok():
            total += x
        return total

    with Recorder(tool, M.events.STOP_ITERATION, f, returns=M.DISABLE) as rec:
        for _ in range(3):
            assert f() == 3
        M.restart_events()
        assert f() == 3
    assert [e.name for e in rec.events] == ["STOP_ITERATION"] * 2
    assert [e.value.value for e in rec.events] == [3, 3]


def test_callback_exception_at_a_handler_is_what_the_handler_gets(M: Any, tool: Tool) -> None:
    def f() -> str:
        try:
            {}["missing"]
        except RuntimeError as e:
            return "runtime: %s" % e
        except KeyError:
            return "key"
        return "no"

    def on_raise(code: Any, offset: int, exc: BaseException) -> None:
        if code is f.__code__ and isinstance(exc, KeyError):
            raise RuntimeError("from the callback")

    tool.register(M.events.RAISE, on_raise)
    tool.set_events(M.events.RAISE)
    try:
        assert f() == "runtime: from the callback"
    finally:
        tool.set_events(0)
    assert sys.exc_info() == (None, None, None)
