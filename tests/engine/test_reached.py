"""The block-stack back end's books of frames that were running when their code
came to need events (backend310/running.c): a thread has its trace and
profile hooks taken only while it has such a frame."""

from __future__ import annotations

import sys
import threading
from typing import Any, List

import pytest

if sys.version_info[:2] not in ((3, 9), (3, 10)):
    pytest.skip("white-box test of the block-stack back end (3.9, 3.10)",
                allow_module_level=True)

from lowimpact import _engine  # noqa: E402
from lowimpact import monitoring as M  # noqa: E402

TOOL = 4


def reached_threads() -> int:
    return int(_engine._stats()["reached_threads"])


@pytest.fixture
def tool() -> Any:
    M.use_tool_id(TOOL, "test_reached")
    yield TOOL
    M.set_events(TOOL, 0)
    M.clear_tool_id(TOOL)
    M.free_tool_id(TOOL)


def loop() -> int:
    total = 0
    for i in range(3):
        if i == 0:
            M.set_local_events(TOOL, loop.__code__, M.events.LINE)
        total += i
    return total


def test_the_thread_is_reached_until_its_frame_returns(tool: int) -> None:
    seen: List[int] = []
    M.register_callback(tool, M.events.LINE,
                        lambda code, line: seen.append(reached_threads()))
    assert loop() == 3
    first = list(seen)
    after_return = reached_threads()
    seen.clear()
    assert loop() == 3      # started with its events on: on its shadow
    M.set_local_events(tool, loop.__code__, 0)
    assert first and set(first) == {1}
    assert after_return == 0
    assert seen and set(seen) == {0}


def test_only_the_thread_of_the_frame_is_reached(tool: int) -> None:
    looping = threading.Event()
    stop = [False]
    seen: List[int] = []

    def spin() -> None:
        looping.set()
        while not stop[0]:
            pass

    def line(code: Any, number: int) -> Any:
        seen.append(reached_threads())
        stop[0] = True
        return M.DISABLE

    M.register_callback(tool, M.events.LINE, line)
    thread = threading.Thread(target=spin)
    thread.start()
    looping.wait()
    M.set_local_events(tool, spin.__code__, M.events.LINE)
    during = reached_threads()
    thread.join()
    after = reached_threads()
    M.set_local_events(tool, spin.__code__, 0)
    assert during == 1 and seen and seen[0] == 1
    assert after == 0


def callee(x: int) -> int:
    hooked.append(_engine._stats()["thread_trace_hook"])
    y = x + 1
    return y


hooked: List[int] = []


def calling_loop(step: Any) -> int:
    total = 0
    for i in range(3):
        if i == 0:
            M.set_local_events(TOOL, calling_loop.__code__, M.events.LINE)
        total = step(total)
    return total


LOOP_FIRST = calling_loop.__code__.co_firstlineno


def test_frames_a_reached_frame_calls_run_without_its_hook(tool: int) -> None:
    """3.9 calls a thread's trace hook at every line of every frame, and
    3.10's YIELD_FROM takes a slower path whenever the thread has one: the
    frames a reached frame calls run without it, which it gets back as they
    return."""
    hooked.clear()
    seen: List[int] = []
    M.register_callback(tool, M.events.LINE,
                        lambda code, line: seen.append(line - LOOP_FIRST))
    assert calling_loop(callee) == 3
    M.set_local_events(tool, calling_loop.__code__, 0)
    assert seen == [5, 2, 3, 5, 2, 3, 5, 2, 6]
    assert hooked == [0] * 3


def test_a_trace_function_set_in_a_called_frame_sees_its_lines(tool: int) -> None:
    """pdb's set_trace() from a frame a reached frame called: its trace
    function gets the lines of that frame and of the reached one, which
    goes on getting its events."""
    traced: List[tuple] = []
    seen: List[int] = []

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            traced.append((frame.f_code.co_name, frame.f_lineno - frame.f_code.co_firstlineno))
        return local

    def stop_here(x: int) -> int:
        if x == 1:
            sys._getframe().f_trace = local
            sys._getframe(1).f_trace = local
            sys.settrace(lambda frame, event, arg: None)
        y = x + 1
        return y

    M.register_callback(tool, M.events.LINE, lambda code, line: seen.append(line - LOOP_FIRST))
    try:
        assert calling_loop(stop_here) == 3
    finally:
        sys.settrace(None)
    M.set_local_events(tool, calling_loop.__code__, 0)
    assert seen == [5, 2, 3, 5, 2, 3, 5, 2, 6]
    # What CPython gives without monitoring (the next call of stop_here is
    # not traced: the global trace function returns None).
    assert traced == [("stop_here", 5), ("stop_here", 6), ("calling_loop", 2),
                      ("calling_loop", 3), ("calling_loop", 5), ("calling_loop", 2),
                      ("calling_loop", 6)]
