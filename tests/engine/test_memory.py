"""What the bytecode engine (3.9-3.11) keeps alive, and for how long.

Instrumented copies, their probes, trampolines (3.11) and the per-code state
go away when no tool needs them any more, when their tool is cleared, and
with their code object; cycles of enabling and disabling leave nothing
behind.
``LOWIMPACT_SOAK=1`` runs the long versions (``make long-test``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import tracemalloc
from typing import Any, Callable, Dict, Iterator

import pytest

from lowimpact import _engine

SOAK = os.environ.get("LOWIMPACT_SOAK") == "1"

#: 3.11's back end moves a frame onto its copy from an entry trampoline in
#: its code; the frame evaluation function of 3.9 and 3.10 sees every frame
#: start and needs none.
TRAMPOLINES = "trampolined_codes" in _engine._stats()
only_with_trampolines = pytest.mark.skipif(
    not TRAMPOLINES, reason="what the 3.11 back end's entry trampolines keep (3.9, 3.10 have none)")


def stats() -> Dict[str, int]:
    """What the engine keeps alive for this thread.

    Frames of other threads (execnet's under pytest-xdist) keep the copies
    they run and the trampolines armed in their code when events go, and
    let go of them when they move on, which they may do during any test:
    those are not counted."""
    gc.collect()
    alive = _engine._stats()
    del alive["shadows_built"]
    alive["shadows"] -= alive.pop("shadows_elsewhere")
    if TRAMPOLINES:
        alive["trampolined_codes"] -= alive.pop("trampolined_elsewhere")
    return alive


def shadows_built() -> int:
    return int(_engine._stats()["shadows_built"])


@pytest.fixture
def clean(M: Any) -> Iterator[Dict[str, int]]:
    """The engine's counts with nothing enabled, checked again afterwards.

    Earlier tests leave entry trampolines in code whose DISABLE marks are
    forgotten when it next starts (docs/ENGINE.md), and code of pytest's
    may start during the test: restart_events() voids every mark and an
    update then lets those trampolines go, so that the counts are exact."""
    call(M.restart_events)
    M.use_tool_id(5, "settle")
    try:
        call(M.set_events, 5, M.events.PY_START)
        call(M.set_events, 5, 0)
    finally:
        M.free_tool_id(5)
    before = stats()
    yield before
    # (3.10 keeps no calls waiting: an object made for each delivers C_RETURN.)
    assert stats().get("pending_calls", 0) == 0


def make_functions(count: int) -> Dict[str, Callable[..., Any]]:
    """Fresh code objects, so that their states can die with them."""
    source = "".join(
        "def f%d(n):\n"
        "    total = 0\n"
        "    for i in range(n):\n"
        "        if i %% 2:\n"
        "            total += len(str(i))\n"
        "    return total\n" % i
        for i in range(count)
    )
    namespace: Dict[str, Any] = {}
    exec(compile(source, "<generated>", "exec"), namespace)
    return {name: f for name, f in namespace.items() if name.startswith("f")}


def run_all(functions: Dict[str, Callable[..., Any]]) -> int:
    return sum(f(5) for f in functions.values())


def call(api: Callable[..., Any], *args: Any) -> Any:
    """Calls a monitoring function from a frame of its own: the frame that
    calls the C function keeps the instrumented copy it was moved onto until
    it returns (it cannot be moved while it runs in C), which would keep a
    copy of the test itself alive."""
    return api(*args)


COPIES_GO = """
import gc, json
from lowimpact import monitoring as M, _engine
E = M.events

def stats():
    gc.collect()
    alive = _engine._stats()
    return {key: alive.get(key) for key in ("shadows", "trampolined_codes")}

def set_events(events):
    M.set_events(2, events)   # (from a frame of its own, as call() does)

source = "".join("def f%d(n):\\n    total = 0\\n    for i in range(n):\\n"
                 "        if i %% 2:\\n            total += len(str(i))\\n"
                 "    return total\\n" % i for i in range(20))
namespace = {}
exec(source, namespace)
functions = [f for name, f in namespace.items() if name.startswith("f")]
clean = stats()
M.use_tool_id(2, "memory")
M.register_callback(2, E.LINE, lambda code, line: None)
set_events(E.LINE | E.BRANCH | E.CALL)
for f in functions:
    f(5)
during = stats()
set_events(0)
M.clear_tool_id(2)
M.free_tool_id(2)
print(json.dumps([clean, during, stats()]))
"""


def test_copies_go_when_events_go() -> None:
    # In a fresh process: earlier tests leave entry trampolines that wait
    # for their code's next start (docs/ENGINE.md), and any of them may go
    # during this test, so counts taken in the test process are not exact.
    result = subprocess.run([sys.executable, "-c", COPIES_GO], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr
    clean, during, after = json.loads(result.stdout)
    assert during["shadows"] >= clean["shadows"] + 20
    assert after == clean


@contextlib.contextmanager
def starts_disabled(M: Any) -> Iterator[None]:
    """Tool 2 wants PY_START everywhere and disables it where it fires."""
    M.use_tool_id(2, "memory")
    M.register_callback(2, M.events.PY_START, lambda code, offset: M.DISABLE)
    call(M.set_events, 2, M.events.PY_START)
    try:
        yield
    finally:
        call(M.set_events, 2, 0)
        M.clear_tool_id(2)
        M.free_tool_id(2)


@only_with_trampolines
def test_trampolines_a_restart_armed_go_when_events_go(M: Any, clean: Dict[str, int]) -> None:
    # PY_START disabled in every function (bdb's pattern), restart_events()
    # arms their entry trampolines again; some run since, some not: when the
    # events go, what is left of them goes as each function next starts
    # (which forgets what the callback disabled, as natively), and the
    # functions run as they were.
    functions = make_functions(20)
    with starts_disabled(M):
        run_all(functions)
        call(M.restart_events)
        armed = stats()["trampolined_codes"]
        for f in list(functions.values())[:10]:
            f(3)
        call(M.restart_events)
        assert stats()["trampolined_codes"] == armed
    assert run_all(functions) == 20 * 2
    call(len, ())   # (every code that started meanwhile starts again)
    assert stats()["trampolined_codes"] == clean["trampolined_codes"]
    assert run_all(functions) == 20 * 2


@only_with_trampolines
def test_marks_a_restart_voided_keep_no_trampoline_when_events_go(
    M: Any, clean: Dict[str, int]
) -> None:
    # After restart_events() nothing that a callback disabled before is
    # left to forget as code next starts: turning the events off leaves no
    # trampoline armed for that.
    functions = make_functions(20)
    with starts_disabled(M):
        run_all(functions)
        call(M.restart_events)
    assert stats()["trampolined_codes"] == clean["trampolined_codes"]
    assert run_all(functions) == 20 * 2


def test_clearing_the_tool_releases_its_copies(M: Any, clean: Dict[str, int]) -> None:
    functions = make_functions(10)
    M.use_tool_id(2, "memory")
    M.register_callback(2, M.events.LINE, lambda code, line: None)
    for f in functions.values():
        M.set_local_events(2, f.__code__, M.events.LINE)
    try:
        run_all(functions)
        assert stats()["shadows"] >= 10
    finally:
        M.clear_tool_id(2)
        M.free_tool_id(2)
    assert stats()["shadows"] == clean["shadows"]


def test_state_dies_with_the_code(M: Any, clean: Dict[str, int]) -> None:
    functions = make_functions(30)
    M.use_tool_id(2, "memory")
    M.register_callback(2, M.events.LINE, lambda code, line: M.DISABLE)
    for f in functions.values():
        M.set_local_events(2, f.__code__, M.events.LINE)
    run_all(functions)
    assert stats()["code_states"] >= clean["code_states"] + 30
    # Local events stay set on code nobody can reach: it all goes with it.
    del functions, f
    after = stats()
    M.clear_tool_id(2)
    M.free_tool_id(2)
    assert after["code_states"] == clean["code_states"]
    assert after["shadows"] == clean["shadows"]


def cycles(M: Any, count: int) -> None:
    E = M.events
    functions = make_functions(5)
    M.use_tool_id(2, "memory")
    M.register_callback(2, E.LINE, lambda code, line: M.DISABLE)
    M.register_callback(2, E.CALL, lambda *args: None)
    try:
        for k in range(count):
            call(M.set_events, 2, E.LINE | E.CALL | E.C_RETURN | E.C_RAISE)
            run_all(functions)
            if k % 3 == 0:
                call(M.restart_events)
            call(M.set_events, 2, 0)
    finally:
        call(M.set_events, 2, 0)
        M.clear_tool_id(2)
        M.free_tool_id(2)


def test_enable_disable_cycles_leave_nothing(M: Any, clean: Dict[str, int]) -> None:
    count = 100_000 if SOAK else 300
    tracemalloc.start()
    try:
        tracemalloc.take_snapshot()
        # Caches, free lists and lazily made objects settle; every function
        # alive (tracemalloc's included) gets its small per-code state.
        cycles(M, 50)
        settled = stats()
        first = tracemalloc.take_snapshot()
        # Counted with the snapshot alive and after a collection both times:
        # the snapshot's traces (tuples) and garbage of earlier tests in the
        # same worker are no objects the cycles made.
        gc.collect()
        objects_before = len(gc.get_objects())
        cycles(M, count)
        gc.collect()
        objects_grown = len(gc.get_objects()) - objects_before
        grown = sum(stat.size_diff for stat in
                    tracemalloc.take_snapshot().compare_to(first, "filename"))
    finally:
        tracemalloc.stop()
    assert stats() == settled
    assert settled["shadows"] == clean["shadows"]
    # A leak of one small block per cycle would show as count * 32 bytes.
    assert grown < 16 * 1024, grown
    assert objects_grown < 100, objects_grown


# Run in a child: in pytest, restart_events() also reaches the many frames on
# the stack below the test, which land on copies of their own as they resume.
START_DISABLED = """
from lowimpact import monitoring as M, _engine
E = M.events

def built():
    return _engine._stats()["shadows_built"]

source = "".join("def f%d(n):\\n    t = 0\\n    for i in range(n):\\n        t += i\\n"
                 "    return t\\n" % i for i in range(20))
namespace = {}
exec(source, namespace)
functions = [f for name, f in namespace.items() if name.startswith("f")]
codes = {f.__code__ for f in functions}
starts = []
M.use_tool_id(2, "memory")
M.register_callback(2, E.EVENT, CALLBACK)
M.set_events(2, E.EVENT)

def main():
    # (A function that starts with the events on: the module's frame runs
    # as they come, and a back end may build for it meanwhile.)
    counts = []
    for step in ("run", "run", "run", "restart", "run", "run"):
        before = built()
        if step == "restart":
            M.restart_events()
        else:
            for f in functions:
                f(3)
        counts.append(built() - before)
    return counts

print(main(), sum(code in codes for code in starts))
"""


def shadows_built_in_child(event: str, callback: str) -> str:
    script = START_DISABLED.replace("EVENT", event).replace("CALLBACK", callback)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_disabled_starts_keep_their_copy() -> None:
    """A tool that turns PY_START off everywhere (a coverage tool measuring
    other files, a debugger away from its breakpoints) costs no copy: each
    function's PY_START fires as it first starts, before any copy is built,
    and the function goes on running its original, as do its later calls.
    restart_events() brings the entry trampoline back, and PY_START fires
    again, still without a copy.  Copies whose lines were disabled are
    compacted, once: the function moved at the start of its obsolete copy
    lands on the copy it starts on from then on (not on one built for it
    alone)."""
    starts = "lambda code, offset: starts.append(code) or M.DISABLE"
    assert shadows_built_in_child("PY_START", starts) == "[0, 0, 0, 0, 0, 0] 40"
    lines = "lambda code, line: M.DISABLE"
    if sys.version_info[:2] < (3, 11):
        # The block-stack back end (3.9, 3.10) builds no copy for fewer
        # probes when none is left armed: the functions run their originals,
        # their copies stay, and restart_events() re-arms those in place.
        assert shadows_built_in_child("LINE", lines) == "[20, 0, 0, 0, 0, 0] 0"
    else:
        assert shadows_built_in_child("LINE", lines) == "[20, 20, 0, 0, 20, 20] 0"


def test_local_events_from_a_first_start_build_one_copy() -> None:
    """The coverage pattern (PY_START everywhere; from its callback, LINE for
    the code that starts, then DISABLE) builds one copy per function as it
    first starts, with the LINE probes its callback asked for, and the frame
    goes on past its PY_START (a copy with the PY_START probe alone, then one
    with LINE, before)."""
    starts = ("lambda code, offset: starts.append(code) or "
              "M.set_local_events(2, code, E.LINE) or M.DISABLE")
    built, started = shadows_built_in_child("PY_START", starts).split("] ")
    assert built.split(",")[0] == "[20"
    assert started == "40"


LOOP_FIRST = """
from lowimpact import monitoring as M, _engine
E = M.events

def built():
    return _engine._stats()["shadows_built"]

source = '''
def helper(x):
    return x + 1

def loop_first(items):
    for x in items:
        total = helper(x)
    return total

def try_first(x):
    try:
        y = helper(x)
    except TypeError:
        y = None
    return helper(y)
'''
M.use_tool_id(2, "memory")
M.register_callback(2, E.PY_START, lambda code, offset: M.DISABLE)
M.set_events(2, E.PY_START)
namespace = {}
before = built()
exec(source, namespace)
defined = built() - before
results = [namespace["loop_first"]([1, 2]), namespace["try_first"](1)]
print(defined, built() - before, results)
"""


def test_code_with_a_loop_or_try_first_waits_for_its_first_call() -> None:
    """Code whose first units a jump lands on (a loop first) or a try block
    covers gets its entry trampoline in the inline cache of a later
    instruction, reached by a jump over RESUME 0: no copy is built as
    its function is made, and none at its first call when its PY_START is
    disabled there (it went on in its original)."""
    result = subprocess.run([sys.executable, "-c", LOOP_FIRST], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr
    # The module's code, which defines the functions, gets a copy on 3.11,
    # whose PY_START fires from one; on 3.9 and 3.10 the frame evaluation
    # function delivers PY_START, and no code gets one.
    copies = 0 if sys.version_info[:2] < (3, 11) else 1
    assert result.stdout.strip() == "%d %d [3, 3]" % (copies, copies)
