"""Several threads running monitored code while events change under them.

Events are delivered on the thread that runs the code, none are lost while
they stay on, and turning events on and off, DISABLE and restart_events from
one thread while others run neither crash nor change what the programs
compute.  ``LOWIMPACT_SOAK=1`` hammers longer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any, Callable, Dict, List

import pytest

from .helpers import Tool, start_lasti

SOAK = os.environ.get("LOWIMPACT_SOAK") == "1"
WORKERS = 4


def worker_function(index: int) -> Callable[[int], int]:
    """A function with its own code object per worker, so that events tell
    which worker's code they come from."""
    source = (
        "def work_%d(n):\n"
        "    total = 0\n"
        "    for i in range(n):\n"
        "        try:\n"
        "            total += helper_%d(i) // (i %% 5)\n"
        "        except ZeroDivisionError:\n"
        "            total -= 1\n"
        "    return total\n"
        "def helper_%d(i):\n"
        "    return len(str(i)) + i\n" % (index, index, index)
    )
    namespace: Dict[str, Any] = {}
    exec(compile(source, "<worker %d>" % index, "exec"), namespace)
    return namespace["work_%d" % index]


def expected_result(n: int) -> int:
    total = 0
    for i in range(n):
        try:
            total += (len(str(i)) + i) // (i % 5)
        except ZeroDivisionError:
            total -= 1
    return total


def run_workers(functions: List[Callable[[int], int]], target: Callable[[int, Callable[[int], int]], None]
                ) -> None:
    threads = [threading.Thread(target=target, args=(k, f)) for k, f in enumerate(functions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_events_reach_the_running_thread_and_none_are_lost(M: Any, tool: Tool) -> None:
    E = M.events
    functions = [worker_function(k) for k in range(WORKERS)]
    codes = {f.__code__: k for k, f in enumerate(functions)}
    idents: Dict[int, int] = {}
    seen: List[List[str]] = [[] for _ in functions]
    wrong_thread: List[Any] = []

    def make(name: str) -> Callable[..., None]:
        def callback(code: Any, *args: Any) -> None:
            k = codes.get(code)
            if k is None:
                return
            if threading.get_ident() != idents.get(k):
                wrong_thread.append((name, k))
            seen[k].append(name)
        return callback

    names = ("PY_START", "PY_RETURN", "LINE", "BRANCH", "CALL", "RAISE", "EXCEPTION_HANDLED")
    for name in names:
        tool.register(getattr(E, name), make(name))
    start = threading.Barrier(WORKERS)
    results: Dict[int, List[int]] = {}

    def target(k: int, f: Callable[[int], int]) -> None:
        idents[k] = threading.get_ident()
        start.wait()
        results[k] = [f(30) for _ in range(20)]

    tool.set_events(sum(getattr(E, name) for name in names))
    try:
        run_workers(functions, target)
        # The same, alone on one thread: what every worker must have seen.
        alone = worker_function(99)
        codes[alone.__code__] = len(functions)
        idents[len(functions)] = threading.get_ident()
        seen.append([])
        for _ in range(20):
            alone(30)
    finally:
        tool.set_events(0)
    assert not wrong_thread
    assert all(r == [expected_result(30)] * 20 for r in results.values())
    for k in range(WORKERS):
        assert sorted(seen[k]) == sorted(seen[-1]), k


def test_changing_events_while_threads_run(M: Any, tool: Tool) -> None:
    E = M.events
    functions = [worker_function(k) for k in range(WORKERS)]
    codes = {f.__code__ for f in functions}
    stop = threading.Event()
    failures: List[Any] = []
    counts = {"events": 0}

    def line(code: Any, number: int) -> Any:
        counts["events"] += 1
        # Each worker's code gets DISABLE on some lines, from its own thread.
        return M.DISABLE if code in codes and number % 2 else None

    def any_event(code: Any, *args: Any) -> None:
        counts["events"] += 1

    tool.register(E.LINE, line)
    for name in ("PY_START", "PY_RETURN", "CALL", "BRANCH", "JUMP", "RAISE", "PY_UNWIND"):
        tool.register(getattr(E, name), any_event)

    def target(k: int, f: Callable[[int], int]) -> None:
        while not stop.is_set():
            result = f(25)
            if result != expected_result(25):
                failures.append((k, result))

    threads = [threading.Thread(target=target, args=(k, f)) for k, f in enumerate(functions)]
    for t in threads:
        t.start()
    sets = [E.LINE, E.LINE | E.BRANCH | E.JUMP, E.PY_START | E.PY_RETURN | E.CALL,
            E.RAISE | E.PY_UNWIND | E.LINE, 0]
    try:
        for round in range(2000 if SOAK else 150):
            tool.set_events(sets[round % len(sets)])
            if round % 7 == 0:
                M.restart_events()
            if round % 11 == 0:
                for f in functions[:2]:
                    tool.set_local(f, E.LINE | E.BRANCH if round % 2 else 0)
    finally:
        stop.set()
        for t in threads:
            t.join()
        tool.set_events(0)
    assert not failures
    assert counts["events"] > 0


GC_SWITCHING_PROGRAM = """\
import gc, threading, time
from lowimpact import monitoring as M
E = M.events
TOOL = 4
M.use_tool_id(TOOL, "gc switching")
for event in (E.PY_YIELD, E.PY_RETURN, E.PY_RESUME, E.PY_START, E.PY_UNWIND, E.LINE):
    M.register_callback(TOOL, event, lambda *args: None)
M.set_events(TOOL, E.PY_START | E.PY_UNWIND)


def raises():
    x = 1
    raise ValueError


def gen():
    x = 0
    yield
    try:
        raises()
    except ValueError:
        pass
    yield


def work():
    while not stop:
        for _ in gen():
            pass


def switch(phase, info):
    time.sleep(0)


gc.callbacks.append(switch)
gc.set_threshold(1)
stop = False
threads = [threading.Thread(target=work) for _ in range(5)]
for t in threads:
    t.start()
ALL = E.LINE | E.PY_YIELD | E.PY_RETURN | E.PY_RESUME
for n in range(300):
    for code in (gen.__code__, raises.__code__):
        M.set_local_events(TOOL, code, 0)
        M.set_local_events(TOOL, code, ALL)
stop = True
for t in threads:
    t.join()
gc.callbacks.remove(switch)
print("done")
"""


def test_events_change_while_garbage_collection_switches_threads(tmp_path: Any) -> None:
    """Threads run generators (suspended, resumed, calling code that raises)
    while their events go off and on, and garbage collection lets other
    threads run often (a gc.callbacks entry that sleeps 0, threshold 1): on
    3.11 an allocation inside set_local_events may collect, and the Python
    code that runs then (finalisers, gc.callbacks) may switch threads;
    natively (3.12+) collection waits for the eval breaker.  Before
    collection waited for the engine's updates, which work from what they
    saw of the heap's generators and the threads' frames, this segfaulted
    (the program alone in 5 runs of 6, this test in 1 of 2).  A fresh
    process: the crash came with a small heap, not inside the suite's."""
    import lowimpact

    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(lowimpact.__file__)))
    (tmp_path / "prog.py").write_text(GC_SWITCHING_PROGRAM)
    done = subprocess.run([sys.executable, "prog.py"], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout) == (0, "done\n"), done.stderr[-2000:]


def test_first_starts_of_a_function_on_two_threads(M: Any, tool: Tool) -> None:
    """Two threads start a function for the first time, the second while
    the first one's PY_START callback waits; the first callback returns
    while the second waits in turn.  Each callback sees its own thread's
    frame of the function as its caller, at its RESUME (3.10: see
    start_lasti), before and after the other returns, and the function runs
    on, later calls too."""
    E = M.events
    namespace: Dict[str, Any] = {}
    exec(compile("def first(a):\n    b = a + 1\n    return b\n", "<two starts>", "exec"),
         namespace)
    first = namespace["first"]
    lasti = start_lasti(first)
    one_in, two_in, one_out = threading.Event(), threading.Event(), threading.Event()
    seen: List[Any] = []

    def frame_view() -> Any:
        frame = sys._getframe(2)
        return (frame.f_code is first.__code__, frame.f_lasti)

    def on_start(code: Any, offset: int) -> Any:
        name = threading.current_thread().name
        if code is not first.__code__ or name not in ("one", "two"):
            return None
        before = frame_view()
        if name == "one":
            one_in.set()
            two_in.wait(10)
        elif name == "two":
            two_in.set()
            one_out.wait(10)
        seen.append((name, before, frame_view()))
        return None

    def one() -> None:
        first(1)
        one_out.set()

    tool.register(E.PY_START, on_start)
    tool.set_events(E.PY_START)
    try:
        threads = [threading.Thread(target=one, name="one")]
        threads[0].start()
        one_in.wait(10)
        threads.append(threading.Thread(target=first, args=(2,), name="two"))
        threads[1].start()
        for thread in threads:
            thread.join()
        later = first(3)
    finally:
        tool.set_events(0)
    assert later == 4
    assert sorted(seen) == [(name, (True, lasti), (True, lasti)) for name in ("one", "two")]


BARE_START_SOURCES = {
    "plain": "def work(events):\n    x = events\n    for e in x:\n        e.set()\n    return 1\n",
    "loop_first": "def work(events):\n    for e in events:\n        e.set()\n    return 1\n",
}


def fresh_work(shape: str, filename: str) -> Any:
    """A new `work` function (its own code object) of BARE_START_SOURCES[shape]."""
    namespace: Dict[str, Any] = {}
    exec(compile(BARE_START_SOURCES[shape], filename, "exec"), namespace)
    return namespace["work"]


def traced_run(function: Any) -> List[Any]:
    """What a sys.settrace function sees of a call of a function of
    BARE_START_SOURCES: (event, line relative to the def)."""
    seen: List[Any] = []

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is function.__code__:
            seen.append((event, frame.f_lineno - frame.f_code.co_firstlineno))
        return trace

    sys.settrace(trace)
    try:
        function([threading.Event()])
    finally:
        sys.settrace(None)
    return seen


@pytest.mark.parametrize("shape", sorted(BARE_START_SOURCES))
def test_disabled_first_starts_on_two_threads_leave_the_function_traceable(
        M: Any, tool: Tool, shape: str) -> None:
    """Two threads start a function for the first time, the second while
    the first one's PY_START callback waits, and both callbacks return
    DISABLE (a coverage tool for a file it does not measure); the first
    returns while the second waits.  The function stays what it was for
    sys.settrace: a call event and its lines, as a twin that never ran
    under monitoring gets."""
    E = M.events

    work, twin = fresh_work(shape, "<bare starts>"), fresh_work(shape, "<bare starts>")
    one_in, two_in, one_body = threading.Event(), threading.Event(), threading.Event()

    def on_start(code: Any, offset: int) -> Any:
        name = threading.current_thread().name
        if code is work.__code__ and name == "one":
            one_in.set()
            two_in.wait(10)
        elif code is work.__code__ and name == "two":
            two_in.set()
            one_body.wait(10)
        return M.DISABLE

    tool.register(E.PY_START, on_start)
    tool.set_events(E.PY_START)
    try:
        threads = [threading.Thread(target=work, args=([one_body],), name="one")]
        threads[0].start()
        one_in.wait(10)
        threads.append(threading.Thread(target=work, args=([],), name="two"))
        threads[1].start()
        for thread in threads:
            thread.join()
    finally:
        tool.set_events(0)

    assert traced_run(work) == traced_run(twin)


@pytest.mark.parametrize("returns", ["none", "disable", "lines"])
@pytest.mark.parametrize("shape", sorted(BARE_START_SOURCES))
def test_traced_start_while_another_first_start_waits(M: Any, tool: Tool, shape: str,
                                                       returns: str) -> None:
    """A thread with a sys.settrace function starts a function while the
    PY_START callback of another thread's first start of it waits (on the
    engine, at that frame's landing, with the code's first units counted as
    started meanwhile).  Its trace function sees what it sees of a twin that
    never ran under monitoring: no event before the call, none at the
    entry trampoline."""
    E = M.events

    work, twin = fresh_work(shape, "<traced start>"), fresh_work(shape, "<traced start>")
    waiting, traced_done = threading.Event(), threading.Event()

    def on_start(code: Any, offset: int) -> Any:
        if code is work.__code__ and threading.current_thread().name == "first":
            waiting.set()
            traced_done.wait(10)
            if returns == "lines":
                tool.set_local(code, E.LINE)
        return M.DISABLE if returns == "disable" else None

    seen: List[Any] = []

    def second() -> None:
        waiting.wait(10)
        seen.extend(traced_run(work))
        traced_done.set()

    tool.register(E.LINE, lambda code, line: None)
    tool.register(E.PY_START, on_start)
    tool.set_events(E.PY_START)
    try:
        threads = [threading.Thread(target=second, name="second"),
                   threading.Thread(target=work, args=([],), name="first")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        tool.set_events(0)
        tool.set_local(work, 0)
    assert traced_done.is_set()
    assert seen == traced_run(twin)
