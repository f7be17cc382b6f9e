"""Monitoring must not change what the program sees.

Each test computes something without monitoring, then with every event of
group 1 (PY_START, PY_RESUME, PY_RETURN, PY_YIELD, LINE) enabled globally,
both with callbacks that record and with callbacks that return DISABLE, and
compares.  Monitored runs are done twice so that disabled locations are
exercised as well as armed ones.
"""

from __future__ import annotations

import contextlib
import copy
import dis
import functools
import inspect
import io
import marshal
import pickle
import sys
import traceback
import types
import warnings
from typing import Any, Callable, Iterator

import pytest

from lowimpact._lines import co_lines

from .helpers import ALL_EVENT_NAMES, Recorder, Tool, group1_events


# Module-level functions: pickled by reference and inspected for source.
def module_level(x: int) -> int:
    y = x * 2
    return y + 1


def module_failing(d: dict) -> int:
    return d["a"]["b"] + 1


def module_gen(n: int) -> Iterator[int]:
    for i in range(n):
        yield i * i


@contextlib.contextmanager
def group1_on(M: Any, tool: Tool, mode: str) -> Iterator[list]:
    """Enable group-1 events globally; yield the list of (event, code) seen.

    Each callback also checks that the frame one level up runs the code
    object it was given, and records a mismatch as an event.
    """
    seen: list = []

    def make(name: str) -> Callable[..., Any]:
        def callback(code: Any, *args: Any) -> Any:
            if sys._getframe(1).f_code is not code:
                seen.append(("FRAME MISMATCH", name, code))
            seen.append((name, code))
            return M.DISABLE if mode == "disable" else None

        return callback

    names = ("PY_START", "PY_RESUME", "PY_RETURN", "PY_YIELD", "LINE")
    for name in names:
        tool.register(getattr(M.events, name), make(name))
    tool.set_events(group1_events(M))
    try:
        yield seen
    finally:
        tool.set_events(0)
        for name in names:
            tool.register(getattr(M.events, name), None)
        M.restart_events()


@pytest.fixture(params=["record", "disable"])
def mode(request: Any) -> str:
    return request.param


def same_under_monitoring(M: Any, tool: Tool, mode: str, compute: Callable[[], Any]) -> Any:
    """compute() without monitoring, then twice with; all three must be equal."""
    baseline = compute()
    with group1_on(M, tool, mode) as seen:
        first = compute()
        second = compute()
    assert first == baseline
    assert second == baseline
    assert not [s for s in seen if s[0] == "FRAME MISMATCH"]
    return baseline


# --------------------------------------------------------------------------
# Results


def test_results_unchanged(M: Any, tool: Tool, mode: str) -> None:
    def fib(n: int) -> int:
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def work() -> tuple:
        squares = [x * x for x in range(5)]
        evens = {x for x in range(10) if x % 2 == 0}
        total = sum(v for v in squares)
        try:
            {}["missing"]
        except KeyError as e:
            caught = repr(e)
        return fib(10), squares, sorted(evens), total, caught, list(module_gen(4)), module_level(3)

    assert same_under_monitoring(M, tool, mode, work)[0] == 55


def test_generator_and_coroutine_results_unchanged(M: Any, tool: Tool, mode: str) -> None:
    def gen() -> Any:
        got = []
        x = yield "first"
        while x is not None:
            got.append(x)
            x = yield len(got)
        return got

    async def coro(n: int) -> int:
        total = 0
        for i in range(n):
            total += await sub(i)
        return total

    async def sub(i: int) -> int:
        return i + 1

    def work() -> tuple:
        g = gen()
        out = [next(g), g.send("a"), g.send("b")]
        try:
            g.send(None)
        except StopIteration as stop:
            out.append(stop.value)
        c = coro(4)
        try:
            c.send(None)
        except StopIteration as stop:
            out.append(stop.value)
        return tuple(out)

    assert same_under_monitoring(M, tool, mode, work) == ("first", 1, 2, ["a", "b"], 10)


def test_exception_behaviour_unchanged(M: Any, tool: Tool, mode: str) -> None:
    def nested() -> list:
        log = []
        for exc in (KeyError, ValueError, ZeroDivisionError):
            try:
                try:
                    raise exc("x")
                finally:
                    log.append("finally")
            except (KeyError, ValueError) as e:
                log.append(type(e).__name__)
            except Exception as e:
                log.append("other " + type(e).__name__)
        return log

    same_under_monitoring(M, tool, mode, nested)


# --------------------------------------------------------------------------
# Tracebacks and frames


def _format_failure(func: Callable[[], Any]) -> str:
    try:
        func()
    except Exception:
        return traceback.format_exc()
    raise AssertionError("no exception")


def test_traceback_text_unchanged(M: Any, tool: Tool, mode: str) -> None:
    def caller() -> int:
        value = module_failing({"a": {}})
        return value

    text = same_under_monitoring(M, tool, mode, lambda: _format_failure(caller))
    assert "KeyError: 'b'" in text
    assert 'return d["a"]["b"] + 1' in text


def test_traceback_carets_of_binary_op(M: Any, tool: Tool, mode: str) -> None:
    def divide(a: int, b: int) -> float:
        ratio = (a + 1) / (b * 0)
        return ratio

    text = same_under_monitoring(M, tool, mode, lambda: _format_failure(lambda: divide(1, 2)))
    assert "ZeroDivisionError" in text


def test_traceback_through_generator_unchanged(M: Any, tool: Tool, mode: str) -> None:
    def gen() -> Any:
        yield 1
        yield {}["k"]

    same_under_monitoring(M, tool, mode, lambda: _format_failure(lambda: list(gen())))


def test_traceback_positions_unchanged(M: Any, tool: Tool, mode: str) -> None:
    def fails() -> None:
        a = [1]
        a[1] = a[0] + a[5]

    def positions() -> list:
        try:
            fails()
        except IndexError as e:
            tb = e.__traceback__
            out = []
            while tb is not None:
                out.append((tb.tb_frame.f_code.co_name, tb.tb_lineno, tb.tb_lasti))
                tb = tb.tb_next
            return out
        raise AssertionError

    assert same_under_monitoring(M, tool, mode, positions)[-1][0] == "fails"


class _Shapes:
    def method(self, seen: list) -> None:
        seen.append(sys._getframe(1).f_lasti)


def test_caller_f_lasti_unchanged(M: Any, tool: Tool, mode: str) -> None:
    # Where a caller stands while its callee runs, for each shape of call
    # CPython 3.11 inlines (and one through C, which it does not): the
    # engine's frame evaluation function, installed for a while after
    # events are turned on, must not show it elsewhere.
    def callee(seen: list, *args: Any, **kwargs: Any) -> None:
        seen.append(sys._getframe(1).f_lasti)

    def plain(seen: list) -> None:
        seen.append(sys._getframe(1).f_lasti)

    def positions() -> list:
        seen: list = []
        shapes = _Shapes()
        plain(seen)
        callee(seen, 1, 2)
        callee(seen, 1, k=2)
        shapes.method(seen)
        bound = shapes.method
        bound(seen)
        _Shapes.method(shapes, seen)
        list(map(plain, [seen]))
        return seen

    assert len(same_under_monitoring(M, tool, mode, positions)) == 7


def test_f_lineno_inside_function(M: Any, tool: Tool, mode: str) -> None:
    def f() -> list:
        out = [sys._getframe().f_lineno]
        for i in range(2):
            out.append(sys._getframe().f_lineno)
        out.append(sys._getframe().f_lineno)
        return out

    result = same_under_monitoring(M, tool, mode, f)
    first = f.__code__.co_firstlineno
    assert [line - first for line in result] == [1, 3, 3, 4]


@pytest.mark.parametrize("first", [32760, 70000])
def test_lines_beyond_16_bits(M: Any, tool: Tool, mode: str, first: int) -> None:
    # CPython 3.11 keeps the lines its tracing reads in 16-bit entries when
    # they fit; the 3.11 engine makes them for its shadows, 32-bit ones from
    # the original's highest line: lines from 32767 on must come out whole,
    # to a trace function as to the frame and the traceback.
    source = "\n" * (first - 1) + (
        "def f():\n"
        "    out = [sys._getframe().f_lineno]\n"
        "    for i in range(2):\n"
        "        out.append(sys._getframe().f_lineno)\n"
        "    try:\n"
        "        1 / 0\n"
        "    except ZeroDivisionError as exc:\n"
        "        out.append(exc.__traceback__.tb_lineno)\n"
        "    return out\n"
    )
    namespace: dict = {"sys": sys}
    exec(compile(source, "<far down>", "exec"), namespace)
    f = namespace["f"]
    assert f.__code__.co_firstlineno == first

    def traced() -> tuple:
        lines: list = []

        def trace(frame: Any, event: str, arg: Any) -> Any:
            if frame.f_code is f.__code__ and event == "line":
                lines.append(frame.f_lineno)
            return trace

        sys.settrace(trace)
        try:
            out = f()
        finally:
            sys.settrace(None)
        return out, lines

    out, lines = same_under_monitoring(M, tool, mode, traced)
    assert [line - first for line in out] == [1, 3, 3, 5]
    assert [line - first for line in lines] == [1, 2, 3, 2, 3, 2, 4, 5, 6, 7, 8]


def test_f_lasti_inside_function(M: Any, tool: Tool, mode: str) -> None:
    # inspect and traceback map f_lasti/tb_lasti to co_positions(): it must
    # index the original bytecode.
    def f() -> list:
        out = [sys._getframe().f_lasti]
        for i in range(2):
            out.append(sys._getframe().f_lasti)
        return out

    result = same_under_monitoring(M, tool, mode, f)
    assert set(result) <= {i.offset for i in dis.get_instructions(f)}


def test_f_lineno_of_suspended_generator(M: Any, tool: Tool, mode: str) -> None:
    def gen() -> Any:
        yield 1
        yield 2

    def observe() -> list:
        g = gen()
        out = [g.gi_frame.f_lineno]
        next(g)
        out.append(g.gi_frame.f_lineno)
        next(g)
        out.append(g.gi_frame.f_lineno)
        out.append(g.gi_frame.f_lasti)
        g.close()
        return out

    same_under_monitoring(M, tool, mode, observe)


def test_f_lineno_of_caller_frames(M: Any, tool: Tool, mode: str) -> None:
    def inner() -> list:
        frame = sys._getframe(1)
        return [frame.f_lineno, frame.f_code.co_name]

    def outer() -> list:
        return inner()

    same_under_monitoring(M, tool, mode, outer)


def test_inspect_stack_line_numbers(M: Any, tool: Tool, mode: str) -> None:
    def inner() -> list:
        # (3.10's FrameInfo has no positions.)
        return [(fi.function, fi.lineno, getattr(fi, "positions", None))
                for fi in inspect.stack(context=1)[:2]]

    def outer() -> list:
        x = inner()
        return x

    result = same_under_monitoring(M, tool, mode, outer)
    assert [r[0] for r in result] == ["inner", "outer"]


def test_inspect_getsource(M: Any, tool: Tool, mode: str) -> None:
    same_under_monitoring(M, tool, mode, lambda: (inspect.getsource(module_level), inspect.getsource(module_gen)))


def test_no_trace_function_installed(M: Any, tool: Tool, mode: str) -> None:
    def observe() -> tuple:
        return sys.gettrace(), sys.getprofile(), sys._getframe().f_trace

    assert same_under_monitoring(M, tool, mode, observe) == (sys.gettrace(), sys.getprofile(), None)


def test_warnings_report_the_right_line(M: Any, tool: Tool, mode: str) -> None:
    def warn() -> None:
        warnings.warn("careful", UserWarning, stacklevel=1)

    def catch() -> list:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warn()
        return [(w.lineno, str(w.message)) for w in caught]

    result = same_under_monitoring(M, tool, mode, catch)
    assert result == [(warn.__code__.co_firstlineno + 1, "careful")]


# --------------------------------------------------------------------------
# Code objects


def _positions(code: types.CodeType) -> list:
    """Its instructions' positions: 3.10's code has only lines (co_lines)."""
    return list(code.co_positions()) if hasattr(code, "co_positions") else []


def _dis_text(func: Any) -> str:
    out = io.StringIO()
    dis.dis(func, file=out)
    return out.getvalue()


def test_dis_output_and_co_code_unchanged(M: Any, tool: Tool, mode: str) -> None:
    def f(n: int) -> int:
        total = 0
        for i in range(n):
            if i % 2:
                total += i
        return total

    code = f.__code__
    before = (_dis_text(f), code.co_code, list(co_lines(code)), _positions(code))
    with group1_on(M, tool, mode):
        f(5)
        during = (_dis_text(f), code.co_code, list(co_lines(code)), _positions(code))
        f(5)
    after = (_dis_text(f), code.co_code, list(co_lines(code)), _positions(code))
    assert during == before
    assert after == before


_TWIN_SOURCE = """
def twin(n):
    total = 0
    for i in range(n):
        if i % 2:
            total += i * 3
    return total
"""

# More than 256 constants: LOAD_CONST needs EXTENDED_ARG, which the
# interpreter specialises too.
_BIG_TWIN_SOURCE = "def twin(n):\n    total = 0\n" + "".join(
    "    total += n * %d\n" % (1000 + k) for k in range(300)) + "    return total\n"


def _twins(source: str = _TWIN_SOURCE) -> tuple:
    """Two functions of identical code objects, compiled apart."""
    return tuple(_exec_twin(source) for _ in range(2))


def _exec_twin(source: str = _TWIN_SOURCE) -> Any:
    namespace: dict = {}
    exec(compile(source, "<twin>", "exec"), namespace)
    return namespace["twin"]


@pytest.mark.parametrize("source", [_TWIN_SOURCE, _BIG_TWIN_SOURCE], ids=["small", "extended_args"])
@pytest.mark.parametrize("history", ["never_ran", "warmed_up"])
def test_co_code_first_read_with_events_on(M: Any, tool: Tool, mode: str, history: str,
                                           source: str) -> None:
    """co_code read for the first time while events are on shows the code
    as compiled, also once the interpreter specialised it, and where its
    instructions need EXTENDED_ARG prefixes."""
    f, twin = _twins(source)
    if source is _BIG_TWIN_SOURCE:
        assert dis.opmap["EXTENDED_ARG"] in twin.__code__.co_code[::2]
    if history == "warmed_up":
        for _ in range(50):
            f(20)
    with group1_on(M, tool, mode):
        during = f.__code__.co_code
        assert f(20) == twin(20)
    assert during == twin.__code__.co_code
    assert f.__code__.co_code == twin.__code__.co_code


def test_co_code_with_bytes_in_inline_caches(M: Any, tool: Tool, mode: str) -> None:
    """Code made with something in an inline cache: co_code shows the cache
    zeroed, as for the same code with events off."""
    if "BINARY_OP" not in dis.opmap:
        pytest.skip("no inline caches before 3.11")
    base = _exec_twin().__code__
    crafted = bytearray(base.co_code)
    at = next(i for i in range(0, len(crafted), 2) if crafted[i] == dis.opmap["BINARY_OP"])
    crafted[at + 2:at + 4] = b"\x07\x09"     # BINARY_OP's first cache unit
    f = types.FunctionType(base.replace(co_code=bytes(crafted)), {})
    twin = types.FunctionType(base.replace(co_code=bytes(crafted)), {})
    with group1_on(M, tool, mode):
        during = f.__code__.co_code
        assert f(20) == twin(20)
    assert during == twin.__code__.co_code
    assert during[at + 2:at + 4] == b"\x00\x00"


def test_dis_of_suspended_generator_code(M: Any, tool: Tool, mode: str) -> None:
    def gen() -> Any:
        yield 1
        yield 2

    before = _dis_text(gen)
    g = gen()
    with group1_on(M, tool, mode):
        next(g)
        during = _dis_text(gen)
    g.close()
    assert during == before


def test_code_object_identity_in_callbacks(M: Any, tool: Tool, mode: str) -> None:
    def f() -> Any:
        yield 1

    with group1_on(M, tool, mode) as seen:
        list(f())
    mine = [name for name, code, *rest in seen if code is f.__code__]
    assert mine[:2] == ["PY_START", "LINE"]
    assert not [s for s in seen if s[0] == "FRAME MISMATCH"]


@pytest.mark.parametrize("name", ["PY_START", "PY_RESUME", "PY_RETURN", "PY_YIELD", "LINE"])
def test_caller_frame_runs_the_code_in_callbacks(M: Any, tool: Tool, name: str) -> None:
    def gen() -> Any:
        x = yield 1
        return x

    frames: list[tuple] = []

    def callback(code: Any, *args: Any) -> None:
        if code is gen.__code__:
            frame = sys._getframe(1)
            frames.append((frame.f_code is code, frame.f_code.co_name))

    with Recorder(tool, getattr(M.events, name), gen):
        tool.register(getattr(M.events, name), callback)
        g = gen()
        next(g)
        with pytest.raises(StopIteration):
            g.send(5)
    assert frames and all(ok for ok, _ in frames), frames


def test_marshal_roundtrip(M: Any, tool: Tool, mode: str) -> None:
    def f(a: int) -> int:
        b = a + 1
        return b * 2

    before = marshal.loads(marshal.dumps(f.__code__))
    with group1_on(M, tool, mode):
        f(1)
        during = marshal.dumps(f.__code__)
        clone = marshal.loads(during)
        g = types.FunctionType(clone, f.__globals__)
        assert g(1) == 4
    # The bytes themselves can differ: marshal marks objects referenced more
    # than once, by reference count, and an instrumented copy shares the
    # constants and names of its original.  What they describe must not.
    assert clone == before == f.__code__
    assert clone.co_code == f.__code__.co_code
    assert list(co_lines(clone)) == list(co_lines(f.__code__))
    assert _positions(clone) == _positions(f.__code__)


def test_code_keeps_its_stack_size(M: Any, tool: Tool, mode: str) -> None:
    # Small stacks that probes returning or yielding a value would outgrow,
    # and a generator made before the events, resumed under them.
    def f(a: int) -> int:
        return a

    def g(a: int) -> Iterator[int]:
        yield a
        yield a

    codes = (f.__code__, g.__code__)
    sizes = [code.co_stacksize for code in codes]
    early = g(3)
    assert next(early) == 3
    with group1_on(M, tool, mode) as seen:
        assert f(1) == 1
        assert list(g(2)) == [2, 2]
        assert list(early) == [3]
        assert [code.co_stacksize for code in codes] == sizes
        assert [marshal.loads(marshal.dumps(code)).co_stacksize for code in codes] == sizes
        assert [code.replace().co_stacksize for code in codes] == sizes
    assert ("PY_RETURN", f.__code__) in seen and ("PY_YIELD", g.__code__) in seen
    assert [code.co_stacksize for code in codes] == sizes


def test_suspended_generator_frame_as_unmonitored(M: Any, tool: Tool) -> None:
    # A generator suspended under events shows what an unmonitored one
    # shows, and resumes right once they change while it is suspended.
    def gen() -> Iterator[int]:
        x = 1
        yield x
        for i in range(2):
            yield x + i
        yield 9

    def state(g: Any) -> tuple:
        fr = g.gi_frame
        return (fr.f_code is gen.__code__, fr.f_lasti, fr.f_lineno, dict(fr.f_locals))

    plain = gen()
    expected = [(next(plain), state(plain)) for _ in range(3)]
    seen: list = []
    first = gen.__code__.co_firstlineno

    def on_line(code: Any, line: int) -> None:
        if code is gen.__code__:
            seen.append(("LINE", line - first))

    def on_yield(code: Any, offset: int, value: Any) -> None:
        if code is gen.__code__:
            seen.append(("PY_YIELD", value))

    tool.register(M.events.LINE, on_line)
    tool.register(M.events.PY_YIELD, on_yield)
    try:
        tool.set_events(M.events.LINE | M.events.PY_YIELD)
        g = gen()
        got = [(next(g), state(g))]
        tool.set_events(M.events.LINE)
        got.append((next(g), state(g)))
        tool.set_events(M.events.PY_YIELD)
        got.append((next(g), state(g)))
        tool.set_events(0)
        assert list(g) == [9]
    finally:
        tool.set_events(0)
        tool.register(M.events.LINE, None)
        tool.register(M.events.PY_YIELD, None)
    assert got == expected
    assert seen == [("LINE", 1), ("LINE", 2), ("PY_YIELD", 1),
                    ("LINE", 3), ("LINE", 4), ("PY_YIELD", 2)]


def test_code_equality_and_hash(M: Any, tool: Tool, mode: str) -> None:
    def f(a: int) -> int:
        return a

    twin = f.__code__.replace()
    assert twin == f.__code__
    with group1_on(M, tool, mode):
        f(1)
        assert twin == f.__code__
        assert hash(twin) == hash(f.__code__)
        assert f.__code__.replace(co_name="g").co_name == "g"


def test_pickle_function_by_reference(M: Any, tool: Tool, mode: str) -> None:
    def roundtrip() -> tuple:
        return (
            pickle.loads(pickle.dumps(module_level)) is module_level,
            pickle.loads(pickle.dumps([module_level, module_gen]))[1] is module_gen,
            pickle.loads(pickle.dumps({"k": (1, 2.5, "s")})),
        )

    assert same_under_monitoring(M, tool, mode, roundtrip)[:2] == (True, True)


def test_copy_and_functools_wraps(M: Any, tool: Tool) -> None:
    def f(x: int) -> int:
        return x + 1

    @functools.wraps(f)
    def wrapper(*args: Any) -> int:
        return f(*args) * 10

    with Recorder(tool, M.events.PY_START | M.events.PY_RETURN, f, wrapper) as rec:
        assert copy.copy(f) is f
        assert copy.deepcopy(f) is f
        assert wrapper(1) == 20
    assert wrapper.__wrapped__ is f and wrapper.__name__ == "f"
    # The wrapper's events carry its own code object (whose co_name is "wrapper").
    assert [(n, c.co_name) for n, c in [(e.name, e.code) for e in rec.events]] == [
        ("PY_START", "wrapper"),
        ("PY_START", "f"),
        ("PY_RETURN", "f"),
        ("PY_RETURN", "wrapper"),
    ]


def test_assigning_dunder_code_while_monitored(M: Any, tool: Tool) -> None:
    def f() -> str:
        return "f"

    def g() -> str:
        a = "g"
        return a

    original = f.__code__
    with Recorder(tool, group1_events(M), f, g) as rec:
        f()
        f.__code__ = g.__code__
        try:
            assert f() == "g"
        finally:
            f.__code__ = original
        assert f() == "f"
    assert [(e.name, e.code) for e in rec.events] == [
        ("PY_START", original),
        ("LINE", original),
        ("PY_RETURN", original),
        ("PY_START", g.__code__),
        ("LINE", g.__code__),
        ("LINE", g.__code__),
        ("PY_RETURN", g.__code__),
        ("PY_START", original),
        ("LINE", original),
        ("PY_RETURN", original),
    ]
    assert rec.compact("LINE")[1:3] == [("LINE", "g", 1), ("LINE", "g", 2)]


def test_function_built_from_monitored_code(M: Any, tool: Tool, mode: str) -> None:
    def f(a: int) -> int:
        return a * 3

    def build() -> int:
        clone = types.FunctionType(f.__code__, f.__globals__, "clone")
        return clone(2)

    assert same_under_monitoring(M, tool, mode, build) == 6


def test_all_events_on_results_unchanged(M: Any, tool: Tool) -> None:
    # Every event of both groups, recorded: the program still computes the same.
    def work() -> tuple:
        out = []
        for i in range(3):
            try:
                out.append(10 // (i - 1))
            except ZeroDivisionError:
                out.append(None)
        g = (x for x in "ab")
        return tuple(out), "".join(g), len(str(out)), max(1, 2)

    baseline = work()
    seen: list[str] = []
    for name in ALL_EVENT_NAMES:
        tool.register(getattr(M.events, name), lambda *args, name=name: seen.append(name))
    tool.set_events(sum(getattr(M.events, n) for n in ALL_EVENT_NAMES))
    try:
        monitored = work()
    finally:
        tool.set_events(0)
    assert monitored == baseline
    assert {"LINE", "CALL", "RAISE", "EXCEPTION_HANDLED", "INSTRUCTION"} <= set(seen)


def test_traceback_made_by_python_code(M: Any, tool: Tool, mode: str) -> None:
    def make() -> tuple:
        frame = sys._getframe()
        tb = types.TracebackType(None, frame, 1, 5)
        return tb.tb_lasti, tb.tb_lineno, tb.tb_frame is frame

    assert same_under_monitoring(M, tool, mode, make)[:2] == (1, 5)


def test_interpreter_prints_callback_errors_at_the_instruction(
    M: Any, tool: Tool, capsys: Any
) -> None:
    E = M.events

    def c_return(code: Any, offset: int, callable: Any, arg0: Any) -> None:
        if code is f.__code__:
            raise ValueError("from C_RETURN")

    def f(x: list) -> int:
        y = len(x)
        return y

    tool.register(E.CALL, lambda *args: None)
    tool.register(E.C_RETURN, c_return)
    tool.set_events(E.CALL | E.C_RETURN | E.C_RAISE)
    try:
        with pytest.raises(ValueError) as info:
            f([1])
    finally:
        tool.set_events(0)
    # The interpreter's own printer reads the locations of the code that ran.
    sys.__excepthook__(info.type, info.value, info.tb)
    printed = capsys.readouterr().err
    assert ", in f\n    y = len(x)\n" in printed
    if (3, 11) <= sys.version_info[:2] <= (3, 12):
        # 3.11 and 3.12 underline the call (3.13 leaves this one bare, and
        # 3.10 has no columns to underline with).
        assert ", in f\n    y = len(x)\n        ^^^^^^\n" in printed


def test_traceback_of_a_frame_whose_events_changed_while_handling(M: Any, tool: Tool) -> None:
    def victim() -> None:
        raise ValueError

    def handler() -> list:
        try:
            victim()
        except ValueError as error:
            # The events change while this frame handles the exception.
            tool.set_events(0)
            tb = error.__traceback__
            lines = []
            while tb is not None:
                lines.append((tb.tb_frame.f_code.co_name,
                              tb.tb_lineno - tb.tb_frame.f_code.co_firstlineno))
                tb = tb.tb_next
            return lines
        return []

    tool.register(M.events.LINE, lambda code, line: None)
    tool.set_events(M.events.LINE)
    try:
        assert handler() == [("handler", 2), ("victim", 1)]
    finally:
        tool.set_events(0)


# --------------------------------------------------------------------------
# An exception a signal handler raises


class Alarm(Exception):
    pass


def spin(log: list) -> None:
    total = 0
    while True:
        total += 1
        try:
            total ^= 3
        finally:
            log.append(total)
        total = ~total
        total = -total


def _alarm(signum: int, frame: Any) -> None:
    raise Alarm()


def _landings(runs: int) -> list[tuple[int, int]]:
    """(traceback line, frame line) of spin() where SIGALRM's handler's
    exception leaves it, for *runs* alarms."""
    import signal

    previous = signal.signal(signal.SIGALRM, _alarm)
    found = []
    try:
        for _ in range(runs):
            try:
                signal.setitimer(signal.ITIMER_REAL, 0.001)
                spin([])
            except Alarm as exc:
                tb = exc.__traceback__
                while tb is not None and tb.tb_frame.f_code is not spin.__code__:
                    tb = tb.tb_next
                if tb is not None:
                    found.append((tb.tb_lineno, tb.tb_frame.f_lineno))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return found


@pytest.mark.skipif(sys.platform == "win32", reason="SIGALRM and setitimer are POSIX")
def test_signal_handler_exception_lands_on_a_line_of_the_program(M: Any, tool: Tool) -> None:
    """A signal handler's exception (KeyboardInterrupt the common one) shows in
    the traceback the line the frame was on when it left, as unmonitored:
    3.9 runs handlers after nearly any instruction, a probe's too, and an
    exception there must not name the line the probe comes before."""
    first = spin.__code__.co_firstlineno
    finally_line = first + 7  # log.append(total): the frame ends there after the finally body
    unmonitored = _landings(100)
    assert unmonitored and all(tb == frame or frame == finally_line for tb, frame in unmonitored)
    tool.register(M.events.LINE, lambda code, line: None)
    tool.set_events(M.events.LINE)
    try:
        monitored = _landings(300)
    finally:
        tool.set_events(0)
    assert monitored
    wrong = [(tb - first, frame - first) for tb, frame in monitored if tb != frame and frame != finally_line]
    assert not wrong, "traceback line != frame line (relative): %s" % sorted(set(wrong))
