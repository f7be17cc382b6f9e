"""What the 3.11 engine keeps alive, and for how long.

Instrumented copies, their probes, trampolines and the per-code state go
away when no tool needs them any more, when their tool is cleared, and with
their code object; cycles of enabling and disabling leave nothing behind.
``LOWIMPACT_SOAK=1`` runs the long versions (``make long-test``).
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from typing import Any, Callable, Dict, Iterator

import pytest

from lowimpact import _engine

SOAK = os.environ.get("LOWIMPACT_SOAK") == "1"


def stats() -> Dict[str, int]:
    gc.collect()
    return _engine._stats()


@pytest.fixture
def clean(M: Any) -> Iterator[Dict[str, int]]:
    """The engine's counts with nothing enabled, checked again afterwards."""
    before = stats()
    yield before
    assert stats()["pending_calls"] == 0


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


def test_copies_go_when_events_go(M: Any, clean: Dict[str, int]) -> None:
    E = M.events
    functions = make_functions(20)
    M.use_tool_id(2, "memory")
    M.register_callback(2, E.LINE, lambda code, line: None)
    call(M.set_events, 2, E.LINE | E.BRANCH | E.CALL)
    try:
        run_all(functions)
        assert stats()["shadows"] >= 20
    finally:
        call(M.set_events, 2, 0)
        M.clear_tool_id(2)
        M.free_tool_id(2)
    after = stats()
    assert after["shadows"] == clean["shadows"]
    assert after["trampolined_codes"] == clean["trampolined_codes"]


def test_clearing_the_tool_releases_its_copies(M: Any, clean: Dict[str, int]) -> None:
    functions = make_functions(10)
    M.use_tool_id(2, "memory")
    M.register_callback(2, M.events.PY_START, lambda code, offset: None)
    for f in functions.values():
        M.set_local_events(2, f.__code__, M.events.PY_START)
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
        objects_before = len(gc.get_objects())
        first = tracemalloc.take_snapshot()
        cycles(M, count)
        gc.collect()
        grown = sum(stat.size_diff for stat in
                    tracemalloc.take_snapshot().compare_to(first, "filename"))
    finally:
        tracemalloc.stop()
    assert stats() == settled
    assert settled["shadows"] == clean["shadows"]
    # A leak of one small block per cycle would show as count * 32 bytes.
    assert grown < 16 * 1024, grown
    assert len(gc.get_objects()) - objects_before < 100
