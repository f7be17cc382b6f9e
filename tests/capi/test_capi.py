"""The C API (lowimpact.h), through an extension compiled for the running
interpreter (capitest.c): events fired from C reach Python tools with the
arguments CPython 3.13 gives them; C callbacks get the interpreter's events
and can DISABLE them.  On 3.13 the extension side is the interpreter's own:
there these tests pin its behaviour, which 3.11 and 3.12 must match."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, List

import pytest

import lowimpact

HERE = Path(__file__).parent

PY_START, PY_RESUME, PY_RETURN, PY_YIELD, CALL, LINE = 0, 1, 2, 3, 4, 5
INSTRUCTION, JUMP, BRANCH, STOP_ITERATION, RAISE = 6, 7, 8, 9, 10
EXCEPTION_HANDLED, PY_UNWIND, PY_THROW, RERAISE, C_RETURN, C_RAISE = 11, 12, 13, 14, 15, 16


def compile_extension(source: Path, out_dir: Path) -> Path:
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = out_dir / (source.stem + suffix)
    command = cc + [
        "-shared", "-fPIC", "-O1", "-std=c11", "-Wall", "-Wextra", "-Werror",
        "-I" + sysconfig.get_paths()["include"], "-I" + lowimpact.get_include(),
        str(source), "-o", str(target),
    ]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return target


@pytest.fixture(scope="session")
def capitest(tmp_path_factory: Any) -> ModuleType:
    target = compile_extension(HERE / "capitest.c", tmp_path_factory.mktemp("capitest"))
    spec = importlib.util.spec_from_file_location("capitest", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_header_compiles_as_cplusplus(tmp_path: Path) -> None:
    compiler = shutil.which("g++") or shutil.which("c++")
    assert compiler is not None, "no C++ compiler"
    source = tmp_path / "use.cpp"
    source.write_text('#include "lowimpact.h"\n'
                      "int use(PyMonitoringState *s, PyObject *c) {\n"
                      "    return PyMonitoring_FirePyStartEvent(s, c, 0) +\n"
                      "           LowImpact_SetEvents(1, 0);\n}\n")
    subprocess.run([compiler, "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                    "-I" + sysconfig.get_paths()["include"], "-I" + lowimpact.get_include(),
                    str(source)], check=True, capture_output=True, text=True)


class CodeLike:
    """What a Cython-like runtime passes as the code of its events."""

    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture
def tool3(M: Any) -> Iterator[int]:
    """Tool 3 in use for the test, freed afterwards with its events and callbacks."""
    M.use_tool_id(3, "capi")
    yield 3
    M.set_events(3, 0)
    M.clear_tool_id(3)
    M.free_tool_id(3)


@pytest.fixture
def recorded(M: Any, tool3: int) -> List[tuple]:
    """Tool 3 with a recording Python callback for every event."""
    log: List[tuple] = []
    names = [n for n in vars(M.events) if n.isupper() and n != "NO_EVENTS"]

    def make(name: str) -> Any:
        def callback(code: Any, *args: Any) -> None:
            if isinstance(code, CodeLike):   # the tool sees Python code too
                log.append((name, code) + args)
        return callback

    for name in names:
        M.register_callback(3, getattr(M.events, name), make(name))
    return log


def fire_one(capitest: ModuleType, event: int, *args: Any) -> int:
    capitest.scope(event)
    return capitest.fire(0, *args)


@pytest.mark.parametrize("event, name, extra, seen", [
    (PY_START, "PY_START", (), ()),
    (PY_RESUME, "PY_RESUME", (), ()),
    (PY_RETURN, "PY_RETURN", ("value",), ("value",)),
    (PY_YIELD, "PY_YIELD", (42,), (42,)),
    (CALL, "CALL", (len, "arg0"), (len, "arg0")),
    (JUMP, "JUMP", (20,), (20,)),
    (BRANCH, "BRANCH", (30,), (30,)),
])
def test_events_from_c_reach_python_tools(M: Any, capitest: ModuleType, recorded: List[tuple],
                                          event: int, name: str, extra: tuple,
                                          seen: tuple) -> None:
    code = CodeLike("c")
    M.set_events(3, 1 << event)
    assert fire_one(capitest, event, code, 8, *extra) == 1 << 3
    assert recorded == [(name, code, 8) + seen]


def test_line_event_gets_the_line(M: Any, capitest: ModuleType, recorded: List[tuple]) -> None:
    code = CodeLike("c")
    M.set_events(3, M.events.LINE)
    fire_one(capitest, LINE, code, 8, 123)
    assert recorded == [("LINE", code, 123)]


@pytest.mark.parametrize("event, name", [
    (RAISE, "RAISE"), (RERAISE, "RERAISE"), (EXCEPTION_HANDLED, "EXCEPTION_HANDLED"),
    (PY_UNWIND, "PY_UNWIND"), (PY_THROW, "PY_THROW"),
])
def test_exception_events_get_the_current_exception(M: Any, capitest: ModuleType,
                                                    recorded: List[tuple], event: int,
                                                    name: str) -> None:
    code = CodeLike("c")
    error = KeyError("k")
    M.set_events(3, 1 << event)
    fire_one(capitest, event, code, 4, error)
    assert recorded == [(name, code, 4, error)]


def test_stop_iteration_event_makes_the_exception(M: Any, capitest: ModuleType,
                                                  recorded: List[tuple]) -> None:
    code = CodeLike("c")
    M.set_events(3, M.events.STOP_ITERATION)
    fire_one(capitest, STOP_ITERATION, code, 4, (1, 2))
    ((name, where, offset, exc),) = recorded
    assert (name, where, offset) == ("STOP_ITERATION", code, 4)
    assert type(exc) is StopIteration and exc.args == (1, 2)


def test_c_return_and_c_raise_follow_call(M: Any, capitest: ModuleType,
                                          recorded: List[tuple]) -> None:
    code = CodeLike("c")
    M.set_events(3, M.events.CALL | M.events.C_RETURN | M.events.C_RAISE)
    capitest.scope(C_RETURN, C_RAISE)
    active = capitest.reenter()
    assert active == [1 << 3, 1 << 3]
    capitest.fire(0, code, 2, "result")
    capitest.fire(1, code, 2, ValueError("v"))
    assert [r[:3] for r in recorded] == [("C_RETURN", code, 2), ("C_RAISE", code, 2)]
    assert recorded[0][3] == "result"


def test_nothing_arrives_when_events_are_off(M: Any, capitest: ModuleType,
                                             recorded: List[tuple]) -> None:
    code = CodeLike("c")
    all_ids = range(17)
    capitest.scope(*all_ids)
    assert capitest.reenter() == [0] * 17
    for index in (PY_START, PY_RETURN, LINE, BRANCH):
        capitest.fire(index, code, 0, 1)
    assert recorded == []


def test_scope_follows_set_events_through_the_version(M: Any, capitest: ModuleType,
                                                      recorded: List[tuple]) -> None:
    capitest.scope(PY_START, LINE)
    assert capitest.reenter() == [0, 0]
    M.set_events(3, M.events.LINE)
    assert capitest.reenter() == [0, 1 << 3]
    M.set_events(3, M.events.LINE | M.events.PY_START)
    assert capitest.reenter() == [1 << 3, 1 << 3]
    capitest.exit_scope()


def test_disable_from_python_clears_the_state(M: Any, capitest: ModuleType, tool3: int) -> None:
    code = CodeLike("c")
    seen: List[int] = []
    M.register_callback(3, M.events.LINE,
                        lambda c, line: seen.append(line) or M.DISABLE
                        if isinstance(c, CodeLike) else None)
    M.set_events(3, M.events.LINE)
    capitest.scope(LINE)
    assert capitest.fire(0, code, 0, 7) == 0
    assert capitest.fire(0, code, 0, 8) == 0
    assert seen == [7]
    # restart_events changes the version: the next scope is active again.
    M.restart_events()
    assert capitest.reenter() == [1 << 3]


def test_disable_of_a_non_local_event_is_an_error(M: Any, capitest: ModuleType,
                                                   tool3: int) -> None:
    code = CodeLike("c")
    M.register_callback(3, M.events.RAISE,
                        lambda code, *args: M.DISABLE if isinstance(code, CodeLike) else None)
    M.set_events(3, M.events.RAISE)
    with pytest.raises(ValueError, match="Cannot disable RAISE events"):
        fire_one(capitest, RAISE, code, 0, KeyError())
    assert M.register_callback(3, M.events.RAISE, None) is None


def test_callback_error_propagates(M: Any, capitest: ModuleType, tool3: int) -> None:
    code = CodeLike("c")

    def fail(code: Any, *args: Any) -> None:
        if isinstance(code, CodeLike):
            raise ZeroDivisionError

    M.register_callback(3, M.events.PY_START, fail)
    M.set_events(3, M.events.PY_START)
    with pytest.raises(ZeroDivisionError):
        fire_one(capitest, PY_START, code, 0)


# --------------------------------------------------------------------------
# Tool side


def profiled() -> int:
    return sum(square(i) for i in range(3))


def square(x: int) -> int:
    return x * x


def test_c_callbacks_get_the_interpreters_events(M: Any, capitest: ModuleType) -> None:
    capitest.tool_setup(2, "c tool", M.events.PY_START | M.events.PY_RETURN)
    try:
        capitest.install(2, PY_START)
        capitest.install(2, PY_RETURN)
        capitest.calls()
        assert profiled() == 5
        calls = capitest.calls()
    finally:
        capitest.uninstall(2, PY_START)
        capitest.uninstall(2, PY_RETURN)
        capitest.tool_teardown(2)
    square_calls = [c for c in calls if c[2][0] is square.__code__]
    assert [(tool, event) for tool, event, _ in square_calls] == [(2, PY_START), (2, PY_RETURN)] * 3
    assert [args[2] for _, event, args in square_calls if event == PY_RETURN] == [0, 1, 4]
    assert all(isinstance(args[1], int) for _, _, args in square_calls)


def test_disable_from_a_c_callback(M: Any, capitest: ModuleType) -> None:
    capitest.tool_setup(2, "c tool", 0)
    capitest.tool_local(2, square.__code__, M.events.LINE)
    try:
        capitest.install(2, LINE, 1)   # DISABLE from the first call on
        capitest.calls()
        for i in range(5):
            square(i)
        calls = capitest.calls()
    finally:
        capitest.tool_local(2, square.__code__, 0)
        capitest.uninstall(2, LINE)
        capitest.tool_teardown(2)
    assert len(calls) == 1


# A C callback that a location's event went to once is called there again
# without its tools and callback being looked up (3.9/3.10's probes keep it,
# as 3.11's do): what it returns later, and what changes meanwhile, counts.

def test_c_callback_disables_where_it_ran_before(M: Any, capitest: ModuleType) -> None:
    capitest.tool_setup(2, "c tool", 0)
    capitest.tool_local(2, square.__code__, M.events.PY_START | M.events.PY_RETURN)
    try:
        capitest.install(2, PY_START, 3)   # DISABLE from its third call on
        capitest.install(2, PY_RETURN)
        capitest.calls()
        results = []
        for i in range(5):
            results.append(square(i))
        calls = capitest.calls()
    finally:
        capitest.tool_local(2, square.__code__, 0)
        capitest.uninstall(2, PY_START)
        capitest.uninstall(2, PY_RETURN)
        capitest.tool_teardown(2)
    assert results == [0, 1, 4, 9, 16]
    assert [(event, args[2:]) for _, event, args in calls] == [
        (PY_START, ()), (PY_RETURN, (0,)), (PY_START, ()), (PY_RETURN, (1,)),
        (PY_START, ()), (PY_RETURN, (4,)), (PY_RETURN, (9,)), (PY_RETURN, (16,))]


def sum_below(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def test_c_callback_disables_a_line_it_ran_at_before(M: Any, capitest: ModuleType) -> None:
    code = sum_below.__code__
    capitest.tool_setup(2, "c tool", 0)
    capitest.tool_local(2, code, M.events.LINE)
    try:
        capitest.install(2, LINE, 5)   # DISABLE from its fifth call on
        capitest.calls()
        assert sum_below(10) == 45
        assert sum_below(10) == 45
        calls = capitest.calls()
    finally:
        capitest.tool_local(2, code, 0)
        capitest.uninstall(2, LINE)
        capitest.tool_teardown(2)
    # The loop's body and its `for` where the loop jumps back DISABLEd at
    # their second pass (the fifth and sixth calls, made from where they
    # ran before), the return at its first; the second call reports the
    # lines the first saw once: its first and the `for` where the loop
    # starts.
    assert [args[1] - code.co_firstlineno for _, _, args in calls] == [1, 2, 3, 2, 3, 2, 4, 1, 2]


def test_c_callback_error_at_a_later_call_propagates(M: Any, capitest: ModuleType) -> None:
    capitest.tool_setup(2, "c tool", 0)
    capitest.tool_local(2, square.__code__, M.events.PY_RETURN)
    try:
        capitest.install(2, PY_RETURN, 0, 3)   # raises at its third call
        capitest.calls()
        assert square(2) == 4
        assert square(3) == 9
        with pytest.raises(RuntimeError, match="call 3 of the C callback"):
            square(4)
        assert square(5) == 25
        calls = capitest.calls()
    finally:
        capitest.tool_local(2, square.__code__, 0)
        capitest.uninstall(2, PY_RETURN)
        capitest.tool_teardown(2)
    assert [args[2] for _, _, args in calls] == [4, 9, 16, 25]


def turn_off_midway(M: Any, capitest: ModuleType, n: int) -> list:
    seen = []
    for i in range(n):
        if i == 3:
            seen = capitest.calls()
            M.set_events(2, 0)
    return seen


def test_c_callback_stops_in_a_running_frame_when_its_events_go(M: Any,
                                                                capitest: ModuleType) -> None:
    code = turn_off_midway.__code__
    capitest.tool_setup(2, "c tool", M.events.LINE)
    try:
        capitest.install(2, LINE)
        seen = turn_off_midway(M, capitest, 6)
        after = capitest.calls()
    finally:
        M.set_events(2, 0)
        capitest.uninstall(2, LINE)
        capitest.tool_teardown(2)
    first = code.co_firstlineno
    lines = [args[1] - first for _, _, args in seen if args[0] is code]
    later = [args[1] - first for _, _, args in after if args[0] is code]
    # The loop's lines at each of its first four iterations, none at the
    # last two (3.12 still reports the frame's `return seen`).
    assert lines.count(2) == lines.count(3) == 4
    assert 2 not in later and 3 not in later


def test_c_tool_gets_events_fired_from_c(M: Any, capitest: ModuleType) -> None:
    code = CodeLike("c")
    capitest.tool_setup(2, "c tool", M.events.PY_START)
    try:
        capitest.install(2, PY_START)
        capitest.calls()
        fire_one(capitest, PY_START, code, 6)
        calls = capitest.calls()
    finally:
        capitest.uninstall(2, PY_START)
        capitest.tool_teardown(2)
    assert [c for c in calls if isinstance(c[2][0], CodeLike)] == [(2, PY_START, (code, 6))]


def test_removed_c_callback_gets_nothing(M: Any, capitest: ModuleType) -> None:
    capitest.tool_setup(2, "c tool", M.events.PY_START)
    try:
        capitest.install(2, PY_START)
        capitest.uninstall(2, PY_START)
        capitest.calls()
        square(2)
        assert capitest.calls() == []
        assert M.register_callback(2, M.events.PY_START, None) is None
    finally:
        capitest.tool_teardown(2)


def branchy(n: int) -> int:
    total = 0
    for i in range(n):
        if i % 3:
            total += i
    return total


# What a C callback answers (lowimpact.h).
LOWIMPACT_DISABLE = 1
LOWIMPACT_DISABLE_WAY = 2


def branchy_answering(M: Any, capitest: ModuleType, after: int, answer: int) -> tuple:
    """The BRANCH calls of a C callback: of branchy(6) answering CONTINUE;
    of two more calls answering `answer` from its `after`-th call on; of a
    call after restart_events()."""
    code = branchy.__code__
    capitest.tool_setup(2, "c tool", 0)
    capitest.tool_local(2, code, M.events.BRANCH)
    try:
        capitest.install(2, BRANCH)
        capitest.calls()
        branchy(6)
        every_pass = capitest.calls()
        capitest.install(2, BRANCH, after, 0, answer)
        branchy(6)
        branchy(6)
        answered = capitest.calls()
        M.restart_events()
        branchy(6)
        restarted = capitest.calls()
    finally:
        capitest.tool_local(2, code, 0)
        capitest.uninstall(2, BRANCH)
        capitest.tool_teardown(2)
    return every_pass, answered, restarted


def test_c_callback_of_branch(M: Any, capitest: ModuleType) -> None:
    """A C callback of BRANCH gets each pass's (code, offset, destination)
    as a Python callback does; its DISABLE silences both directions of
    that branch, until restart_events()."""
    code = branchy.__code__
    seen: List[tuple] = []
    M.use_tool_id(3, "python tool")
    M.register_callback(3, M.events.BRANCH, lambda *args: seen.append(args))
    M.set_local_events(3, code, M.events.BRANCH)
    try:
        branchy(6)
    finally:
        M.set_local_events(3, code, 0)
        M.register_callback(3, M.events.BRANCH, None)
        M.free_tool_id(3)
    # The loop's 6 passes and its end, the `if` of each pass: both ways each.
    assert len(seen) == 13 and len(set(seen)) == 4
    # DISABLE from the third call on
    every_pass, until_disabled, restarted = branchy_answering(M, capitest, 3, LOWIMPACT_DISABLE)
    assert every_pass == [(2, BRANCH, args) for args in seen]
    # The loop's branch returns DISABLE at its second pass, the `if` at its
    # second: neither reports again, the loop's end included.
    assert until_disabled == every_pass[:4]
    assert restarted == every_pass[:2]



def test_c_callback_disables_a_way_of_a_branch(M: Any, capitest: ModuleType) -> None:
    """LOWIMPACT_DISABLE_WAY from a C callback of BRANCH: the 3.11 engine
    stops reporting that way of the branch (the other way still reports)
    until restart_events(); elsewhere it is LOWIMPACT_CONTINUE."""
    every_pass, told_once, restarted = branchy_answering(M, capitest, 1,
                                                         LOWIMPACT_DISABLE_WAY)
    each_way = list(dict.fromkeys(every_pass))
    assert len(each_way) == 4   # the loop's and the `if`'s two ways each
    # (The 3.11 engine is the one that tells a branch's ways apart.)
    if sys.version_info[:2] == (3, 11):
        assert told_once == each_way
        assert restarted == each_way
    else:
        assert told_once == every_pass * 2
        assert restarted == every_pass
