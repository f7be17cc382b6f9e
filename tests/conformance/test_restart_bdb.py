"""restart_events() after PY_START returned DISABLE everywhere.

3.14's bdb monitoring backend leaves PY_START on for all code, disables it
from the callback in every function that holds no breakpoint, and calls
restart_events() at each call of a function that does.  Every function then
fires PY_START again at its next start, once, wherever it was: running on a
stack, suspended, never called yet, on another thread.  On the engine most
of that code restarts through the entry trampoline of its original, re-armed
with a few stores per code object, the rest of the arming left to whatever
next looks at it: these tests reach that rest from every side.
"""

from __future__ import annotations

import gc
import threading
import traceback
from typing import Any, Callable, Dict, List

import pytest

from .helpers import Recorder, Tool
from .test_threads import traced_run

FILENAME = "<restart-bdb>"


def make_functions(source: str, *names: str) -> List[Callable[..., Any]]:
    """Functions of their own code objects, compiled from *source*."""
    namespace: Dict[str, Any] = {}
    exec(compile(source, FILENAME, "exec"), namespace)
    return [namespace[name] for name in names]


def many(count: int) -> List[Callable[[int], int]]:
    source = "".join("def f%d(x):\n    y = x + %d\n    return y\n" % (i, i) for i in range(count))
    return make_functions(source, *("f%d" % i for i in range(count)))


def starts(rec: Recorder) -> List[str]:
    return [e.code.co_name for e in rec.only("PY_START")]


def test_every_function_starts_again_once(M: Any, tool: Tool) -> None:
    functions = many(40)
    with Recorder(tool, M.events.PY_START, filename=FILENAME, returns=M.DISABLE) as rec:
        rounds = []
        for _ in range(3):
            for _ in range(2):
                results = [f(1) for f in functions]
            rounds.append(starts(rec))
            rec.clear()
            M.restart_events()
    names = [f.__name__ for f in functions]
    assert rounds == [names] * 3
    assert results == [1 + i for i in range(40)]


def test_restart_at_each_call_of_a_breakpoint_function(M: Any, tool: Tool) -> None:
    # bdb's pattern: the function holding a breakpoint keeps its PY_START and
    # restarts as it starts; the others disable theirs each round.
    others = many(10)
    (bp,) = make_functions("def bp(fs):\n    return [f(2) for f in fs]\n", "bp")

    def on_start(event: Any) -> Any:
        if event.code is bp.__code__:
            M.restart_events()
            return None
        return M.DISABLE

    with Recorder(tool, M.events.PY_START, filename=FILENAME, returns=on_start) as rec:
        results = [bp(others) for _ in range(4)]
    names = [f.__name__ for f in others]
    # (3.11 runs the list comprehension as a code object of its own.)
    seen = [name for name in starts(rec) if name != "<listcomp>"]
    assert seen == (["bp"] + names) * 4
    assert results == [[2 + i for i in range(10)]] * 4


@pytest.mark.parametrize("call", ["middle(restart)", "list(map(middle, [restart]))[0]"])
def test_functions_on_the_stack_at_the_restart(M: Any, tool: Tool, call: str) -> None:
    # outer and middle run when the restart comes, from middle: their frames
    # go on without a second PY_START, their next calls fire it.  Through
    # map, C code called middle: outer's frame stands in its evaluation loop.
    outer, middle = make_functions(
        "def outer(restart):\n    return %s + 1\n"
        "def middle(restart):\n    restart()\n    return 1\n" % call,
        "outer", "middle",
    )
    with Recorder(tool, M.events.PY_START, filename=FILENAME, returns=M.DISABLE) as rec:
        rounds = []
        for _ in range(3):
            outer(lambda: None)
            outer(lambda: None)
            rounds.append(starts(rec))
            rec.clear()
            assert outer(M.restart_events) == 2
            rounds.append(starts(rec))
            rec.clear()
    assert rounds == [["outer", "middle"], []] * 3


def test_suspended_generator_and_new_generators(M: Any, tool: Tool) -> None:
    (gen,) = make_functions("def gen():\n    yield 1\n", "gen")
    with Recorder(tool, M.events.PY_START | M.events.PY_RESUME, filename=FILENAME,
                  returns=M.DISABLE) as rec:
        suspended = gen()
        next(suspended)
        list(gen())
        first = rec.names()
        rec.clear()
        M.restart_events()
        rest = list(suspended)
        list(gen())
        list(gen())
        after = rec.names()
    assert first == ["PY_START", "PY_RESUME"]
    assert rest == []
    assert after == ["PY_RESUME", "PY_START"]


def test_functions_first_called_after_the_restart(M: Any, tool: Tool) -> None:
    early, late = many(2)
    with Recorder(tool, M.events.PY_START, filename=FILENAME, returns=M.DISABLE) as rec:
        early(0)
        M.restart_events()
        late(0)
        late(0)
        early(0)
        early(0)
    assert starts(rec) == ["f0", "f1", "f0"]


def test_restarts_in_a_row_before_the_code_runs_again(M: Any, tool: Tool) -> None:
    functions = many(5)
    with Recorder(tool, M.events.PY_START, filename=FILENAME, returns=M.DISABLE) as rec:
        rounds = []
        for restarts in (1, 3, 2):
            for f in functions:
                f(0)
                f(0)
            rounds.append(starts(rec))
            rec.clear()
            for _ in range(restarts):
                M.restart_events()
        for f in functions:
            f(0)
        rounds.append(starts(rec))
    assert rounds == [[f.__name__ for f in functions]] * 4


def test_code_freed_between_restarts(M: Any, tool: Tool) -> None:
    # Enough code dies, before and after a restart armed it again, for the
    # engine to drop its notes of it; the code that lives on starts again.
    kept = many(3)
    with Recorder(tool, M.events.PY_START, filename=FILENAME, returns=M.DISABLE) as rec:
        rounds = []
        for _ in range(3):
            for f in kept:
                f(0)
            for _ in range(4):
                doomed = many(50)
                for f in doomed:
                    f(0)
                del doomed, f
                gc.collect()
            M.restart_events()
            doomed = many(50)
            for f in doomed:
                f(0)
            M.restart_events()
            del doomed, f
            gc.collect()
            # (Identity: the doomed code objects compare equal to these.)
            ids = [id(f.__code__) for f in kept]
            rounds.append([ids.index(id(e.code)) for e in rec.events if id(e.code) in ids])
            rec.clear()
    assert rounds == [[0, 1, 2]] * 3


def test_threads(M: Any, tool: Tool) -> None:
    # A thread waits inside a function whose PY_START was disabled as the
    # main thread restarts; both threads' next calls fire PY_START.
    blocked, f, g = make_functions(
        "def blocked(inside, go):\n    inside.set()\n    go.wait(10)\n    return 1\n"
        "def f(x):\n    return x\n"
        "def g(x):\n    return -x\n",
        "blocked", "f", "g",
    )
    seen: List[Any] = []

    def on_start(event: Any) -> Any:
        seen.append((threading.current_thread().name, event.code.co_name))
        return M.DISABLE

    def run(name: str, inside: threading.Event, go: threading.Event) -> None:
        f(1)
        g(1)
        blocked(inside, go)
        f(2)
        g(2)

    with Recorder(tool, M.events.PY_START, filename=FILENAME, returns=on_start):
        inside, go = threading.Event(), threading.Event()
        thread = threading.Thread(target=run, args=("t", inside, go), name="t")
        thread.start()
        assert inside.wait(10)
        f(3)
        M.restart_events()
        f(5)
        go.set()
        thread.join()
        f(4)
        g(4)
        blocked(go, go)
    assert seen == [("t", "f"), ("t", "g"), ("t", "blocked"), ("MainThread", "f"),
                    ("t", "g"), ("MainThread", "blocked")]


def test_code_specialised_while_disabled(M: Any, tool: Tool) -> None:
    # The functions run often between restarts (3.11 quickens and
    # specialises their first instructions), on objects of changing types.
    (f,) = make_functions(
        "import math\n"
        "def f(o):\n    return o.real + len(math.__name__)\n",
        "f",
    )
    with Recorder(tool, M.events.PY_START, filename=FILENAME, returns=M.DISABLE) as rec:
        results = []
        for value in (1, 2.5, 3, True, 4j, 5):
            results.append([f(value) for _ in range(20)][-1])
            M.restart_events()
    assert results == [5, 6.5, 7, 5, 4, 9]
    assert starts(rec) == ["f"] * 6


def test_tracebacks_and_trace_functions_after_the_restart(M: Any, tool: Tool) -> None:
    # Until the restart is caught up with, the function's frame looks as
    # natively: in tracebacks where it raises right away, and to a
    # sys.settrace function.
    (f,) = make_functions("def f(d):\n    return d[0]\n", "f")
    with Recorder(tool, M.events.PY_START, filename=FILENAME, returns=M.DISABLE) as rec:
        f([1])
        M.restart_events()
        with pytest.raises(KeyError) as raised:
            f({})
        last = traceback.extract_tb(raised.value.__traceback__)[-1]
        M.restart_events()
        traced = traced_run(f)
    assert (last.name, last.lineno - f.__code__.co_firstlineno) == ("f", 1)
    assert traced == [("call", 0), ("line", 1), ("return", 1)]
    assert starts(rec) == ["f"] * 3


def test_code_compared_and_events_turned_off_after_the_restart(M: Any, tool: Tool) -> None:
    (f,) = make_functions("def f():\n    return 7\n", "f")
    with Recorder(tool, M.events.PY_START, filename=FILENAME, returns=M.DISABLE) as rec:
        f()
        M.restart_events()
        same = f.__code__ == f.__code__.replace()
        tool.set_events(0)
        f()
        off = starts(rec)
    assert same
    assert off == ["f"]
    assert f() == 7



def test_frames_sized_as_their_own_once_events_are_off(M: Any, tool: Tool) -> None:
    # Events turned off for good: copies of the code (code.replace()) and its
    # next frames are as large as the code says, as natively, for code that
    # went bare and was not restarted, was restarted and did not run since,
    # or ran after the restart and went bare again: once it started again (on
    # 3.11 the code keeps its entry trampoline until then, to forget what
    # PY_START disabled as it starts, as natively).
    functions = make_functions(
        "def bare(x):\n    return (x, x, x, x)\n"
        "def waiting(x):\n    return (x, x, x, x)\n"
        "def again(x):\n    return (x, x, x, x)\n", "bare", "waiting", "again",
    )
    bare, waiting, again = functions
    sizes = [f.__code__.replace().co_stacksize for f in functions]
    with Recorder(tool, M.events.PY_START, filename=FILENAME, returns=M.DISABLE) as rec:
        waiting(1)
        again(1)
        M.restart_events()
        again(1)
        bare(1)
        tool.set_events(0)
        assert starts(rec) == ["waiting", "again", "again", "bare"]
    assert [f(2) for f in functions] == [(2,) * 4] * 3
    assert [f.__code__.replace().co_stacksize for f in functions] == sizes
