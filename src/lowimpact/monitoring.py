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

    import builtins as _builtins

    _build_class = _builtins.__build_class__
    _lander = _engine._lander

    def __build_class__(*args: object, **kwargs: object) -> object:
        """__build_class__(func, name, /, *bases, [metaclass], **kwds) -> class

        The builtin, which lowimpact stands in for while some functions start
        in code that a trampoline moves onto instrumented code (such a
        trampoline fetches this function and calls it without arguments).
        """
        # Truth-testing the lander moves a caller that came from a
        # trampoline; nothing here may be a call (profilers would see it).
        if args or kwargs or not _lander:
            return _build_class(*args, **kwargs)
        return _lander.token

    import functools as _functools

    # Name, module, docstring and (through __wrapped__) signature of the
    # builtin: inspect and pydoc describe it as they describe the builtin.
    _functools.update_wrapper(
        __build_class__, _build_class,
        assigned=_functools.WRAPPER_ASSIGNMENTS + ("__text_signature__",))
    for _api in (set_events, set_local_events, __build_class__):
        _engine._exclude(_api.__code__)
    _engine._set_trampoline_target(__build_class__)
    del _api
