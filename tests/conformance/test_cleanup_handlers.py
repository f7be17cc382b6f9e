"""EXCEPTION_HANDLED and RERAISE where an exception leaves a handler's body.

From 3.11 the compiler wraps the body of each except clause, the
exceptional path of each finally clause and a with statement's exit in a
cleanup handler (COPY 3; POP_EXCEPT; RERAISE 1): an exception that leaves
such a body is handled there and raised again, one EXCEPTION_HANDLED and
one RERAISE for each body it leaves, after its RAISE or RERAISE and before
it reaches the next handler or PY_UNWIND.  The name cleanup of
``except E as name:`` is one more handler of the same kind (no exception
info pushed), and so is END_ASYNC_FOR's; generators and coroutines end in
one that turns StopIteration into RuntimeError.  3.10 has no such
instructions (it pops its EXCEPT_HANDLER blocks as it unwinds) and the
engine delivers the same events there.

Sequences are per code object, with the exception's type; the offsets of
the cleanup handlers have no counterpart on 3.10 and are not compared.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import pytest

from .helpers import Recorder, Tool, drive, line_of_offset


class A(Exception):
    pass


class B(Exception):
    pass


class ExitCM:
    """A context manager whose __exit__ swallows nothing, or raises B."""

    def __init__(self, raise_b: bool = False) -> None:
        self.raise_b = raise_b

    def __enter__(self) -> "ExitCM":
        return self

    def __exit__(self, *exc: Any) -> bool:
        if self.raise_b:
            raise B("exit")
        return False


class AsyncCM:
    async def __aenter__(self) -> "AsyncCM":
        return self

    async def __aexit__(self, *exc: Any) -> bool:
        return False


class FailingAsyncIterator:
    def __aiter__(self) -> "FailingAsyncIterator":
        return self

    async def __anext__(self) -> Any:
        raise KeyError("anext")


def EXC(M: Any) -> int:
    E = M.events
    return E.RAISE | E.RERAISE | E.EXCEPTION_HANDLED | E.PY_UNWIND


RA, RR, EH, UW = "RAISE", "RERAISE", "EXCEPTION_HANDLED", "PY_UNWIND"


def except_raises_new() -> None:
    try:
        raise A("a")
    except A:
        raise B("b")


def except_reraises() -> None:
    try:
        raise A("a")
    except A:
        raise


def except_does_not_match() -> None:
    try:
        raise A("a")
    except B:
        pass


def except_as_raises_new() -> None:
    try:
        raise A("a")
    except A as e:
        raise B("b")


def except_as_reraises() -> None:
    try:
        raise A("a")
    except A as e:
        raise


def finally_on_the_way_out() -> None:
    try:
        raise A("a")
    finally:
        x = 1


def finally_raises_on_the_way_out() -> None:
    try:
        raise A("a")
    finally:
        raise B("b")


def finally_raises_on_the_normal_path() -> None:
    try:
        x = 1
    finally:
        raise B("b")


def finally_with_a_generator_expression() -> None:
    try:
        raise A("a")
    finally:
        with ExitCM():
            total = sum(i for i in range(2))


def finally_leaves_a_loop_in_a_try(leave: str) -> None:
    # A loop keeps its iterator on the stack, not as a block: after the
    # break, the try's block is the one its POP_BLOCK pops (3.9/3.10).
    try:
        raise A("a")
    finally:
        try:
            for i in (1, 2):
                if leave == "break":
                    break
            else:
                x = 0
        finally:
            x = 1


def with_exit_keeps_it() -> None:
    with ExitCM():
        raise A("a")


def with_in_except_keeps_it() -> None:
    cm = ExitCM()
    try:
        raise A("a")
    except A:
        with cm:
            raise B("b")


def with_exit_raises() -> None:
    with ExitCM(raise_b=True):
        raise A("a")


def generator_except_raises() -> Any:
    try:
        yield 1
        raise A("a")
    except A:
        raise B("b")


def run_generator() -> Any:
    return list(generator_except_raises())


def nested_excepts(leave: bool) -> int:
    try:
        raise A("a")
    except A:
        try:
            raise B("b")
        except B:
            if leave:
                raise ValueError("c")
    return 1


async def async_with_keeps_it() -> None:
    async with AsyncCM():
        raise A("a")


async def async_for_next_fails() -> None:
    async for v in FailingAsyncIterator():
        pass


# (function to call, code whose events are compared, exception expected out
# of it, the events of that code by exception type)
CASES: dict[str, tuple[Callable[[], Any], Any, type, list[tuple[str, str]]]] = {
    "except raises anew": (except_raises_new, except_raises_new, B,
                           [(RA, "A"), (EH, "A"), (RA, "B"), (EH, "B"), (RR, "B"), (UW, "B")]),
    "except re-raises": (except_reraises, except_reraises, A,
                         [(RA, "A"), (EH, "A"), (RR, "A"), (EH, "A"), (RR, "A"), (UW, "A")]),
    "no except matches": (except_does_not_match, except_does_not_match, A,
                          [(RA, "A"), (EH, "A"), (RR, "A"), (EH, "A"), (RR, "A"), (UW, "A")]),
    # The name cleanup's handler, then the except body's.
    "except as raises anew": (except_as_raises_new, except_as_raises_new, B,
                              [(RA, "A"), (EH, "A"), (RA, "B")] + [(EH, "B"), (RR, "B")] * 2 + [(UW, "B")]),
    "except as re-raises": (except_as_reraises, except_as_reraises, A,
                            [(RA, "A"), (EH, "A"), (RR, "A")] + [(EH, "A"), (RR, "A")] * 2 + [(UW, "A")]),
    "finally on the way out": (finally_on_the_way_out, finally_on_the_way_out, A,
                               [(RA, "A"), (EH, "A"), (RR, "A"), (EH, "A"), (RR, "A"), (UW, "A")]),
    "finally raises on the way out": (finally_raises_on_the_way_out, finally_raises_on_the_way_out, B,
                                      [(RA, "A"), (EH, "A"), (RA, "B"), (EH, "B"), (RR, "B"), (UW, "B")]),
    # The normal path's copy of the finally body has no handler around it.
    "finally raises on the normal path": (finally_raises_on_the_normal_path,
                                          finally_raises_on_the_normal_path, B, [(RA, "B"), (UW, "B")]),
    # (3.10 calls the generator expression's function right after GET_ITER:
    # no loop on its block stack.)
    "finally with a generator expression in a with": (
        finally_with_a_generator_expression, finally_with_a_generator_expression, A,
        [(RA, "A"), (EH, "A"), (RR, "A"), (EH, "A"), (RR, "A"), (UW, "A")]),
    "finally leaves a loop in a try by break": (
        lambda: finally_leaves_a_loop_in_a_try("break"), finally_leaves_a_loop_in_a_try, A,
        [(RA, "A"), (EH, "A"), (RR, "A"), (EH, "A"), (RR, "A"), (UW, "A")]),
    "finally leaves a loop in a try by its else": (
        lambda: finally_leaves_a_loop_in_a_try("its else"), finally_leaves_a_loop_in_a_try, A,
        [(RA, "A"), (EH, "A"), (RR, "A"), (EH, "A"), (RR, "A"), (UW, "A")]),
    "with exit keeps it": (with_exit_keeps_it, with_exit_keeps_it, A,
                           [(RA, "A"), (EH, "A"), (RR, "A"), (EH, "A"), (RR, "A"), (UW, "A")]),
    # __exit__'s exception is raised by the instruction that calls it.
    "with exit raises": (with_exit_raises, with_exit_raises, B,
                         [(RA, "A"), (EH, "A"), (RA, "B"), (EH, "B"), (RR, "B"), (UW, "B")]),
    # Two bodies left: the inner except's and the outer's.
    "nested excepts raise": (lambda: nested_excepts(True), nested_excepts, ValueError,
                             [(RA, "A"), (EH, "A"), (RA, "B"), (EH, "B"), (RA, "ValueError")]
                             + [(EH, "ValueError"), (RR, "ValueError")] * 2 + [(UW, "ValueError")]),
    "with in except keeps it": (with_in_except_keeps_it, with_in_except_keeps_it, B,
                                [(RA, "A"), (EH, "A"), (RA, "B"), (EH, "B"), (RR, "B")]
                                + [(EH, "B"), (RR, "B")] * 2 + [(UW, "B")]),
    # The except body's cleanup, then the generator's own.
    "generator except raises": (run_generator, generator_except_raises, B,
                                [(RA, "A"), (EH, "A"), (RA, "B")] + [(EH, "B"), (RR, "B")] * 2 + [(UW, "B")]),
    # __aexit__'s exit path's cleanup, then the coroutine's own.
    "async with keeps it": (lambda: drive(async_with_keeps_it()), async_with_keeps_it, A,
                            [(RA, "A"), (EH, "A"), (RR, "A")] + [(EH, "A"), (RR, "A")] * 2 + [(UW, "A")]),
    # END_ASYNC_FOR's handler has no cleanup around it; the coroutine's own.
    "async for next fails": (lambda: drive(async_for_next_fails()), async_for_next_fails, KeyError,
                             [(RA, "KeyError"), (EH, "KeyError"), (RR, "KeyError"), (EH, "KeyError"),
                              (RR, "KeyError"), (UW, "KeyError")]),
}


def _record(M: Any, tool: Tool, case: str, event_set: int) -> tuple[list[tuple[str, str]], Recorder]:
    call, target, expected_exc, _ = CASES[case]
    with Recorder(tool, event_set, target) as rec:
        with pytest.raises(expected_exc):
            call()
    return [(e.name, type(e.value).__name__) for e in rec.events], rec


@pytest.mark.parametrize("case", list(CASES))
def test_events_of_an_exception_leaving_handler_bodies(M: Any, tool: Tool, case: str) -> None:
    events, rec = _record(M, tool, case, EXC(M))
    assert events == CASES[case][3]
    # Every event of one exception carries that exception object.
    by_type: dict[str, set[int]] = {}
    for e in rec.events:
        by_type.setdefault(type(e.value).__name__, set()).add(id(e.value))
    assert all(len(ids) == 1 for ids in by_type.values())


@pytest.mark.parametrize("case", ["except raises anew", "with exit keeps it", "nested excepts raise",
                                  "except as re-raises", "async for next fails"])
@pytest.mark.parametrize("names", [("EXCEPTION_HANDLED",), ("RERAISE",), ("RERAISE", "PY_UNWIND")])
def test_each_event_alone(M: Any, tool: Tool, case: str, names: tuple[str, ...]) -> None:
    """A tool that wants some of the events gets exactly those of the whole sequence."""
    event_set = 0
    for name in names:
        event_set |= getattr(M.events, name)
    events, _ = _record(M, tool, case, event_set)
    assert events == [e for e in CASES[case][3] if e[0] in names]


def test_handled_in_the_same_frame_after_leaving_a_body(M: Any, tool: Tool) -> None:
    def f() -> Any:
        try:
            try:
                raise A("a")
            except A:
                raise B("b")
        except B as e:
            return e

    with Recorder(tool, EXC(M), f) as rec:
        caught = f()
    assert [(e.name, type(e.value).__name__) for e in rec.events] == [
        (RA, "A"), (EH, "A"), (RA, "B"), (EH, "B"), (RR, "B"), (EH, "B")]
    assert all(e.value is caught for e in rec.events[2:])


def test_no_events_where_a_body_is_left_normally(M: Any, tool: Tool) -> None:
    def f() -> int:
        total = 0
        for i in range(3):
            try:
                raise A("a")
            except A:
                if i == 0:
                    continue
                if i == 2:
                    break
            try:
                raise B("b")
            finally:
                total += 1
                return total
        return -1

    with Recorder(tool, EXC(M), f) as rec:
        assert f() == 1
    assert [(e.name, type(e.value).__name__) for e in rec.events] == [
        (RA, "A"), (EH, "A"), (RA, "A"), (EH, "A"), (RA, "B"), (EH, "B")]


def test_exception_caught_inside_an_except_body_passes_no_cleanup(M: Any, tool: Tool) -> None:
    with Recorder(tool, EXC(M), nested_excepts) as rec:
        assert nested_excepts(False) == 1
    assert [(e.name, type(e.value).__name__) for e in rec.events] == [
        (RA, "A"), (EH, "A"), (RA, "B"), (EH, "B")]


@pytest.mark.xfail(sys.version_info[:2] == (3, 11), strict=False,
                   reason="3.11 back end: the frame stands at the cleanup handler, which has no line")
def test_frame_stands_where_the_exception_left_the_body(M: Any, tool: Tool) -> None:
    """In the cleanup's callbacks the frame shows the instruction that raised, natively."""
    seen: list[tuple[str, int]] = []

    def f() -> None:
        try:
            raise A("a")
        except A:
            x = 1
            raise B("b")

    def note(name: str) -> Callable[..., Any]:
        def callback(code: Any, offset: int, exc: BaseException) -> None:
            if code is f.__code__:
                seen.append((name, sys._getframe(1).f_lineno - code.co_firstlineno))

        return callback

    for name in (EH, RR, UW):
        tool.register(getattr(M.events, name), note(name))
    tool.set_events(M.events.EXCEPTION_HANDLED | M.events.RERAISE | M.events.PY_UNWIND)
    try:
        with pytest.raises(B):
            f()
    finally:
        tool.set_events(0)
        for name in (EH, RR, UW):
            tool.register(getattr(M.events, name), None)
    assert seen == [(EH, 2), (EH, 5), (RR, 5), (UW, 5)]


@pytest.mark.xfail(sys.version_info[:2] == (3, 11), strict=False,
                   reason="3.11 back end: a cleanup handler's EXCEPTION_HANDLED callback's exception is "
                   "not reported handled by that handler in turn")
def test_a_callback_exception_at_the_cleanup_is_handled_there_in_turn(M: Any, tool: Tool) -> None:
    """The cleanup handler catches what its EXCEPTION_HANDLED callback raises: reported once more."""

    class FromCallback(Exception):
        pass

    def returns(event: Any) -> None:
        if event.name == EH and isinstance(event.value, B):
            raise FromCallback

    with Recorder(tool, EXC(M), except_raises_new, returns=returns) as rec:
        with pytest.raises(FromCallback):
            except_raises_new()
    assert [(e.name, type(e.value).__name__) for e in rec.events] == [
        (RA, "A"), (EH, "A"), (RA, "B"), (EH, "B"), (EH, "FromCallback"), (RR, "FromCallback"),
        (UW, "FromCallback")]
