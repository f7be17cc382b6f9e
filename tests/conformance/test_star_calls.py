"""CALL, C_RETURN and C_RAISE of calls with ``*args`` and ``**kwargs``.

Such calls (CALL_FUNCTION_EX) report the callable and the first positional
argument, whatever else is on the stack (a keyword dictionary, say), and
C_RETURN/C_RAISE only when the callable is not a Python function.

Native differences, pinned per version:
- 3.12.0-3.12.2 report no CALL at all for these calls to Python functions
  (gh-116626, fixed in 3.12.3); 3.13 reports them.
- Without positional arguments, ``arg0`` is ``None`` on 3.12 (seen on 3.12.1)
  and ``MISSING`` on 3.13 (as for ordinary calls).  The engine follows 3.13.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import pytest

from .helpers import Recorder, Tool

STAR_CALLS_TO_PYTHON_REPORTED = not ((3, 12, 0) <= sys.version_info[:3] < (3, 12, 3))


def CALLS(M: Any) -> int:
    E = M.events
    return E.CALL | E.C_RETURN | E.C_RAISE


def no_positional_arg0(M: Any) -> Any:
    return None if sys.version_info[:2] == (3, 12) else M.MISSING


def target(*args: Any, **kwargs: Any) -> tuple:
    return args


def failing(*args: Any, **kwargs: Any) -> None:
    raise KeyError("failing")


def python_call(callable_: Any, arg0: Any) -> list:
    """What a star-call of a Python function reports."""
    return [("CALL", "f", callable_, arg0)] if STAR_CALLS_TO_PYTHON_REPORTED else []


# --------------------------------------------------------------------------
# Builtins


def test_builtin_star_args_and_keyword(M: Any, tool: Tool) -> None:
    def f() -> int:
        return max(*(3, 4), key=abs)

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == 4
    assert rec.compact() == [("CALL", "f", max, 3), ("C_RETURN", "f", max, 3)]
    assert rec.events[0].offset == rec.events[1].offset


def test_builtin_star_args_and_star_kwargs_from_variables(M: Any, tool: Tool) -> None:
    def f(args: list, kwargs: dict) -> int:
        return max(*args, **kwargs)

    with Recorder(tool, CALLS(M), f) as rec:
        assert f([-7, 4], {"key": abs}) == -7
    assert rec.compact() == [("CALL", "f", max, -7), ("C_RETURN", "f", max, -7)]


def test_builtin_star_args_raising(M: Any, tool: Tool) -> None:
    def f() -> Any:
        try:
            return max(*(), key=abs)
        except TypeError:
            return "empty"

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == "empty"
    arg0 = no_positional_arg0(M)
    assert rec.compact() == [("CALL", "f", max, arg0), ("C_RAISE", "f", max, arg0)]
    assert rec.events[0].args[2] is arg0


def test_builtin_star_kwargs_only(M: Any, tool: Tool) -> None:
    def f() -> dict:
        return dict(**{"a": 5})

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == {"a": 5}
    arg0 = no_positional_arg0(M)
    assert rec.compact() == [("CALL", "f", dict, arg0), ("C_RETURN", "f", dict, arg0)]
    assert rec.events[0].args[2] is arg0


def test_method_descriptor_star_args_and_keyword(M: Any, tool: Tool) -> None:
    def f(items: list) -> None:
        items.sort(*(), key=abs)

    items = [3, -1, 2]
    with Recorder(tool, CALLS(M), f) as rec:
        f(items)
    assert items == [-1, 2, 3]
    # A bound method object: the callable is what the call sees.
    [call, c_return] = rec.events
    assert (call.name, c_return.name) == ("CALL", "C_RETURN")
    assert call.args[1] == items.sort and c_return.args[1] == items.sort
    assert call.args[2] is no_positional_arg0(M)


# --------------------------------------------------------------------------
# Python functions: CALL only, never C_RETURN or C_RAISE


@pytest.mark.parametrize(
    "form",
    ["*(3, 4), **{'k': 1}", "*(3, 4), k=1", "*(3, 4)", "3, *(4,), k=1", "*[3], **{}"],
)
def test_python_function_star_call(M: Any, tool: Tool, form: str) -> None:
    namespace = {"target": target}
    exec("def f():\n    return target(%s)\n" % form, namespace)
    f = namespace["f"]
    with Recorder(tool, CALLS(M), f) as rec:
        assert f()[0] == 3
    assert rec.compact() == python_call(target, 3)


def test_python_function_star_kwargs_only(M: Any, tool: Tool) -> None:
    def f() -> tuple:
        return target(**{"k": 1})

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == ()
    assert rec.compact() == python_call(target, M.MISSING)


def test_python_function_star_call_raising(M: Any, tool: Tool) -> None:
    def f() -> str:
        try:
            failing(*(1,), **{"k": 2})
        except KeyError:
            return "caught"
        return "no"

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == "caught"
    assert rec.compact() == python_call(failing, 1)


def test_bound_python_method_star_call(M: Any, tool: Tool) -> None:
    class K:
        def m(self, *args: Any, **kwargs: Any) -> tuple:
            return args

    k = K()

    def f() -> tuple:
        return k.m(*(1, 2), key=3)

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == (1, 2)
    if STAR_CALLS_TO_PYTHON_REPORTED:
        [event] = rec.events
        assert event.name == "CALL" and event.args[1] == k.m and event.args[2] == 1
    else:
        assert rec.events == []


# --------------------------------------------------------------------------
# Decorator-style wrappers


def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **k: Any) -> Any:
        return fn(*a, **k)

    return wrapper


def test_wrapper_of_a_python_function(M: Any, tool: Tool) -> None:
    wrapped = deco(target)
    wrapper_code = wrapped.__code__

    def f() -> tuple:
        return wrapped(1, 2, k=3)

    with Recorder(tool, CALLS(M), f, wrapper_code) as rec:
        assert f() == (1, 2)
    inner = [("CALL", "wrapper", target, 1)] if STAR_CALLS_TO_PYTHON_REPORTED else []
    assert rec.compact() == [("CALL", "f", wrapped, 1)] + inner


def test_wrapper_of_a_raising_python_function(M: Any, tool: Tool) -> None:
    wrapped = deco(failing)

    def f() -> str:
        try:
            wrapped(7)
        except KeyError:
            return "caught"
        return "no"

    with Recorder(tool, CALLS(M), f, wrapped.__code__) as rec:
        assert f() == "caught"
    inner = [("CALL", "wrapper", failing, 7)] if STAR_CALLS_TO_PYTHON_REPORTED else []
    assert rec.compact() == [("CALL", "f", wrapped, 7)] + inner


def test_wrapper_of_a_builtin(M: Any, tool: Tool) -> None:
    wrapped = deco(max)

    def f() -> int:
        return wrapped(5, -6, key=abs)

    with Recorder(tool, CALLS(M), f, wrapped.__code__) as rec:
        assert f() == -6
    assert rec.compact() == [
        ("CALL", "f", wrapped, 5),
        ("CALL", "wrapper", max, 5),
        ("C_RETURN", "wrapper", max, 5),
    ]


def test_wrapper_of_a_raising_builtin(M: Any, tool: Tool) -> None:
    wrapped = deco(int)

    def f() -> str:
        try:
            wrapped("x", base=10)
        except ValueError:
            return "caught"
        return "no"

    with Recorder(tool, CALLS(M), f, wrapped.__code__) as rec:
        assert f() == "caught"
    assert rec.compact() == [
        ("CALL", "f", wrapped, "x"),
        ("CALL", "wrapper", int, "x"),
        ("C_RAISE", "wrapper", int, "x"),
    ]
