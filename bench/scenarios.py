"""What is switched on before a workload runs.

Each scenario's ``start(ctx)`` enables its monitoring and returns ``stop()``,
which switches it off again and returns counters (events seen, per event type
for the monitoring scenarios, and breakpoint hits) that the harness uses to
check that the scenario really observed the workload: an engine that delivers
nothing, or not every event type asked for, would otherwise look cheap.

The ``monitoring`` family uses only the public PEP 669 API of
``lowimpact.monitoring`` (lowimpact's engine on 3.11, the interpreter's own
``sys.monitoring`` on 3.12+).  The ``legacy`` family is what tools do without
it: ``sys.settrace``, ``sys.setprofile``, ``cProfile``.  Note that on 3.12+
CPython itself implements settrace, setprofile and cProfile on top of
``sys.monitoring``, so there the legacy rows measure those adapters.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Callable, Optional

# stop(): switches the scenario off and returns its counters.
Stop = Callable[[], "dict[str, int]"]


@dataclass
class Context:
    """What a scenario needs to know about the workload it will observe."""

    hot_code: types.CodeType
    bp_line: Optional[int]
    monitoring: Optional[types.ModuleType] = None


@dataclass(frozen=True)
class Design:
    """Reference ratios from DESIGN.md's performance table ("" where it gives none)."""

    settrace311: str = ""  # measured with the settrace-era equivalent on 3.11
    native: str = ""  # measured with native sys.monitoring on 3.12/3.13
    target: str = ""  # what lowimpact must reach on 3.9-3.11


@dataclass(frozen=True)
class Scenario:
    """A named way of monitoring the workload."""

    name: str
    family: str  # "baseline", "monitoring" or "legacy"
    description: str
    start: Callable[[Context], Stop]
    design: Design = field(default_factory=Design)
    needs_breakpoint: bool = False
    # The legacy scenario that does the same job, for the comparison table.
    legacy_equivalent: str = ""
    # Events that a workload may legitimately never produce; the harness flags
    # every other event type of stop()'s "by_event" that was never seen.
    may_be_zero: tuple[str, ...] = ()

    def unavailable(self, ctx: Context, monitoring_error: Optional[str]) -> Optional[str]:
        """Why this scenario cannot run here, or None if it can."""
        if self.family == "monitoring" and ctx.monitoring is None:
            return "lowimpact.monitoring unavailable (%s)" % monitoring_error
        if self.needs_breakpoint and ctx.bp_line is None:
            return "no never-executed line found in the hot function"
        return None


# ---------------------------------------------------------------------------
# baseline


def start_nothing(ctx: Context) -> Stop:
    """The unmonitored run every ratio is taken against."""
    return lambda: {}


# ---------------------------------------------------------------------------
# sys.monitoring (public API only)


def _release(M: types.ModuleType, tool: int, events: list[int], codes: tuple = ()) -> None:
    """Undo everything a scenario did with *tool*."""
    M.set_events(tool, 0)
    for code in codes:
        M.set_local_events(tool, code, 0)
    for event in events:
        M.register_callback(tool, event, None)
    M.free_tool_id(tool)


def start_idle(ctx: Context) -> Stop:
    """Tool registered with callbacks but no events: must cost nothing."""
    M = ctx.monitoring
    E = M.events
    tool = M.PROFILER_ID
    M.use_tool_id(tool, "bench-idle")
    used = [E.LINE, E.PY_START, E.PY_RETURN, E.CALL]
    for event in used:
        M.register_callback(tool, event, lambda *args: None)

    def stop() -> dict[str, int]:
        _release(M, tool, used)
        return {}

    return stop


def start_breakpoint(ctx: Context) -> Stop:
    """A debugger with one breakpoint, on a line of the hot function that never runs.

    LINE is enabled only in the hot function's code; every line that is not
    the breakpoint is disabled the first time it is seen, so once warm the
    function should run at full speed.
    """
    M = ctx.monitoring
    E = M.events
    tool = M.DEBUGGER_ID
    hot, bp_line, DISABLE = ctx.hot_code, ctx.bp_line, M.DISABLE
    seen = hits = 0

    def on_line(code: types.CodeType, line: int) -> object:
        nonlocal seen, hits
        seen += 1
        if line == bp_line and code is hot:
            hits += 1  # a real debugger would stop here
            return None
        return DISABLE

    M.use_tool_id(tool, "bench-breakpoint")
    M.register_callback(tool, E.LINE, on_line)
    M.set_local_events(tool, hot, E.LINE)

    def stop() -> dict[str, int]:
        _release(M, tool, [E.LINE], (hot,))
        return {"events": seen, "by_event": {"LINE": seen}, "breakpoint_hits": hits}

    return stop


def start_line_coverage(ctx: Context) -> Stop:
    """Line coverage: record each (code, line) once, then DISABLE it."""
    M = ctx.monitoring
    E = M.events
    tool = M.COVERAGE_ID
    DISABLE = M.DISABLE
    lines: set = set()

    def on_line(code: types.CodeType, line: int) -> object:
        lines.add((code, line))
        return DISABLE

    M.use_tool_id(tool, "bench-coverage")
    M.register_callback(tool, E.LINE, on_line)
    M.set_events(tool, E.LINE)

    def stop() -> dict[str, int]:
        _release(M, tool, [E.LINE])
        return {"events": len(lines), "by_event": {"LINE": len(lines)}}

    return stop


def start_line_branch_coverage(ctx: Context) -> Stop:
    """Line + branch coverage: record lines and (branch, destination) arcs, DISABLE both."""
    M = ctx.monitoring
    E = M.events
    tool = M.COVERAGE_ID
    DISABLE = M.DISABLE
    lines: set = set()
    arcs: set = set()

    def on_line(code: types.CodeType, line: int) -> object:
        lines.add((code, line))
        return DISABLE

    def on_branch(code: types.CodeType, offset: int, destination: int) -> object:
        arcs.add((code, offset, destination))
        return DISABLE

    M.use_tool_id(tool, "bench-branch-coverage")
    M.register_callback(tool, E.LINE, on_line)
    M.register_callback(tool, E.BRANCH, on_branch)
    M.set_events(tool, E.LINE | E.BRANCH)

    def stop() -> dict[str, int]:
        _release(M, tool, [E.LINE, E.BRANCH])
        return {"events": len(lines) + len(arcs),
                "by_event": {"LINE": len(lines), "BRANCH": len(arcs)}}

    return stop


def start_py_start_return(ctx: Context) -> Stop:
    """A call counter: PY_START and PY_RETURN to Python callbacks, never disabled."""
    M = ctx.monitoring
    E = M.events
    tool = M.PROFILER_ID
    starts = returns = 0

    def on_start(code: types.CodeType, offset: int) -> None:
        nonlocal starts
        starts += 1

    def on_return(code: types.CodeType, offset: int, retval: object) -> None:
        nonlocal returns
        returns += 1

    M.use_tool_id(tool, "bench-calls")
    M.register_callback(tool, E.PY_START, on_start)
    M.register_callback(tool, E.PY_RETURN, on_return)
    M.set_events(tool, E.PY_START | E.PY_RETURN)

    def stop() -> dict[str, int]:
        _release(M, tool, [E.PY_START, E.PY_RETURN])
        return {"events": starts + returns,
                "by_event": {"PY_START": starts, "PY_RETURN": returns}}

    return stop


def _c_tool() -> types.ModuleType:
    """bench/ctool.c, compiled for this interpreter (once, under bench/.build)."""
    import importlib.util
    import os
    import subprocess
    import sysconfig

    import lowimpact

    here = os.path.dirname(os.path.abspath(__file__))
    build = os.path.join(here, ".build")
    target = os.path.join(build, "ctool" + sysconfig.get_config_var("EXT_SUFFIX"))
    source = os.path.join(here, "ctool.c")
    if not os.path.exists(target) or os.path.getmtime(target) < os.path.getmtime(source):
        os.makedirs(build, exist_ok=True)
        cc = (sysconfig.get_config_var("CC") or "cc").split()
        subprocess.run(cc + ["-shared", "-fPIC", "-O2", "-I" + sysconfig.get_paths()["include"],
                             "-I" + lowimpact.get_include(), source, "-o", target], check=True)
    spec = importlib.util.spec_from_file_location("ctool", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_py_start_return_c(ctx: Context) -> Stop:
    """The call counter in C: PY_START and PY_RETURN to C callbacks (lowimpact.h)."""
    tool = ctx.monitoring.PROFILER_ID
    ctool = _c_tool()
    ctool.start(tool)

    def stop() -> dict[str, int]:
        starts, returns = ctool.stop(tool)
        return {"events": starts + returns,
                "by_event": {"PY_START": starts, "PY_RETURN": returns}}

    return stop


def _count_every(ctx: Context, event: str) -> Stop:
    """Every `event` (LINE or INSTRUCTION) to a Python callback that counts."""
    M = ctx.monitoring
    bit = getattr(M.events, event)
    tool = M.DEBUGGER_ID
    count = 0

    def on_event(code: types.CodeType, where: int) -> None:
        nonlocal count
        count += 1

    M.use_tool_id(tool, "bench-every-" + event.lower())
    M.register_callback(tool, bit, on_event)
    M.set_events(tool, bit)

    def stop() -> dict[str, int]:
        _release(M, tool, [bit])
        return {"events": count, "by_event": {event: count}}

    return stop


def start_every_line(ctx: Context) -> Stop:
    """Every line to a Python callback that counts (a line tracer that never lets go)."""
    return _count_every(ctx, "LINE")


def start_every_instruction(ctx: Context) -> Stop:
    """Every instruction to a Python callback that counts."""
    return _count_every(ctx, "INSTRUCTION")


def start_exception_events(ctx: Context) -> Stop:
    """A debugger watching exceptions: RAISE, RERAISE, EXCEPTION_HANDLED,
    PY_UNWIND and STOP_ITERATION to counting Python callbacks."""
    M = ctx.monitoring
    E = M.events
    tool = M.DEBUGGER_ID
    names = ["RAISE", "RERAISE", "EXCEPTION_HANDLED", "PY_UNWIND", "STOP_ITERATION"]
    counts = dict.fromkeys(names, 0)
    M.use_tool_id(tool, "bench-exceptions")
    bits = []
    for name in names:
        def on_event(code: types.CodeType, offset: int, exc: BaseException, name: str = name) -> None:
            counts[name] += 1
        bit = getattr(E, name)
        M.register_callback(tool, bit, on_event)
        bits.append(bit)
    M.set_events(tool, sum(bits))

    def stop() -> dict[str, object]:
        _release(M, tool, bits)
        return {"events": sum(counts.values()), "by_event": dict(counts)}

    return stop


def start_call_profile(ctx: Context) -> Stop:
    """A deterministic profiler's event set: Python and C calls, with Python callbacks.

    C_RETURN and C_RAISE callbacks must not return DISABLE (native raises
    ValueError), and none of these callbacks does.
    """
    M = ctx.monitoring
    E = M.events
    tool = M.PROFILER_ID
    counts = {"CALL": 0, "C_RETURN": 0, "C_RAISE": 0, "PY_START": 0, "PY_RETURN": 0}

    def on_call(code: types.CodeType, offset: int, callable_: object, arg0: object) -> None:
        counts["CALL"] += 1

    def on_c_return(code: types.CodeType, offset: int, callable_: object, arg0: object) -> None:
        counts["C_RETURN"] += 1

    def on_c_raise(code: types.CodeType, offset: int, callable_: object, arg0: object) -> None:
        counts["C_RAISE"] += 1

    def on_start(code: types.CodeType, offset: int) -> None:
        counts["PY_START"] += 1

    def on_return(code: types.CodeType, offset: int, retval: object) -> None:
        counts["PY_RETURN"] += 1

    callbacks = {
        E.CALL: on_call,
        E.C_RETURN: on_c_return,
        E.C_RAISE: on_c_raise,
        E.PY_START: on_start,
        E.PY_RETURN: on_return,
    }
    M.use_tool_id(tool, "bench-call-profile")
    for event, callback in callbacks.items():
        M.register_callback(tool, event, callback)
    M.set_events(tool, E.CALL | E.C_RETURN | E.C_RAISE | E.PY_START | E.PY_RETURN)

    def stop() -> dict[str, int]:
        _release(M, tool, list(callbacks))
        return {"events": sum(counts.values()), "by_event": counts}

    return stop


# ---------------------------------------------------------------------------
# settrace / setprofile / cProfile


def start_settrace_breakpoint(ctx: Context) -> Stop:
    """What bdb/pdb do: trace only frames of the hot function and compare each line."""
    hot, bp_line = ctx.hot_code, ctx.bp_line
    seen = hits = 0

    def local_trace(frame: types.FrameType, event: str, arg: object) -> object:
        nonlocal seen, hits
        if event == "line":
            seen += 1
            if frame.f_lineno == bp_line:
                hits += 1
        return local_trace

    def global_trace(frame: types.FrameType, event: str, arg: object) -> object:
        # Called for every new frame; other frames get no local tracer.
        if frame.f_code is hot:
            return local_trace
        return None

    sys.settrace(global_trace)

    def stop() -> dict[str, int]:
        sys.settrace(None)
        return {"events": seen, "breakpoint_hits": hits}

    return stop


def start_settrace_coverage(ctx: Context) -> Stop:
    """A settrace line-coverage collector (coverage.py's PyTracer in miniature)."""
    lines: set = set()

    def local_trace(frame: types.FrameType, event: str, arg: object) -> object:
        if event == "line":
            lines.add((frame.f_code, frame.f_lineno))
        return local_trace

    def global_trace(frame: types.FrameType, event: str, arg: object) -> object:
        return local_trace

    sys.settrace(global_trace)

    def stop() -> dict[str, int]:
        sys.settrace(None)
        return {"events": len(lines)}

    return stop


def start_settrace_opcodes(ctx: Context) -> Stop:
    """Per-opcode settrace (f_trace_opcodes), the old way to see every instruction."""
    count = 0

    def local_trace(frame: types.FrameType, event: str, arg: object) -> object:
        nonlocal count
        if event == "opcode":
            count += 1
        return local_trace

    def global_trace(frame: types.FrameType, event: str, arg: object) -> object:
        frame.f_trace_opcodes = True
        return local_trace

    # 3.12 asks for opcode events only at settrace() time, and only if some
    # frame has set f_trace_opcodes before; 3.11 and 3.13 do not need this.
    here = sys._getframe()
    here.f_trace_opcodes = True
    here.f_trace_opcodes = False
    sys.settrace(global_trace)

    def stop() -> dict[str, int]:
        sys.settrace(None)
        return {"events": count}

    return stop


def start_setprofile(ctx: Context) -> Stop:
    """A setprofile call counter (Python and C calls and returns)."""
    count = 0

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        nonlocal count
        count += 1

    sys.setprofile(profile)

    def stop() -> dict[str, int]:
        sys.setprofile(None)
        return {"events": count}

    return stop


def start_cprofile(ctx: Context) -> Stop:
    """cProfile enabled around the workload (C callbacks; on 3.12+ built on sys.monitoring)."""
    # cProfile.Profile is _lsprof's profiler; importing cProfile itself would
    # import bench/profile.py on 3.9 (its cProfile reads the stdlib profile's
    # docstrings at import).
    import _lsprof

    profiler = _lsprof.Profiler()
    profiler.enable()

    def stop() -> dict[str, int]:
        profiler.disable()
        return {"events": sum(entry.callcount for entry in profiler.getstats())}

    return stop


# ---------------------------------------------------------------------------

BASELINE = Scenario("none", "baseline", "nothing enabled", start_nothing)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("idle", "monitoring", "tool and callbacks registered, no events", start_idle,
                 Design(native="1.0", target="1.0")),
        Scenario("breakpoint", "monitoring", "never-hit breakpoint: local LINE in hot code, DISABLE",
                 start_breakpoint, Design("5.6", "1.0", "<=1.05"), needs_breakpoint=True,
                 legacy_equivalent="settrace_breakpoint"),
        Scenario("line_coverage", "monitoring", "global LINE, record (code, line), DISABLE",
                 start_line_coverage, Design("10.7", "1.0", "<=1.05"),
                 legacy_equivalent="settrace_coverage"),
        Scenario("line_branch_coverage", "monitoring", "global LINE+BRANCH, DISABLE both",
                 start_line_branch_coverage, Design("", "1.0", "<=1.05"),
                 legacy_equivalent="settrace_coverage"),
        Scenario("py_start_return", "monitoring", "PY_START+PY_RETURN counting callbacks",
                 start_py_start_return, Design("5.0", "3.0-3.4", "<=native"),
                 legacy_equivalent="setprofile"),
        Scenario("py_start_return_c", "monitoring", "PY_START+PY_RETURN counting C callbacks",
                 start_py_start_return_c, Design("5.4", "", "<=1.5"),
                 legacy_equivalent="cProfile"),
        Scenario("every_line", "monitoring", "global LINE to a counting callback, no DISABLE",
                 start_every_line, Design("10.7", "5.4-6.4", "<=native"),
                 legacy_equivalent="settrace_coverage"),
        Scenario("every_instruction", "monitoring", "global INSTRUCTION to a counting callback",
                 start_every_instruction, legacy_equivalent="settrace_opcodes"),
        Scenario("call_profile", "monitoring", "CALL+C_RETURN+C_RAISE+PY_START+PY_RETURN counting",
                 start_call_profile, legacy_equivalent="cProfile", may_be_zero=("C_RAISE",)),
        Scenario("exception_events", "monitoring", "RAISE+RERAISE+EXCEPTION_HANDLED+PY_UNWIND+STOP_ITERATION counting",
                 start_exception_events, may_be_zero=("RAISE", "RERAISE", "EXCEPTION_HANDLED", "PY_UNWIND",
                                                      "STOP_ITERATION")),
        Scenario("settrace_breakpoint", "legacy", "settrace: local tracer only in hot frames, line check",
                 start_settrace_breakpoint, Design(settrace311="5.6"), needs_breakpoint=True),
        Scenario("settrace_coverage", "legacy", "settrace: every frame, lines into a set",
                 start_settrace_coverage, Design(settrace311="10.7")),
        Scenario("settrace_opcodes", "legacy", "settrace with f_trace_opcodes, counting",
                 start_settrace_opcodes),
        Scenario("setprofile", "legacy", "setprofile counting every event",
                 start_setprofile, Design(settrace311="5.0")),
        Scenario("cProfile", "legacy", "cProfile.Profile enabled",
                 start_cprofile, Design(settrace311="5.4")),
    )
}

ALL_SCENARIOS: dict[str, Scenario] = {BASELINE.name: BASELINE, **SCENARIOS}
