"""``sys.monitoring`` of CPython 3.12+, plus the additions the running version lacks."""

from __future__ import annotations

import gc
import sys
import types

_native = sys.monitoring  # type: ignore[attr-defined]

use_tool_id = _native.use_tool_id
free_tool_id = _native.free_tool_id
get_tool = _native.get_tool
register_callback = _native.register_callback
get_events = _native.get_events
set_events = _native.set_events
get_local_events = _native.get_local_events
set_local_events = _native.set_local_events
restart_events = _native.restart_events
_all_events = _native._all_events
events = _native.events
DISABLE = _native.DISABLE
MISSING = _native.MISSING
DEBUGGER_ID = _native.DEBUGGER_ID
COVERAGE_ID = _native.COVERAGE_ID
PROFILER_ID = _native.PROFILER_ID
OPTIMIZER_ID = _native.OPTIMIZER_ID

_EVENT_BITS = tuple(
    value
    for name, value in vars(events).items()
    if name.isupper() and name != "NO_EVENTS"
)


def _reachable_code_objects() -> set:
    """Every code object that can still run: found from live objects and frames.

    3.12 and 3.13 keep no registry of the code objects that carry local
    events, so the heap is searched.  Code objects are not tracked by the
    garbage collector; they are reached through the objects that refer to
    them (functions, generators, frames, containers) and through co_consts.
    """
    found = set()
    pending = []

    def add(obj: object) -> None:
        if isinstance(obj, types.CodeType) and obj not in found:
            found.add(obj)
            pending.append(obj)

    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType):
            add(obj.__code__)
        elif isinstance(obj, (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)):
            frame = getattr(obj, "gi_frame", None) or getattr(obj, "cr_frame", None) or getattr(obj, "ag_frame", None)
            if frame is not None:
                add(frame.f_code)
        elif isinstance(obj, types.FrameType):
            add(obj.f_code)
        elif isinstance(obj, dict):
            for value in obj.values():
                add(value)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            # Only plain containers: gc.get_referents() of some extension
            # objects hands out objects it does not own (3.12.1 _asyncio).
            for item in obj:
                add(item)
    for frame in sys._current_frames().values():
        while frame is not None:
            add(frame.f_code)
            frame = frame.f_back
    while pending:
        for const in pending.pop().co_consts:
            add(const)
    return found


if hasattr(_native, "clear_tool_id"):
    clear_tool_id = _native.clear_tool_id
else:

    def clear_tool_id(tool_id: int, /) -> None:
        """Unregister all events and callback functions associated with *tool_id*.

        The tool id stays in use (as in CPython 3.14, where this function
        comes from).
        """
        get_tool(tool_id)  # validates tool_id with the native messages
        if get_tool(tool_id) is not None:
            set_events(tool_id, 0)
            for code in _reachable_code_objects():
                if get_local_events(tool_id, code):
                    set_local_events(tool_id, code, 0)
        for event in _EVENT_BITS:
            register_callback(tool_id, event, None)
