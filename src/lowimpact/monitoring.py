"""The ``sys.monitoring`` API (PEP 669) on every supported CPython.

On CPython 3.12 and newer this module re-exports the interpreter's own
``sys.monitoring`` (the very same function and constant objects), and adds
:func:`clear_tool_id` where the interpreter lacks it.  On CPython 3.9, 3.10 and
3.11 the same names come from lowimpact's C engine, which instruments bytecode only
where events are wanted.
"""

from __future__ import annotations

import sys

_SUPPORTED = "CPython 3.9, 3.10, 3.11, 3.12 and 3.13"

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

if sys.implementation.name != "cpython" or sys.version_info < (3, 9):
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
        _all_events,
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
        _all_events,
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

    if hasattr(_engine, "_lander"):
        # A back end that moves running frames onto instrumented code (3.11's)
        # does it through this function; one that reaches frames as they are
        # evaluated (3.10's) has none.
        _lander = _engine._lander

        def _landing() -> object:
            # Called (without arguments) only by code the engine puts in running
            # frames' way: truth-testing the lander moves the calling frame onto
            # instrumented code.  Nothing here may be a call (profilers
            # would see it).
            return _lander.token if _lander else None

        _engine._exclude(_landing.__code__)
        _engine._set_landing_function(_landing)
