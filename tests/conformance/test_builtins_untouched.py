"""Monitoring leaves the builtins and its own API looking as they do natively.

Natively nothing replaces ``builtins.__build_class__``, ``exec`` or ``eval``:
a ``class`` statement reports a CALL of the builtin ``__build_class__``
followed by C_RETURN, a library may wrap ``__build_class__`` while events
are on, and the functions of ``sys.monitoring`` are builtin functions,
reported as such (CALL, then C_RETURN while CALL is still on) when Python
code calls them.  (That the builtins are still the very objects the
interpreter started with is checked in a fresh interpreter, in
test_startup.py.)
"""

from __future__ import annotations

import builtins
import types
from typing import Any, Callable

import pytest

from .helpers import Recorder, Tool, nested_code

API_FUNCTIONS = (
    "use_tool_id",
    "free_tool_id",
    "get_tool",
    "get_events",
    "set_events",
    "get_local_events",
    "set_local_events",
    "register_callback",
    "restart_events",
)


def CALLS(M: Any) -> int:
    E = M.events
    return E.CALL | E.C_RETURN | E.C_RAISE


def is_builtin_of(obj: Any, module: Any) -> bool:
    return type(obj) is types.BuiltinFunctionType and obj.__self__ is module


def test_monitoring_functions_are_builtin_functions(M: Any) -> None:
    kinds = {name: type(getattr(M, name)).__name__ for name in API_FUNCTIONS}
    assert kinds == {name: "builtin_function_or_method" for name in API_FUNCTIONS}


def test_class_statement_calls_the_builtin_build_class(M: Any, tool: Tool) -> None:
    def f() -> type:
        class Made:
            pass

        return Made

    with Recorder(tool, CALLS(M), f) as rec:
        made = f()
    assert [e.name for e in rec.events] == ["CALL", "C_RETURN"]
    call, c_return = rec.events
    assert call.args[1] is builtins.__build_class__
    assert is_builtin_of(call.args[1], builtins), call.args[1]
    assert c_return.args[1] is call.args[1]
    # arg0 is the function that runs the class body.
    assert isinstance(call.args[2], types.FunctionType) and call.args[2].__name__ == "Made"
    assert made.__name__ == "Made"


@pytest.mark.parametrize("name", ["__build_class__", "exec", "eval", "compile", "__import__"])
def test_builtins_are_builtin_functions_while_events_are_on(M: Any, tool: Tool, name: str) -> None:
    E = M.events
    tool.register(E.PY_START, lambda code, offset: None)
    tool.set_events(E.PY_START | E.LINE)
    try:
        obj = getattr(builtins, name)
    finally:
        tool.set_events(0)
    assert is_builtin_of(obj, builtins), obj
    assert obj.__module__ == "builtins" and obj.__name__ == name


def test_calling_the_api_reports_builtin_calls(M: Any, tool: Tool) -> None:
    E = M.events

    def g() -> None:
        pass

    def f() -> None:
        M.set_local_events(tool.id, g.__code__, E.LINE)
        M.set_local_events(tool.id, g.__code__, 0)
        M.set_events(tool.id, 0)

    with Recorder(tool, CALLS(M), f) as rec:
        f()
    assert [(e.name, e.args[1], e.args[2]) for e in rec.events] == [
        ("CALL", M.set_local_events, tool.id),
        ("C_RETURN", M.set_local_events, tool.id),
        ("CALL", M.set_local_events, tool.id),
        ("C_RETURN", M.set_local_events, tool.id),
        # CALL is off when set_events returns: no C_RETURN.
        ("CALL", M.set_events, tool.id),
    ]
    assert all(is_builtin_of(e.args[1], e.args[1].__self__) for e in rec.events)
    assert all(type(e.args[1]) is types.BuiltinFunctionType for e in rec.events)


def test_calling_the_api_with_local_call_events(M: Any, tool: Tool) -> None:
    E = M.events

    def f() -> None:
        M.set_events(tool.id, E.PY_START)
        M.set_events(tool.id, 0)
        M.restart_events()

    with Recorder(tool, CALLS(M), f, local=True) as rec:
        f()
    assert [(e.name, e.args[1]) for e in rec.events] == [
        ("CALL", M.set_events),
        ("C_RETURN", M.set_events),
        ("CALL", M.set_events),
        ("C_RETURN", M.set_events),
        ("CALL", M.restart_events),
        ("C_RETURN", M.restart_events),
    ]
    assert all(type(e.args[1]) is types.BuiltinFunctionType for e in rec.events)


# --------------------------------------------------------------------------
# A library wraps __build_class__ while events are on


def _functions_not_run_yet() -> tuple:
    def plain(x: int) -> int:
        y = x * 2
        return y

    def with_class(x: int) -> int:
        class Inner:
            a = 1

        return Inner.a + x

    return plain, with_class


@pytest.mark.parametrize("events", ["global PY_START", "local LINE"])
def test_wrapped_build_class_with_events_on(M: Any, tool: Tool, events: str) -> None:
    E = M.events
    plain, with_class = _functions_not_run_yet()
    codes = {plain.__code__, with_class.__code__, nested_code(with_class, "Inner")}
    log: list = []
    tool.register(E.PY_START, lambda code, offset: log.append(("PY_START", code.co_name)) if code in codes else None)
    tool.register(E.LINE, lambda code, line: log.append(("LINE", code.co_name, line - code.co_firstlineno))
                  if code in codes else None)
    built: list = []
    original: Callable[..., Any] = builtins.__build_class__

    def wrapping_build_class(func: Any, name: str, *bases: Any, **kwds: Any) -> Any:
        built.append(name)
        return original(func, name, *bases, **kwds)

    if events == "global PY_START":
        tool.set_events(E.PY_START)
    else:
        tool.set_local(plain, E.LINE)
        tool.set_local(with_class, E.LINE)
    builtins.__build_class__ = wrapping_build_class
    try:
        results = (plain(2), with_class(1))
    finally:
        builtins.__build_class__ = original
        tool.set_events(0)
        tool.set_local(plain, 0)
        tool.set_local(with_class, 0)
    assert results == (4, 2)
    assert built == ["Inner"]
    if events == "global PY_START":
        assert log == [("PY_START", "plain"), ("PY_START", "with_class"), ("PY_START", "Inner")]
    else:
        assert log == [("LINE", "plain", 1), ("LINE", "plain", 2), ("LINE", "with_class", 1),
                       ("LINE", "with_class", 4)]
