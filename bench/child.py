"""One measurement in a fresh process, started by run.py.

    python child.py MODE key=value ...

Modes:
  workload  workload=NAME size=N warmup=N scenario=NAME [bp_line=N]
  discover  workload=NAME size=N       find a never-executed line of the hot function
  heap      objects=N functions=N      cost of set_events(LINE) / set_events(0)
  imports   events=|LINE|LINE+BRANCH modules=a,b big_tables=0|1
                                       import time with those events on (none:
                                       off), big-table modules timed (1) or
                                       preloaded (0)

The result is printed as one line ``RESULT {json}``; ``{"na": reason}`` means
the measurement cannot be made on this interpreter.  Anything else on stdout
is ignored, and a crash is reported by run.py with the end of stderr.

This file imports only modules that are loaded at start-up anyway, because
the imports mode must not preload any module it times.
"""

from __future__ import annotations

import gc
import os
import sys
import time

TYPE_CHECKING = False  # see costs.py: typing must not be preloaded
if TYPE_CHECKING:
    from types import FrameType, ModuleType
    from typing import Any, Optional

_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def load_monitoring() -> tuple[Optional[ModuleType], Optional[str]]:
    """Import ``lowimpact.monitoring``; return (module, None) or (None, why not).

    If lowimpact is not installed in this interpreter at all, the package is
    taken from the repository's ``src/`` (where an in-place build of the
    engine lands), so a checkout can be benchmarked before it is installed.
    """
    try:
        from lowimpact import monitoring
    except ModuleNotFoundError as exc:
        if exc.name != "lowimpact":
            return None, "%s: %s" % (type(exc).__name__, exc)
        sys.path.insert(0, _SRC)
        try:
            from lowimpact import monitoring
        except Exception as exc2:  # whatever breaks is reported as the reason
            return None, "%s: %s" % (type(exc2).__name__, exc2)
    except Exception as exc:
        return None, "%s: %s" % (type(exc).__name__, exc)
    return monitoring, None


def run_workload(args: dict[str, str]) -> dict[str, Any]:
    """Enable a scenario, warm up, then time one run of the workload."""
    from scenarios import ALL_SCENARIOS, Context
    from workloads import WORKLOADS

    workload = WORKLOADS[args["workload"]]
    scenario = ALL_SCENARIOS[args["scenario"]]
    bp_line = int(args["bp_line"]) if args.get("bp_line") else None
    ctx = Context(workload.hot_code(), bp_line)
    error = None
    if scenario.family == "monitoring":
        ctx.monitoring, error = load_monitoring()
    why = scenario.unavailable(ctx, error)
    if why:
        return {"na": why}
    state = workload.prepare(int(args["size"]))
    warm_state = workload.prepare(int(args["warmup"]))
    gc.collect()
    try:
        stop = scenario.start(ctx)
    except NotImplementedError as exc:
        # An engine still being written may refuse some events: not a crash.
        return {"na": "NotImplementedError: %s" % exc}
    try:
        # The warm-up runs monitored too: DISABLE-style tools reach their
        # steady state and the interpreter specialises the bytecode.
        workload.run(warm_state)
        c0 = time.process_time()
        t0 = time.perf_counter()
        checksum = workload.run(state)
        seconds = time.perf_counter() - t0
        cpu_seconds = time.process_time() - c0
    finally:
        stats = stop()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "checksum": checksum,
            "stats": stats}


def discover(args: dict[str, str]) -> dict[str, Any]:
    """Find a line of the hot function that the workload never executes.

    Done with sys.settrace (available everywhere) in a process of its own,
    so that it leaves no trace in the measured processes.
    """
    from workloads import WORKLOADS

    workload = WORKLOADS[args["workload"]]
    code = workload.hot_code()
    state = workload.prepare(int(args["size"]))
    executed: set[int] = set()

    def local_trace(frame: FrameType, event: str, arg: object) -> object:
        if event == "line":
            executed.add(frame.f_lineno)
        return local_trace

    def global_trace(frame: FrameType, event: str, arg: object) -> object:
        return local_trace if frame.f_code is code else None

    sys.settrace(global_trace)
    try:
        workload.run(state)
    finally:
        sys.settrace(None)
    import dis  # (this mode times no import; 3.9 has no co_lines())

    lines = sorted({line for _, line in dis.findlinestarts(code)
                    if line is not None and line != code.co_firstlineno})
    never = [line for line in lines if line not in executed]
    where = "%s (%s:%d)" % (getattr(code, "co_qualname", code.co_name), os.path.basename(code.co_filename),
                            code.co_firstlineno)
    if not executed:
        return {"bp_line": None, "hot": where, "why": "the hot function never ran"}
    if not never:
        return {"bp_line": None, "hot": where, "why": "every line of the hot function runs"}
    return {"bp_line": never[0], "hot": where, "offset": never[0] - code.co_firstlineno,
            "executed_lines": len(executed), "lines": len(lines)}


def heap(args: dict[str, str]) -> dict[str, Any]:
    """Cost of enabling/disabling LINE with a big heap (see costs.measure_heap)."""
    import costs

    M, error = load_monitoring()
    if M is None:
        return {"na": "lowimpact.monitoring unavailable (%s)" % error}
    return costs.measure_heap(M, int(args["objects"]), int(args["functions"]))


def imports(args: dict[str, str]) -> dict[str, Any]:
    """Import time of big packages with events on or off (see costs.measure_imports)."""
    import costs

    events = args["events"]
    # Both modes load lowimpact first, so that neither times its imports.
    M, error = load_monitoring()
    if events and M is None:
        return {"na": "lowimpact.monitoring unavailable (%s)" % error}
    return costs.measure_imports(M, events, args["modules"].split(","),
                                 without_big_tables=args["big_tables"] == "0")


MODES = {"workload": run_workload, "discover": discover, "heap": heap, "imports": imports}


def main() -> None:
    """Parse ``MODE key=value ...``, run the mode, print its result line."""
    mode = sys.argv[1]
    args = dict(arg.split("=", 1) for arg in sys.argv[2:])
    result = MODES[mode](args)
    import json  # only now: json is one of the modules the imports mode times

    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
