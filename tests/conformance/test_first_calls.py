"""What the first calls of functions after events are turned on leave behind.

Natively a function is instrumented in place as it first runs with events
on: no object is allocated, so the garbage collector neither counts one
towards its next collection nor finds a new object to track.  A program
with a big heap whose thousands of functions all run for the first time
then would otherwise pay for collections it never asked for.
"""

from __future__ import annotations

import gc
from typing import Any, Callable, List

from .helpers import Tool

FUNCTIONS = 200


def fresh_functions() -> List[Callable[[int], int]]:
    """Functions whose code objects have never run with events on."""
    source = "".join("def f%d(x):\n    y = x + %d\n    return y\n" % (i, i)
                     for i in range(FUNCTIONS))
    namespace: dict = {}
    exec(compile(source, "<first-calls>", "exec"), namespace)
    return [namespace["f%d" % i] for i in range(FUNCTIONS)]


def first_calls(M: Any, tool: Tool, E: Any, funcs: List[Callable[[int], int]]) -> tuple:
    """Growth of the youngest generation's count, and of the objects the
    collector tracks, over the first call of each function with LINE on
    (collections off meanwhile, so that neither is reset)."""
    lines = []
    DISABLE = M.DISABLE

    def on_line(code: Any, line: int) -> Any:
        lines.append(line)
        return DISABLE

    tool.register(E.LINE, on_line)
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        tool.set_events(E.LINE)
        tracked = len(gc.get_objects())
        count = gc.get_count()[0]
        for f in funcs:
            f(1)
        grown = (gc.get_count()[0] - count, len(gc.get_objects()) - tracked)
    finally:
        if was_enabled:
            gc.enable()
        tool.set_events(0)
    assert len(lines) >= 2 * len(funcs)
    return grown


def test_first_calls_allocate_nothing_the_collector_counts(M: Any, tool: Tool, E: Any) -> None:
    funcs = fresh_functions()
    for f in funcs:
        f(0)
    counted, tracked = first_calls(M, tool, E, funcs)
    # A few objects of the loop and the callbacks' list may be counted, one
    # per function is not.
    assert counted < FUNCTIONS // 4, counted
    assert tracked < FUNCTIONS // 4, tracked
