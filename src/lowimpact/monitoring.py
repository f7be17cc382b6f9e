"""The ``sys.monitoring`` API (PEP 669) on every supported CPython.

On CPython 3.12 and newer this module re-exports the interpreter's own
``sys.monitoring`` (the very same function and constant objects), and adds
:func:`clear_tool_id` where the interpreter lacks it.  On CPython 3.11 the
same names come from lowimpact's C engine, which instruments bytecode only
where events are wanted.
"""

from __future__ import annotations

import sys

_SUPPORTED = "CPython 3.11, 3.12 and 3.13"

__all__ = [
    "use_tool_id",
    "clear_tool_id",
    "free_tool_id",
    "get_tool",
    "register_callback",
    "get_events",
    "set_events",
    "get_local_events",
    "set_local_events",
    "restart_events",
    "events",
    "DISABLE",
    "MISSING",
    "DEBUGGER_ID",
    "COVERAGE_ID",
    "PROFILER_ID",
    "OPTIMIZER_ID",
]

if sys.implementation.name != "cpython" or sys.version_info < (3, 11):
    raise ImportError(
        "lowimpact.monitoring supports %s; this is %s %d.%d"
        % (_SUPPORTED, sys.implementation.name, *sys.version_info[:2])
    )

if sys.version_info >= (3, 12):
    from lowimpact._native import (  # noqa: F401
        COVERAGE_ID,
        DEBUGGER_ID,
        DISABLE,
        MISSING,
        OPTIMIZER_ID,
        PROFILER_ID,
        clear_tool_id,
        events,
        free_tool_id,
        get_events,
        get_local_events,
        get_tool,
        register_callback,
        restart_events,
        set_events,
        set_local_events,
        use_tool_id,
    )
else:
    from lowimpact import _engine
    from lowimpact._engine import (  # noqa: F401
        COVERAGE_ID,
        DEBUGGER_ID,
        DISABLE,
        MISSING,
        OPTIMIZER_ID,
        PROFILER_ID,
        clear_tool_id,
        events,
        free_tool_id,
        get_events,
        get_local_events,
        get_tool,
        register_callback,
        restart_events,
        use_tool_id,
    )

    # set_events and set_local_events are called through Python functions so
    # that the caller's frame is suspended in a Python-to-Python call while the
    # engine instruments code: the engine can then move that frame onto
    # instrumented code, and it receives its events for the rest of its run
    # (as natively).  The frame executing a C function cannot be moved.

    # They take *args and **kwargs so that the engine checks the arguments and
    # raises exactly what the native functions raise.

    def set_events(*args: object, **kwargs: object) -> None:
        """set_events(tool_id, event_set, /)

        Select event_set for all code on behalf of tool_id.
        """
        _engine.set_events(*args, **kwargs)

    def set_local_events(*args: object, **kwargs: object) -> None:
        """set_local_events(tool_id, code, event_set, /)

        Select event_set for the code object code (not the code nested in
        it) on behalf of tool_id.
        """
        _engine.set_local_events(*args, **kwargs)

    _lander = _engine._lander

    def _landing() -> object:
        # Called (without arguments) only by code the engine puts in running
        # frames' way: truth-testing the lander moves the calling frame onto
        # instrumented code.  Nothing here may be a call (profilers
        # would see it).
        return _lander.token if _lander else None

    for _api in (set_events, set_local_events, _landing):
        _engine._exclude(_api.__code__)
    _engine._set_landing_function(_landing)
    del _api
