"""Turning events on changes nothing the program can see but the events.

Natively ``set_events`` instruments code objects, and nothing else: no
function, generator or other object lives a moment longer for it, and a
finalizer or another thread that turns events on or off again meanwhile is
just one more update.  An engine that brings functions into line bit by bit
after ``set_events`` returns must keep to that while its work is pending,
which it is during the calls that follow.
"""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any


from .helpers import Tool


def many_functions(n: int) -> list:
    """*n* distinct functions: work an engine may leave for later."""
    return [eval("lambda: %d" % i) for i in range(n)]


def tick() -> int:
    return 1


def test_generator_closed_when_dropped_after_events_on(M: Any, tool: Tool) -> None:
    keep = many_functions(3000)
    log = []

    def gen():
        try:
            yield 1
        finally:
            log.append("closed")

    g = gen()
    next(g)
    tool.register(M.events.LINE, lambda code, line: M.DISABLE)
    tool.set_events(M.events.LINE)
    for _ in range(300):
        tick()
    del g
    assert log == ["closed"]
    tool.set_events(0)
    del keep


def test_function_freed_when_dropped_after_events_on(M: Any, tool: Tool) -> None:
    keep = many_functions(3000)

    class Payload:
        pass

    payload = Payload()
    gone = weakref.ref(payload)
    holder = (lambda held=payload: held)
    del payload
    tool.register(M.events.LINE, lambda code, line: M.DISABLE)
    tool.set_events(M.events.LINE)
    for _ in range(300):
        tick()
    del holder
    assert gone() is None
    tool.set_events(0)
    del keep


def test_events_changed_by_finalizers_as_calls_go_on(M: Any, tool: Tool) -> None:
    """Finalizers that turn events on and off run wherever the collector
    runs: in the middle of whatever the engine does as frames start."""
    keep = many_functions(3000)
    E = M.events
    seen = []
    tool.register(E.PY_START, lambda code, offset: seen.append(code.co_name) if code is tick.__code__ else None)

    testing = [True]

    class Toggle:
        def __init__(self, on: bool) -> None:
            self.on = on
            self.cycle = self

        def __del__(self) -> None:
            # (One finalized after the test, as CI saw on 3.10 now and then,
            # would find the tool freed.)
            if testing[0]:
                tool.set_events(E.PY_START if self.on else E.LINE | E.PY_START)

    old = gc.get_threshold()
    gc.set_threshold(1)
    try:
        tool.set_events(E.PY_START)
        for i in range(400):
            Toggle(i % 2 == 0)
            tick()
    finally:
        gc.set_threshold(*old)
    gc.collect()
    tool.set_events(E.PY_START)
    seen.clear()
    tick()
    assert seen == ["tick"]
    tool.set_events(0)
    testing[0] = False
    del keep


def test_events_changed_by_another_thread_as_calls_go_on(M: Any, tool: Tool) -> None:
    keep = many_functions(3000)
    E = M.events
    count = [0]
    tool.register(E.PY_START, lambda code, offset: count.__setitem__(0, count[0] + 1) if code is tick.__code__ else None)
    stop = threading.Event()

    def toggler() -> None:
        while not stop.is_set():
            tool.set_events(E.PY_START | E.LINE)
            tool.set_events(E.PY_START)

    thread = threading.Thread(target=toggler)
    tool.set_events(E.PY_START)
    thread.start()
    try:
        for _ in range(3000):
            tick()
    finally:
        stop.set()
        thread.join()
    assert count[0] == 3000
    tool.set_events(0)
    del keep


def test_handled_in_a_caller_after_its_callee_turned_events_on(M: Any, tool: Tool) -> None:
    """The callee turns EXCEPTION_HANDLED on, raises, and its caller handles
    the exception: natively its handler reports it.  (Found by
    test_fuzz.py.)"""
    E = M.events
    keep = many_functions(3000)
    log = []

    def callee() -> None:
        tool.set_events(E.PY_START | E.EXCEPTION_HANDLED)
        raise ValueError

    def caller() -> str:
        try:
            callee()
        except ValueError:
            return "handled"
        return "not raised"

    tool.register(E.PY_START, lambda code, offset: None)
    tool.register(E.EXCEPTION_HANDLED,
                  lambda code, offset, exc: log.append(code.co_name) if code is caller.__code__ else None)
    tool.set_events(E.PY_START)
    assert caller() == "handled"
    assert log == ["caller"]
    tool.set_events(0)
    del keep


def test_caller_lines_after_its_callee_turned_events_on_and_raised(M: Any, tool: Tool) -> None:
    """Every later line and the return of the caller are reported natively."""
    E = M.events
    keep = many_functions(3000)
    log = []

    def callee() -> None:
        tool.set_events(E.PY_START | E.LINE | E.PY_RETURN)
        raise ValueError

    def caller() -> int:
        try:
            callee()
        except ValueError:
            a = 1
        return a

    first = caller.__code__.co_firstlineno
    tool.register(E.PY_START, lambda code, offset: None)
    tool.register(E.PY_RETURN, lambda code, offset, value: log.append("return") if code is caller.__code__ else None)
    tool.register(E.LINE, lambda code, line: log.append(line - first) if code is caller.__code__ else None)
    tool.set_events(E.PY_START)
    caller()
    tool.set_events(0)
    assert log == [3, 4, 5, "return"]
    del keep
