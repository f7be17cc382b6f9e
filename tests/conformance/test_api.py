"""The API surface: arguments, return values, errors and constants.

Exception types and messages are those of native 3.12.1/3.13.0, which agree
on every message checked here.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from .helpers import ALL_EVENT_NAMES, LOCAL_EVENT_NAMES, TOOL, Tool, event_bit

API_FUNCTIONS = (
    "use_tool_id",
    "clear_tool_id",
    "free_tool_id",
    "get_tool",
    "register_callback",
    "get_events",
    "set_events",
    "get_local_events",
    "set_local_events",
    "restart_events",
)


def f_plain() -> int:
    return 1


def some_code() -> Any:
    return f_plain.__code__


# Every function taking a tool id, with valid arguments after the id.
TOOL_ID_CALLS = {
    "use_tool_id": lambda M, t: M.use_tool_id(t, "x"),
    "clear_tool_id": lambda M, t: M.clear_tool_id(t),
    "free_tool_id": lambda M, t: M.free_tool_id(t),
    "get_tool": lambda M, t: M.get_tool(t),
    "register_callback": lambda M, t: M.register_callback(t, M.events.LINE, None),
    "get_events": lambda M, t: M.get_events(t),
    "set_events": lambda M, t: M.set_events(t, 0),
    "get_local_events": lambda M, t: M.get_local_events(t, some_code()),
    "set_local_events": lambda M, t: M.set_local_events(t, some_code(), 0),
}


# --------------------------------------------------------------------------
# Constants


def test_module_has_the_whole_surface(M: Any) -> None:
    for name in API_FUNCTIONS:
        assert callable(getattr(M, name)), name
    for name in ("events", "DISABLE", "MISSING", "DEBUGGER_ID", "COVERAGE_ID", "PROFILER_ID", "OPTIMIZER_ID"):
        assert hasattr(M, name), name


def test_event_values(M: Any) -> None:
    # 3.12 and 3.13 numbering (3.14 renumbers from BRANCH on).
    expected = {
        "PY_START": 1,
        "PY_RESUME": 2,
        "PY_RETURN": 4,
        "PY_YIELD": 8,
        "CALL": 16,
        "LINE": 32,
        "INSTRUCTION": 64,
        "JUMP": 128,
        "BRANCH": 256,
        "STOP_ITERATION": 512,
        "RAISE": 1024,
        "EXCEPTION_HANDLED": 2048,
        "PY_UNWIND": 4096,
        "PY_THROW": 8192,
        "RERAISE": 16384,
        "C_RETURN": 32768,
        "C_RAISE": 65536,
        "NO_EVENTS": 0,
    }
    assert {name: getattr(M.events, name) for name in expected} == expected


def test_event_values_are_distinct_single_bits(M: Any) -> None:
    bits = [event_bit(M, name) for name in ALL_EVENT_NAMES]
    assert len(set(bits)) == len(ALL_EVENT_NAMES) == 17
    for bit in bits:
        assert isinstance(bit, int) and bit > 0 and bit & (bit - 1) == 0


def test_predefined_tool_ids(M: Any) -> None:
    assert (M.DEBUGGER_ID, M.COVERAGE_ID, M.PROFILER_ID, M.OPTIMIZER_ID) == (0, 1, 2, 5)


def test_disable_and_missing_are_distinct_sentinels(M: Any) -> None:
    assert M.DISABLE is not M.MISSING
    assert M.DISABLE is not None and M.MISSING is not None
    assert M.DISABLE != M.MISSING


# --------------------------------------------------------------------------
# Tool id validation, common to every function taking one


@pytest.mark.parametrize("func", sorted(TOOL_ID_CALLS))
def test_tool_id_out_of_range(M: Any, func: str) -> None:
    # 6 and 7 exist inside CPython (setprofile/settrace) but are not public.
    for bad in (6, 7, -1, 100):
        with pytest.raises(ValueError) as info:
            TOOL_ID_CALLS[func](M, bad)
        assert str(info.value) == "invalid tool %d (must be between 0 and 5)" % bad


@pytest.mark.parametrize("func", sorted(TOOL_ID_CALLS))
def test_tool_id_must_be_an_integer(M: Any, func: str) -> None:
    with pytest.raises(TypeError) as info:
        TOOL_ID_CALLS[func](M, 1.0)
    assert str(info.value) == "'float' object cannot be interpreted as an integer"
    with pytest.raises(TypeError):
        TOOL_ID_CALLS[func](M, "1")
    with pytest.raises(TypeError):
        TOOL_ID_CALLS[func](M, None)


@pytest.mark.parametrize("func", sorted(TOOL_ID_CALLS))
def test_tool_id_overflow(M: Any, func: str) -> None:
    for huge in (2**31, 2**70, -(2**70)):
        with pytest.raises(OverflowError) as info:
            TOOL_ID_CALLS[func](M, huge)
        assert str(info.value) == "Python int too large to convert to C int"


def test_tool_id_accepts_bool_and_index(M: Any) -> None:
    class Two:
        def __index__(self) -> int:
            return 2

    M.use_tool_id(True, "by bool")
    try:
        assert M.get_tool(1) == "by bool"
        assert M.get_tool(True) == "by bool"
    finally:
        M.free_tool_id(1)
    assert M.get_tool(Two()) is None
    assert M.get_events(Two()) == 0


# --------------------------------------------------------------------------
# use_tool_id / get_tool / free_tool_id


def test_use_get_free(M: Any) -> None:
    assert M.get_tool(TOOL) is None
    assert M.use_tool_id(TOOL, "mytool") is None
    try:
        assert M.get_tool(TOOL) == "mytool"
        for other in range(6):
            if other != TOOL:
                assert M.get_tool(other) is None
    finally:
        assert M.free_tool_id(TOOL) is None
    assert M.get_tool(TOOL) is None


def test_every_id_can_be_used(M: Any) -> None:
    try:
        for tool_id in range(6):
            M.use_tool_id(tool_id, "t%d" % tool_id)
        assert [M.get_tool(t) for t in range(6)] == ["t%d" % t for t in range(6)]
    finally:
        for tool_id in range(6):
            M.free_tool_id(tool_id)


def test_use_tool_id_twice(M: Any) -> None:
    M.use_tool_id(TOOL, "first")
    try:
        for name in ("second", "first"):
            with pytest.raises(ValueError) as info:
                M.use_tool_id(TOOL, name)
            assert str(info.value) == "tool %d is already in use" % TOOL
        assert M.get_tool(TOOL) == "first"
    finally:
        M.free_tool_id(TOOL)


@pytest.mark.parametrize("name", [b"bytes", 5, None, ["x"]])
def test_use_tool_id_name_must_be_str(M: Any, name: Any) -> None:
    with pytest.raises(ValueError) as info:
        M.use_tool_id(TOOL, name)
    assert str(info.value) == "tool name must be a str"
    assert M.get_tool(TOOL) is None


def test_use_tool_id_range_checked_before_name(M: Any) -> None:
    with pytest.raises(ValueError) as info:
        M.use_tool_id(9, b"x")
    assert str(info.value) == "invalid tool 9 (must be between 0 and 5)"


def test_use_tool_id_empty_and_subclassed_names(M: Any) -> None:
    class Name(str):
        pass

    M.use_tool_id(TOOL, "")
    try:
        assert M.get_tool(TOOL) == ""
    finally:
        M.free_tool_id(TOOL)
    M.use_tool_id(TOOL, Name("sub"))
    try:
        assert M.get_tool(TOOL) == "sub"
    finally:
        M.free_tool_id(TOOL)


def test_free_unused_tool_is_silent(M: Any) -> None:
    assert M.free_tool_id(TOOL) is None
    assert M.free_tool_id(TOOL) is None
    assert M.get_tool(TOOL) is None


def test_free_then_use_again(M: Any) -> None:
    M.use_tool_id(TOOL, "a")
    M.free_tool_id(TOOL)
    M.use_tool_id(TOOL, "b")
    try:
        assert M.get_tool(TOOL) == "b"
    finally:
        M.free_tool_id(TOOL)


# --------------------------------------------------------------------------
# register_callback


def test_register_callback_returns_previous(M: Any) -> None:
    E = M.events

    def a(*args: Any) -> None:
        pass

    def b(*args: Any) -> None:
        pass

    try:
        assert M.register_callback(TOOL, E.LINE, a) is None
        assert M.register_callback(TOOL, E.LINE, b) is a
        assert M.register_callback(TOOL, E.LINE, None) is b
        assert M.register_callback(TOOL, E.LINE, None) is None
    finally:
        M.register_callback(TOOL, E.LINE, None)


def test_register_callback_per_event_and_per_tool(M: Any) -> None:
    E = M.events

    def a(*args: Any) -> None:
        pass

    def b(*args: Any) -> None:
        pass

    try:
        M.register_callback(TOOL, E.LINE, a)
        M.register_callback(TOOL, E.PY_START, b)
        M.register_callback(TOOL + 1, E.LINE, b)
        assert M.register_callback(TOOL, E.LINE, None) is a
        assert M.register_callback(TOOL, E.PY_START, None) is b
        assert M.register_callback(TOOL + 1, E.LINE, None) is b
    finally:
        for t in (TOOL, TOOL + 1):
            for ev in (E.LINE, E.PY_START):
                M.register_callback(t, ev, None)


def test_register_callback_accepts_every_event(M: Any) -> None:
    # C_RETURN and C_RAISE included: they have callbacks of their own.
    def cb(*args: Any) -> None:
        pass

    for name in ALL_EVENT_NAMES:
        bit = event_bit(M, name)
        assert M.register_callback(TOOL, bit, cb) is None, name
        assert M.register_callback(TOOL, bit, None) is cb, name


def test_register_callback_works_for_unused_tool(M: Any) -> None:
    assert M.get_tool(TOOL) is None

    def cb(*args: Any) -> None:
        pass

    M.register_callback(TOOL, M.events.PY_START, cb)
    assert M.register_callback(TOOL, M.events.PY_START, None) is cb


def test_register_callback_does_not_validate_func(M: Any) -> None:
    # Any object is stored; it only fails if the event fires.
    try:
        assert M.register_callback(TOOL, M.events.LINE, 42) is None
        assert M.register_callback(TOOL, M.events.LINE, "x") == 42
    finally:
        assert M.register_callback(TOOL, M.events.LINE, None) == "x"


@pytest.mark.parametrize("event", [0, 3, 1 | 2**16, -1, -32, 2**17 - 1])
def test_register_callback_one_event_at_a_time(M: Any, event: int) -> None:
    with pytest.raises(ValueError) as info:
        M.register_callback(TOOL, event, None)
    assert str(info.value) == "The callback can only be set for one event at a time"


@pytest.mark.parametrize("shift", [17, 18, 30])
def test_register_callback_invalid_event(M: Any, shift: int) -> None:
    with pytest.raises(ValueError) as info:
        M.register_callback(TOOL, 1 << shift, None)
    assert str(info.value) == "invalid event %d" % (1 << shift)


def test_register_callback_event_overflow(M: Any) -> None:
    with pytest.raises(OverflowError):
        M.register_callback(TOOL, 1 << 40, None)


def test_register_callback_tool_checked_first(M: Any) -> None:
    with pytest.raises(ValueError) as info:
        M.register_callback(6, 3, None)
    assert str(info.value) == "invalid tool 6 (must be between 0 and 5)"


def test_register_callback_audit_event(M: Any) -> None:
    seen: list[tuple] = []
    armed = [True]

    def hook(event: str, args: tuple) -> None:
        # Audit hooks cannot be removed; this one goes quiet after the test.
        if armed[0] and event == "sys.monitoring.register_callback":
            seen.append(args)

    sys.addaudithook(hook)

    def cb(*args: Any) -> None:
        pass

    try:
        M.register_callback(TOOL, M.events.LINE, cb)
        M.register_callback(TOOL, M.events.LINE, None)
    finally:
        armed[0] = False
        M.register_callback(TOOL, M.events.LINE, None)
    assert seen == [(cb,), (None,)]


# --------------------------------------------------------------------------
# set_events / get_events


def test_get_events_of_unused_tool_is_zero(M: Any) -> None:
    for t in range(6):
        assert M.get_events(t) == 0


def test_set_events_replaces(M: Any, tool: Tool) -> None:
    E = M.events
    assert M.set_events(TOOL, E.LINE | E.PY_START) is None
    assert M.get_events(TOOL) == E.LINE | E.PY_START
    M.set_events(TOOL, E.PY_RETURN)
    assert M.get_events(TOOL) == E.PY_RETURN
    M.set_events(TOOL, 0)
    assert M.get_events(TOOL) == 0


def test_set_events_each_event(M: Any, tool: Tool) -> None:
    for name in ALL_EVENT_NAMES:
        if name not in ("C_RETURN", "C_RAISE"):
            M.set_events(TOOL, event_bit(M, name))
            assert M.get_events(TOOL) == event_bit(M, name), name


def test_set_events_all_global_events(M: Any, tool: Tool) -> None:
    everything = sum(event_bit(M, n) for n in ALL_EVENT_NAMES)
    M.set_events(TOOL, everything)
    assert M.get_events(TOOL) == everything & ~(M.events.C_RETURN | M.events.C_RAISE)


def test_set_events_per_tool(M: Any, make_tool: Any) -> None:
    E = M.events
    make_tool(1)
    make_tool(2)
    M.set_events(1, E.LINE)
    M.set_events(2, E.CALL)
    assert (M.get_events(1), M.get_events(2), M.get_events(3)) == (E.LINE, E.CALL, 0)


@pytest.mark.parametrize(
    "event_set, shown",
    [(1 << 17, "0x20000"), (1 << 20, "0x100000"), (-1, "0xffffffff"), ((1 << 17) | 1, "0x20001")],
)
def test_set_events_invalid_event_set(M: Any, tool: Tool, event_set: int, shown: str) -> None:
    with pytest.raises(ValueError) as info:
        M.set_events(TOOL, event_set)
    assert str(info.value) == "invalid event set " + shown
    assert M.get_events(TOOL) == 0


def test_set_events_event_set_type(M: Any, tool: Tool) -> None:
    with pytest.raises(TypeError):
        M.set_events(TOOL, 1.0)
    with pytest.raises(TypeError):
        M.set_events(TOOL, None)
    with pytest.raises(OverflowError):
        M.set_events(TOOL, 1 << 40)


def test_set_events_bool_accepted(M: Any, tool: Tool) -> None:
    M.set_events(TOOL, True)
    assert M.get_events(TOOL) == M.events.PY_START
    M.set_events(TOOL, False)
    assert M.get_events(TOOL) == 0


@pytest.mark.parametrize("combo", ["C_RETURN", "C_RAISE", "C_RETURN|C_RAISE", "CALL|C_RETURN", "CALL|C_RAISE"])
def test_c_events_cannot_be_set_independently(M: Any, tool: Tool, combo: str) -> None:
    bits = sum(event_bit(M, n) for n in combo.split("|"))
    with pytest.raises(ValueError) as info:
        M.set_events(TOOL, bits)
    assert str(info.value) == "cannot set C_RETURN or C_RAISE events independently"
    with pytest.raises(ValueError) as info:
        M.set_local_events(TOOL, some_code(), bits)
    assert str(info.value) == "cannot set C_RETURN or C_RAISE events independently"


def test_c_events_are_stripped(M: Any, tool: Tool) -> None:
    E = M.events
    M.set_events(TOOL, E.CALL | E.C_RETURN | E.C_RAISE | E.LINE)
    assert M.get_events(TOOL) == E.CALL | E.LINE
    tool.set_local(some_code(), E.CALL | E.C_RETURN | E.C_RAISE)
    assert M.get_local_events(TOOL, some_code()) == E.CALL


def test_set_events_tool_not_in_use(M: Any) -> None:
    for event_set in (M.events.LINE, 0):
        with pytest.raises(ValueError) as info:
            M.set_events(TOOL, event_set)
        assert str(info.value) == "tool %d is not in use" % TOOL
    assert M.get_events(TOOL) == 0


def test_set_events_validation_order(M: Any) -> None:
    E = M.events
    # Tool range, then the event set, then the C_RETURN/C_RAISE rule, then "in use".
    with pytest.raises(ValueError, match="invalid tool 7"):
        M.set_events(7, 1 << 17)
    with pytest.raises(ValueError, match="invalid event set"):
        M.set_events(TOOL, (1 << 17) | E.C_RETURN)
    with pytest.raises(ValueError, match="independently"):
        M.set_events(TOOL, E.C_RETURN)


# --------------------------------------------------------------------------
# set_local_events / get_local_events


def test_local_events_roundtrip(M: Any, tool: Tool) -> None:
    E = M.events
    code = some_code()
    assert M.get_local_events(TOOL, code) == 0
    assert M.set_local_events(TOOL, code, E.LINE | E.BRANCH) is None
    tool.forget_local(code)
    try:
        assert M.get_local_events(TOOL, code) == E.LINE | E.BRANCH
        assert M.get_events(TOOL) == 0
        M.set_local_events(TOOL, code, E.PY_START)
        assert M.get_local_events(TOOL, code) == E.PY_START
    finally:
        M.set_local_events(TOOL, code, 0)
    assert M.get_local_events(TOOL, code) == 0


def test_each_local_event_can_be_set_locally(M: Any, tool: Tool) -> None:
    for name in LOCAL_EVENT_NAMES:
        tool.set_local(some_code(), event_bit(M, name))
        assert tool.get_local(some_code()) == event_bit(M, name), name


def test_all_local_events_at_once(M: Any, tool: Tool) -> None:
    bits = sum(event_bit(M, n) for n in LOCAL_EVENT_NAMES)
    tool.set_local(some_code(), bits)
    assert tool.get_local(some_code()) == bits


def test_local_events_are_per_tool_and_per_code(M: Any, make_tool: Any) -> None:
    E = M.events
    t1, t2 = make_tool(1), make_tool(2)

    def other() -> None:
        pass

    t1.set_local(some_code(), E.LINE)
    t2.set_local(other, E.CALL)
    assert M.get_local_events(1, some_code()) == E.LINE
    assert M.get_local_events(1, other.__code__) == 0
    assert M.get_local_events(2, some_code()) == 0
    assert M.get_local_events(2, other.__code__) == E.CALL


def test_local_events_of_nested_code_unaffected(M: Any, tool: Tool) -> None:
    def outer() -> Any:
        def inner() -> None:
            pass

        return inner

    tool.set_local(outer, M.events.LINE | M.events.PY_START)
    inner_code = outer().__code__
    assert M.get_local_events(TOOL, inner_code) == 0
    assert M.get_local_events(TOOL, outer.__code__) == M.events.LINE | M.events.PY_START


@pytest.mark.parametrize("not_code", [f_plain, None, "code", 1, f_plain.__call__])
def test_local_events_need_a_code_object(M: Any, tool: Tool, not_code: Any) -> None:
    with pytest.raises(TypeError) as info:
        M.set_local_events(TOOL, not_code, 0)
    assert str(info.value) == "code must be a code object"
    with pytest.raises(TypeError) as info:
        M.get_local_events(TOOL, not_code)
    assert str(info.value) == "code must be a code object"


def test_code_type_checked_before_tool(M: Any) -> None:
    # Even an out-of-range or unused tool reports the code argument first.
    for t in (9, TOOL):
        with pytest.raises(TypeError, match="code must be a code object"):
            M.set_local_events(t, f_plain, 0)
        with pytest.raises(TypeError, match="code must be a code object"):
            M.get_local_events(t, f_plain)


def test_local_events_invalid_tool_after_code(M: Any) -> None:
    with pytest.raises(ValueError) as info:
        M.set_local_events(9, some_code(), 0)
    assert str(info.value) == "invalid tool 9 (must be between 0 and 5)"
    with pytest.raises(ValueError) as info:
        M.get_local_events(9, some_code())
    assert str(info.value) == "invalid tool 9 (must be between 0 and 5)"


@pytest.mark.parametrize("name", ["RAISE", "EXCEPTION_HANDLED", "PY_UNWIND", "PY_THROW", "RERAISE"])
def test_non_local_events_rejected_locally(M: Any, tool: Tool, name: str) -> None:
    bit = event_bit(M, name)
    with pytest.raises(ValueError) as info:
        M.set_local_events(TOOL, some_code(), bit | M.events.LINE)
    assert str(info.value) == "invalid local event set %#x" % (bit | M.events.LINE)
    assert M.get_local_events(TOOL, some_code()) == 0


def test_local_event_set_out_of_range(M: Any, tool: Tool) -> None:
    with pytest.raises(ValueError) as info:
        M.set_local_events(TOOL, some_code(), 1 << 17)
    assert str(info.value) == "invalid local event set 0x20000"
    with pytest.raises(ValueError) as info:
        M.set_local_events(TOOL, some_code(), -1)
    assert str(info.value).startswith("invalid local event set 0x")


def test_local_event_set_shown_after_c_stripping(M: Any, tool: Tool) -> None:
    E = M.events
    with pytest.raises(ValueError) as info:
        M.set_local_events(TOOL, some_code(), E.RAISE | E.CALL | E.C_RETURN | E.C_RAISE)
    assert str(info.value) == "invalid local event set %#x" % (E.RAISE | E.CALL)


def test_local_events_tool_not_in_use(M: Any) -> None:
    for event_set in (M.events.LINE, 0):
        with pytest.raises(ValueError) as info:
            M.set_local_events(TOOL, some_code(), event_set)
        assert str(info.value) == "tool %d is not in use" % TOOL


def test_local_events_invalid_set_checked_before_in_use(M: Any) -> None:
    with pytest.raises(ValueError) as info:
        M.set_local_events(TOOL, some_code(), M.events.RAISE)
    assert str(info.value) == "invalid local event set 0x400"


def test_get_local_events_works_for_unused_tool(M: Any) -> None:
    assert M.get_tool(TOOL) is None
    assert M.get_local_events(TOOL, some_code()) == 0


def test_local_events_do_not_change_global_events(M: Any, tool: Tool) -> None:
    E = M.events
    tool.set_events(E.PY_RETURN)
    tool.set_local(some_code(), E.LINE)
    assert M.get_events(TOOL) == E.PY_RETURN
    tool.set_events(0)
    assert M.get_local_events(TOOL, some_code()) == E.LINE


def test_local_events_bool_accepted(M: Any, tool: Tool) -> None:
    tool.set_local(some_code(), True)
    assert tool.get_local(some_code()) == M.events.PY_START


def test_local_events_of_code_compiled_later(M: Any, tool: Tool) -> None:
    code = compile("x = 1\n", "<conformance>", "exec")
    tool.set_local(code, M.events.LINE)
    assert M.get_local_events(TOOL, code) == M.events.LINE


# --------------------------------------------------------------------------
# restart_events


def test_restart_events_returns_none(M: Any) -> None:
    assert M.restart_events() is None


def test_restart_events_keeps_event_sets(M: Any, tool: Tool) -> None:
    E = M.events
    tool.set_events(E.LINE | E.CALL)
    tool.set_local(some_code(), E.BRANCH)
    M.restart_events()
    assert M.get_events(TOOL) == E.LINE | E.CALL
    assert M.get_local_events(TOOL, some_code()) == E.BRANCH


# --------------------------------------------------------------------------
# clear_tool_id (lowimpact's addition on 3.12/3.13)


def test_clear_tool_id_clears_global_events_and_callbacks(M: Any, tool: Tool) -> None:
    E = M.events
    seen: list[Any] = []
    # clear_tool_id may itself be Python code that fires events; only f_plain counts.
    tool.register(E.PY_START, lambda code, off: seen.append(code) if code is f_plain.__code__ else None)
    tool.register(E.LINE, lambda code, line: None)
    tool.set_events(E.PY_START | E.LINE)
    assert M.clear_tool_id(TOOL) is None
    assert M.get_tool(TOOL) == "conformance"
    assert M.get_events(TOOL) == 0
    assert M.register_callback(TOOL, E.PY_START, None) is None
    assert M.register_callback(TOOL, E.LINE, None) is None
    f_plain()
    assert seen == []


def test_clear_tool_id_clears_local_events(M: Any, tool: Tool) -> None:
    E = M.events
    seen: list[Any] = []

    def target() -> int:
        return 5

    tool.register(E.PY_START, lambda code, off: seen.append(code))
    tool.set_local(target, E.PY_START)
    M.clear_tool_id(TOOL)
    assert M.get_local_events(TOOL, target.__code__) == 0
    # A new callback must not be reached either: the local events are gone.
    tool.register(E.PY_START, lambda code, off: seen.append(code))
    assert target() == 5
    assert seen == []


def test_clear_tool_id_leaves_other_tools(M: Any, make_tool: Any) -> None:
    E = M.events
    t1, t2 = make_tool(1), make_tool(2)

    def cb(*args: Any) -> None:
        pass

    for t in (t1, t2):
        t.register(E.LINE, cb)
        t.set_events(E.LINE)
        t.set_local(some_code(), E.CALL)
    M.clear_tool_id(1)
    assert M.get_events(2) == E.LINE
    assert M.get_local_events(2, some_code()) == E.CALL
    assert M.register_callback(2, E.LINE, cb) is cb
    assert M.get_events(1) == 0 and M.get_local_events(1, some_code()) == 0


def test_clear_tool_id_unused_tool(M: Any) -> None:
    def cb(*args: Any) -> None:
        pass

    M.register_callback(TOOL, M.events.LINE, cb)
    assert M.clear_tool_id(TOOL) is None
    assert M.register_callback(TOOL, M.events.LINE, None) is None
    assert M.get_tool(TOOL) is None


def test_clear_tool_id_then_reuse(M: Any, tool: Tool) -> None:
    E = M.events
    seen: list[str] = []
    tool.set_events(E.PY_START)
    M.clear_tool_id(TOOL)
    tool.register(E.PY_START, lambda code, off: seen.append(code.co_name) if code is f_plain.__code__ else None)
    tool.set_events(E.PY_START)
    f_plain()
    tool.set_events(0)
    assert seen == ["f_plain"]


# --------------------------------------------------------------------------
# Argument passing


@pytest.mark.parametrize(
    "call",
    [
        lambda M: M.use_tool_id(tool_id=TOOL, name="x"),
        lambda M: M.get_tool(tool_id=TOOL),
        lambda M: M.free_tool_id(tool_id=TOOL),
        lambda M: M.clear_tool_id(tool_id=TOOL),
        lambda M: M.get_events(tool_id=TOOL),
        lambda M: M.set_events(TOOL, event_set=0),
        lambda M: M.register_callback(TOOL, M.events.LINE, func=None),
        lambda M: M.get_local_events(TOOL, code=some_code()),
        lambda M: M.set_local_events(TOOL, some_code(), event_set=0),
    ],
)
def test_no_keyword_arguments(M: Any, call: Any) -> None:
    with pytest.raises(TypeError):
        call(M)
    assert M.get_tool(TOOL) is None


def test_no_keyword_arguments_message(M: Any) -> None:
    with pytest.raises(TypeError) as info:
        M.use_tool_id(tool_id=TOOL, name="x")
    assert "takes no keyword arguments" in str(info.value)


@pytest.mark.parametrize(
    "func, args",
    [
        ("use_tool_id", (TOOL,)),
        ("use_tool_id", (TOOL, "x", 1)),
        ("free_tool_id", ()),
        ("free_tool_id", (TOOL, TOOL)),
        ("clear_tool_id", ()),
        ("get_tool", ()),
        ("get_tool", (TOOL, TOOL)),
        ("get_events", ()),
        ("set_events", (TOOL,)),
        ("set_events", (TOOL, 0, 0)),
        ("register_callback", (TOOL, 1)),
        ("register_callback", (TOOL, 1, None, None)),
        ("get_local_events", (TOOL,)),
        ("set_local_events", (TOOL, f_plain.__code__)),
        ("restart_events", (1,)),
    ],
)
def test_wrong_arity_is_type_error(M: Any, func: str, args: tuple) -> None:
    with pytest.raises(TypeError):
        getattr(M, func)(*args)
    assert M.get_tool(TOOL) is None


@pytest.mark.parametrize(
    "func, args, message",
    [
        ("use_tool_id", (TOOL,), "use_tool_id expected 2 arguments, got 1"),
        ("set_events", (TOOL,), "set_events expected 2 arguments, got 1"),
        ("register_callback", (TOOL, 1), "register_callback expected 3 arguments, got 2"),
        ("get_local_events", (TOOL,), "get_local_events expected 2 arguments, got 1"),
        ("set_local_events", (TOOL, f_plain.__code__), "set_local_events expected 3 arguments, got 2"),
    ],
    ids=["use_tool_id", "set_events", "register_callback", "get_local_events", "set_local_events"],
)
def test_wrong_arity_messages(M: Any, func: str, args: tuple, message: str) -> None:
    # The messages of 3.12 and 3.13 agree for these multi-argument functions.
    with pytest.raises(TypeError) as info:
        getattr(M, func)(*args)
    assert str(info.value) == message
