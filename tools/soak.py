"""Long runs that must leave memory where it was.

Two phases, in this process:

* cycles: enable events for a tool (LINE with DISABLE, CALL with C_RETURN),
  run some code, ``restart_events()`` now and then, disable, many times;
* workload: run a call- and exception-heavy workload with every event but
  INSTRUCTION on for a while.

Memory is sampled during each phase (tracemalloc's traced total, objects
the collector tracks, resident set size); after the first tenth has warmed
caches up, it must not grow by more than the printed limits.  Exit status 1
if it does.

    python tools/soak.py [--cycles 100000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from typing import Any, Callable, Dict, List

from lowimpact import monitoring as M

E = M.events
TOOL = 2

#: Growth allowed between the warmed-up sample and the last one.
TRACED_LIMIT = 64 * 1024
OBJECTS_LIMIT = 200


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sample() -> Dict[str, int]:
    gc.collect()
    return {"traced": tracemalloc.get_traced_memory()[0],
            "objects": len(gc.get_objects()), "rss_kib": rss_kib()}


def make_functions(count: int) -> List[Callable[[int], int]]:
    source = "".join(
        "def f%d(n):\n"
        "    total = 0\n"
        "    for i in range(n):\n"
        "        try:\n"
        "            total += len(str(i)) // (i %% 3)\n"
        "        except ZeroDivisionError:\n"
        "            total -= 1\n"
        "    return total\n" % i
        for i in range(count)
    )
    namespace: Dict[str, Any] = {}
    exec(compile(source, "<soak>", "exec"), namespace)
    return [f for name, f in namespace.items() if name.startswith("f")]


def workload(functions: List[Callable[[int], int]]) -> int:
    total = sum(f(20) for f in functions)
    total += sum(x for x in (i * i for i in range(50)) if x % 3)
    return total


def cycles(count: int) -> List[Dict[str, int]]:
    functions = make_functions(8)
    M.use_tool_id(TOOL, "soak")
    M.register_callback(TOOL, E.LINE, lambda code, line: M.DISABLE)
    M.register_callback(TOOL, E.CALL, lambda *args: None)
    M.register_callback(TOOL, E.C_RETURN, lambda *args: None)
    samples = []
    try:
        for k in range(count):
            M.set_events(TOOL, E.LINE | E.CALL | E.C_RETURN | E.C_RAISE)
            workload(functions)
            if k % 7 == 0:
                M.restart_events()
            M.set_events(TOOL, 0)
            if k % max(1, count // 20) == 0:
                samples.append(sample())
    finally:
        M.set_events(TOOL, 0)
        M.clear_tool_id(TOOL)
        M.free_tool_id(TOOL)
    samples.append(sample())
    return samples


def steady(seconds: float) -> List[Dict[str, int]]:
    functions = make_functions(8)
    names = [name for name in vars(E) if name.isupper()
             and name not in ("NO_EVENTS", "INSTRUCTION")]
    counts: Dict[str, int] = {}

    def make(name: str) -> Callable[..., None]:
        def callback(*args: Any) -> None:
            counts[name] = counts.get(name, 0) + 1
        return callback

    M.use_tool_id(TOOL, "soak")
    for name in names:
        M.register_callback(TOOL, getattr(E, name), make(name))
    M.set_events(TOOL, sum(getattr(E, name) for name in names))
    samples = []
    try:
        end = time.monotonic() + seconds
        next_sample = time.monotonic()
        while time.monotonic() < end:
            workload(functions)
            if time.monotonic() >= next_sample:
                samples.append(sample())
                next_sample += seconds / 20
    finally:
        M.set_events(TOOL, 0)
        M.clear_tool_id(TOOL)
        M.free_tool_id(TOOL)
    samples.append(sample())
    print("  events delivered: %d" % sum(counts.values()))
    return samples


def report(phase: str, samples: List[Dict[str, int]]) -> bool:
    warm = samples[max(1, len(samples) // 10)] if len(samples) > 2 else samples[0]
    last = samples[-1]
    grown = {key: last[key] - warm[key] for key in last}
    ok = grown["traced"] <= TRACED_LIMIT and grown["objects"] <= OBJECTS_LIMIT
    print("  %-9s traced %+8d B (limit %d)  objects %+6d (limit %d)  rss %+6d KiB  %s"
          % (phase, grown["traced"], TRACED_LIMIT, grown["objects"], OBJECTS_LIMIT,
             grown["rss_kib"], "ok" if ok else "GREW"))
    return ok


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    tracemalloc.start()
    print("CPython %d.%d.%d: %d enable/disable cycles, then %g s of workload"
          % (sys.version_info[:3] + (args.cycles, args.seconds)))
    start = time.monotonic()
    ok = report("cycles", cycles(args.cycles))
    print("  (%.1f s)" % (time.monotonic() - start))
    ok = report("workload", steady(args.seconds)) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
