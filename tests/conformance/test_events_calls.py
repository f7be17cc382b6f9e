"""CALL, C_RETURN and C_RAISE.

CALL fires before every call made from Python code, with the callable and
the first argument (or MISSING).  C_RETURN/C_RAISE follow calls to anything
that is not a Python function, with the same arguments as the CALL.  Calls
with ``*args``/``**kwargs`` to Python functions are avoided: 3.12.1 emits no
CALL for them (gh-116626, fixed in 3.12.3).
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import pytest

from .helpers import Recorder, Tool, offsets_of

# 3.12+ and 3.11 call opcodes, then 3.10's.
CALL_OPNAMES = ("CALL", "CALL_KW", "CALL_FUNCTION_EX", "CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_METHOD")


def CALLS(M: Any) -> int:
    E = M.events
    return E.CALL | E.C_RETURN | E.C_RAISE


def call_offsets(target: Any) -> list[int]:
    return offsets_of(target, *CALL_OPNAMES)


def py(x: Any = None, *rest: Any, **kw: Any) -> Any:
    return x


class Plain:
    pass


class WithInit:
    def __init__(self, a: Any = None) -> None:
        self.a = a

    def method(self, x: Any) -> Any:
        return x


# --------------------------------------------------------------------------
# Arguments


def test_call_arguments_python_callee(M: Any, tool: Tool) -> None:
    def f() -> Any:
        return py(1, 2)

    with Recorder(tool, CALLS(M), f) as rec:
        f()
    [event] = rec.events
    assert event.name == "CALL"
    assert event.code is f.__code__
    assert event.args == (call_offsets(f)[0], py, 1)


def test_call_without_arguments_gives_missing(M: Any, tool: Tool) -> None:
    def f() -> Any:
        return py()

    with Recorder(tool, CALLS(M), f) as rec:
        f()
    assert rec.compact() == [("CALL", "f", py, M.MISSING)]
    assert rec.events[0].args[2] is M.MISSING


def test_call_keyword_argument_is_arg0(M: Any, tool: Tool) -> None:
    def f() -> Any:
        return py(x=5)

    with Recorder(tool, CALLS(M), f) as rec:
        f()
    assert rec.compact() == [("CALL", "f", py, 5)]


def test_call_arg0_identity(M: Any, tool: Tool) -> None:
    arg = object()

    def f() -> Any:
        return py(arg, 2)

    with Recorder(tool, CALLS(M), f) as rec:
        f()
    assert rec.events[0].args[2] is arg


def test_builtin_call_and_c_return(M: Any, tool: Tool) -> None:
    def f() -> int:
        return len([1, 2])

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == 2
    assert rec.compact() == [("CALL", "f", len, [1, 2]), ("C_RETURN", "f", len, [1, 2])]
    offset = call_offsets(f)[0]
    assert [e.offset for e in rec.events] == [offset, offset]
    assert rec.events[0].args[2] is rec.events[1].args[2]


def test_builtin_call_c_raise(M: Any, tool: Tool) -> None:
    def f() -> Any:
        try:
            return len(1)  # type: ignore[arg-type]
        except TypeError:
            return "caught"

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == "caught"
    assert rec.compact() == [("CALL", "f", len, 1), ("C_RAISE", "f", len, 1)]
    offset = call_offsets(f)[0]
    assert [e.offset for e in rec.events] == [offset, offset]


def test_no_c_return_for_python_callee(M: Any, tool: Tool) -> None:
    def f() -> Any:
        return py(1)

    with Recorder(tool, CALLS(M), f) as rec:
        f()
    assert rec.names() == ["CALL"]


def test_no_c_raise_for_python_callee(M: Any, tool: Tool) -> None:
    def bad() -> None:
        raise KeyError

    def f() -> str:
        try:
            bad()
        except KeyError:
            return "caught"
        return "no"

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == "caught"
    assert rec.compact() == [("CALL", "f", bad, M.MISSING)]


def test_call_offsets_are_call_instructions(M: Any, tool: Tool) -> None:
    def f() -> Any:
        a = len("ab")
        b = py(a)
        c = abs(-b)
        return (a, b, c)

    with Recorder(tool, M.events.CALL, f) as rec:
        f()
    assert [e.offset for e in rec.events] == call_offsets(f)
    assert [e.args[1] for e in rec.events] == [len, py, abs]


def test_c_return_arg0_after_mutation(M: Any, tool: Tool) -> None:
    def f() -> list:
        items: list = []
        items.append(1)
        return items

    with Recorder(tool, CALLS(M), f) as rec:
        result = f()
    assert [e.name for e in rec.events] == ["CALL", "C_RETURN"]
    # Both events carry the same list object, seen after the append.
    assert rec.events[0].args[2] is result and rec.events[1].args[2] is result
    assert rec.events[0].args[1] == list.append


def test_builtin_with_star_args(M: Any, tool: Tool) -> None:
    def f() -> int:
        args = [3, 9]
        return max(*args)

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == 9
    assert rec.compact() == [("CALL", "f", max, 3), ("C_RETURN", "f", max, 3)]


def test_builtin_type_call(M: Any, tool: Tool) -> None:
    def f() -> int:
        return int("3")

    with Recorder(tool, CALLS(M), f) as rec:
        f()
    assert rec.compact() == [("CALL", "f", int, "3"), ("C_RETURN", "f", int, "3")]


def test_keyword_only_builtin_call(M: Any, tool: Tool) -> None:
    def f() -> dict:
        return dict(a=1, b=2)

    with Recorder(tool, CALLS(M), f) as rec:
        f()
    assert rec.compact() == [("CALL", "f", dict, 1), ("C_RETURN", "f", dict, 1)]


# --------------------------------------------------------------------------
# Methods and classes


def test_method_call_passes_function_and_self(M: Any, tool: Tool) -> None:
    obj = WithInit()

    def f() -> Any:
        return obj.method(7)

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == 7
    [event] = rec.events
    assert event.args[1] is WithInit.method
    assert event.args[2] is obj


def test_bound_method_object_called_directly(M: Any, tool: Tool) -> None:
    bound = WithInit().method

    def f() -> Any:
        return bound(8)

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == 8
    assert rec.compact() == [("CALL", "f", bound, 8)]


def test_method_descriptor_call(M: Any, tool: Tool) -> None:
    def f() -> list:
        return "a,b".split(",")

    with Recorder(tool, CALLS(M), f) as rec:
        f()
    assert rec.compact() == [("CALL", "f", str.split, "a,b"), ("C_RETURN", "f", str.split, "a,b")]


def test_class_instantiation_with_python_init(M: Any, tool: Tool) -> None:
    def f() -> Any:
        return WithInit()

    events = CALLS(M) | M.events.PY_START | M.events.PY_RETURN
    with Recorder(tool, events, f, WithInit.__init__) as rec:
        f()
    assert [e for e in rec.compact() if e[1] == "f" or e[0] != "PY_RETURN"] == [
        ("PY_START", "f"),
        ("CALL", "f", WithInit, M.MISSING),
        ("PY_START", "__init__"),
        ("C_RETURN", "f", WithInit, M.MISSING),
        ("PY_RETURN", "f", rec.events[-1].value),
    ]
    assert rec.compact("PY_RETURN")[0] == ("PY_RETURN", "__init__", None)


def test_class_instantiation_with_argument(M: Any, tool: Tool) -> None:
    def f() -> Any:
        return WithInit(5)

    with Recorder(tool, CALLS(M), f) as rec:
        f()
    assert rec.compact() == [("CALL", "f", WithInit, 5), ("C_RETURN", "f", WithInit, 5)]


def test_class_without_init(M: Any, tool: Tool) -> None:
    def f() -> Any:
        return Plain()

    with Recorder(tool, CALLS(M), f) as rec:
        f()
    assert rec.compact() == [("CALL", "f", Plain, M.MISSING), ("C_RETURN", "f", Plain, M.MISSING)]


def test_class_whose_init_raises(M: Any, tool: Tool) -> None:
    class Bad:
        def __init__(self) -> None:
            raise KeyError  # no call instruction, unlike KeyError("...")

    def f() -> str:
        try:
            Bad()
        except KeyError:
            return "caught"
        return "no"

    events = CALLS(M) | M.events.PY_UNWIND
    with Recorder(tool, events, f, Bad.__init__) as rec:
        assert f() == "caught"
    assert rec.compact() == [
        ("CALL", "f", Bad, M.MISSING),
        ("PY_UNWIND", "__init__", "KeyError"),
        ("C_RAISE", "f", Bad, M.MISSING),
    ]


def test_partial_is_not_a_python_function(M: Any, tool: Tool) -> None:
    part = functools.partial(py, 1)

    def f() -> Any:
        return part()

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == 1
    assert rec.compact() == [("CALL", "f", part, M.MISSING), ("C_RETURN", "f", part, M.MISSING)]


def test_lambda_and_generator_function_calls(M: Any, tool: Tool) -> None:
    lam = lambda y: y  # noqa: E731

    def gen() -> Any:
        yield 1

    def f() -> Any:
        lam(3)
        return gen()

    with Recorder(tool, CALLS(M), f) as rec:
        f()
    assert rec.compact() == [("CALL", "f", lam, 3), ("CALL", "f", gen, M.MISSING)]


def test_calls_from_builtins_are_not_reported(M: Any, tool: Tool) -> None:
    # sorted() calls the key function from C: no CALL for those calls.
    key = lambda v: -v  # noqa: E731

    def f() -> list:
        return sorted([1, 2], key=key)

    with Recorder(tool, CALLS(M), f, key) as rec:
        assert f() == [2, 1]
    assert rec.compact() == [("CALL", "f", sorted, [1, 2]), ("C_RETURN", "f", sorted, [1, 2])]


# --------------------------------------------------------------------------
# Order, frames, local CALL, DISABLE


def test_call_order_with_callee_events(M: Any, tool: Tool) -> None:
    def callee() -> int:
        return 2

    def f() -> int:
        x = callee()
        return len([x])

    events = CALLS(M) | M.events.PY_START | M.events.PY_RETURN | M.events.LINE
    with Recorder(tool, events, f, callee) as rec:
        f()
    assert rec.compact() == [
        ("PY_START", "f"),
        ("LINE", "f", 1),
        ("CALL", "f", callee, M.MISSING),
        ("PY_START", "callee"),
        ("LINE", "callee", 1),
        ("PY_RETURN", "callee", 2),
        ("LINE", "f", 2),
        ("CALL", "f", len, [2]),
        ("C_RETURN", "f", len, [2]),
        ("PY_RETURN", "f", 1),
    ]


def test_c_raise_before_raise(M: Any, tool: Tool) -> None:
    def f() -> str:
        try:
            len(5)  # type: ignore[arg-type]
        except TypeError:
            return "caught"
        return "no"

    with Recorder(tool, CALLS(M) | M.events.RAISE | M.events.EXCEPTION_HANDLED, f) as rec:
        f()
    assert rec.compact() == [
        ("CALL", "f", len, 5),
        ("C_RAISE", "f", len, 5),
        ("RAISE", "f", "TypeError"),
        ("EXCEPTION_HANDLED", "f", "TypeError"),
    ]
    assert rec.events[1].value is len and rec.events[2].value is rec.events[3].value


def test_calling_frame_in_call_callbacks(M: Any, tool: Tool) -> None:
    def callee() -> None:
        pass

    def f() -> None:
        callee()
        len("")

    frames: list[tuple] = []

    def callback(name: str) -> Any:
        def cb(code: Any, *args: Any) -> None:
            if code is f.__code__:
                frames.append((name, sys._getframe(1).f_code.co_name))

        return cb

    for name in ("CALL", "C_RETURN"):
        tool.register(getattr(M.events, name), callback(name))
    tool.set_local(f, M.events.CALL)
    f()
    assert frames == [("CALL", "f"), ("CALL", "f"), ("C_RETURN", "f")]


def test_local_call_means_calls_made_from_that_code(M: Any, tool: Tool) -> None:
    def g() -> int:
        return len("x")

    def f() -> int:
        return g()

    with Recorder(tool, CALLS(M), g, local=True, record_all=True) as rec:
        f()
    assert rec.compact() == [("CALL", "g", len, "x"), ("C_RETURN", "g", len, "x")]


def test_local_call_enables_c_return(M: Any, tool: Tool) -> None:
    def f() -> int:
        return abs(-1)

    with Recorder(tool, M.events.CALL | M.events.C_RETURN | M.events.C_RAISE, f, local=True) as rec:
        f()
    assert rec.names() == ["CALL", "C_RETURN"]


def test_c_return_callback_needs_call_enabled(M: Any, tool: Tool) -> None:
    def f() -> int:
        return abs(-1)

    seen: list[str] = []
    tool.register(M.events.C_RETURN, lambda *a: seen.append("C_RETURN"))
    tool.set_local(f, M.events.LINE)
    f()
    assert seen == []


def test_disable_call_site_silences_c_return(M: Any, tool: Tool) -> None:
    def f() -> int:
        a = abs(-1)
        b = abs(-2)
        return a + b

    first_call = call_offsets(f)[0]
    with Recorder(
        tool, CALLS(M), f, returns=lambda e: M.DISABLE if e.name == "CALL" and e.offset == first_call else None
    ) as rec:
        f()
        f()
    assert rec.compact() == [
        ("CALL", "f", abs, -1),
        ("C_RETURN", "f", abs, -1),
        ("CALL", "f", abs, -2),
        ("C_RETURN", "f", abs, -2),
        ("CALL", "f", abs, -2),
        ("C_RETURN", "f", abs, -2),
    ]


def test_disable_call_then_restart(M: Any, tool: Tool) -> None:
    def f() -> Any:
        return py(1)

    with Recorder(tool, M.events.CALL, f, returns=M.DISABLE) as rec:
        f()
        f()
        M.restart_events()
        f()
    assert len(rec.events) == 2


def test_call_callback_exception_prevents_the_call(M: Any, tool: Tool) -> None:
    ran: list[str] = []

    def target() -> None:
        ran.append("target")

    def f() -> str:
        try:
            target()
        except RuntimeError:
            return "caught"
        return "called"

    def call(code: Any, off: int, func: Any, arg0: Any) -> None:
        if func is target:
            raise RuntimeError("no")

    tool.register(M.events.CALL, call)
    tool.set_local(f, M.events.CALL)
    assert f() == "caught"
    assert ran == []


@pytest.mark.parametrize("event", ["C_RETURN", "C_RAISE"])
def test_c_event_callbacks_receive_four_arguments(M: Any, tool: Tool, event: str) -> None:
    def f() -> Any:
        try:
            return len([]) + len(3)  # type: ignore[arg-type]
        except TypeError:
            return None

    got: list[int] = []
    tool.register(getattr(M.events, event), lambda *args: got.append(len(args)))
    tool.set_local(f, CALLS(M))
    f()
    assert got == [4]
