"""Instructions that turning events on and restart_events() cost, in a big heap.

    python bench/callgrind_enable.py [--python PY ...] [--objects N] [--functions N]
                                     [--phase PHASE ...]

The timed form is `run.py --parts enable`; on a shared machine its
milliseconds wander, these counts do not.  Each cell runs one child under
callgrind collecting only inside the C function that implements the call
(the engine's, or the interpreter's own `sys.monitoring` function), after
building the heap of costs.build_heap and calling every function once:

- `set_events(LINE)` with a callback that returns DISABLE;
- `restart_events()` after every function ran once with LINE on (its lines
  disabled), and after it ran twice (on the engine, compacted shadows);
- `restart_events()` after `PY_START` returned DISABLE in every function, as
  3.14's bdb monitoring backend leaves all code but a breakpoint's; the
  next one, after every function started again and disabled it again (the
  difference between the counts of two rounds and of one); and the same
  two from a function, its PY_START disabled too, that C code called;
- `set_local_events(LINE)` on each code object from its `PY_START` callback,
  as a coverage tool that measures only some code does, for the first 100
  functions called (the sum over the 100 calls);
- the first call of every function after `set_events(LINE)` (callback
  returning DISABLE): here the count is of the one call of builtin `sum()`
  that drives the calls (through a lambda, so each function is called from
  Python code), identical on every interpreter.  Its timed form is
  `first_calls_on_ms` of `run.py --parts enable`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import default_pythons  # noqa: E402

COLLECTED = re.compile(r"Collected : (\d+)")

# What the child runs: PHASE is "enable", "local", "first", the number of
# rounds of calls before restart_events(), or "bdbN": N rounds of calls, each
# with PY_START disabled everywhere, then restart_events() ("bdb-cN": from a
# function, disabled too, that C code called).
CHILD = """
import sys
sys.path.insert(0, {here!r})
import costs
from child import load_monitoring
M, why = load_monitoring()
if M is None:
    raise SystemExit(why)
E = M.events
keep, funcs = costs.build_heap({objects}, {functions})
costs._call_all(funcs)
tool = M.COVERAGE_ID
M.use_tool_id(tool, "bench-enable-counts")
M.register_callback(tool, E.LINE, lambda code, line: M.DISABLE)
if {phase!r} == "local":
    def start(code, offset):
        M.set_local_events(tool, code, E.LINE)
        return M.DISABLE
    M.register_callback(tool, E.PY_START, start)
    M.set_events(tool, E.PY_START)
    costs._call_all(funcs[:100])
    raise SystemExit
if {phase!r}.startswith("bdb"):
    def restart(_):
        M.restart_events()
    M.register_callback(tool, E.PY_START, lambda code, offset: M.DISABLE)
    M.set_events(tool, E.PY_START)
    for _ in range(int({phase!r}[-1:])):
        costs._call_all(funcs)
        if {phase!r}.startswith("bdb-c"):
            list(map(restart, [0]))
        else:
            M.restart_events()
    raise SystemExit
M.set_events(tool, E.LINE)
if {phase!r} == "first":
    sum(map(lambda f: f(1), funcs))
    raise SystemExit
if {phase!r} != "enable":
    for _ in range(int({phase!r})):
        costs._call_all(funcs)
    M.restart_events()
"""

# The C function behind each call: the engine's module, or CPython's.
FUNCTIONS = {
    ("engine", "enable"): "set_events",
    ("engine", "restart"): "restart_events",
    ("engine", "local"): "set_local_events",
    ("native", "enable"): "monitoring_set_events",
    ("native", "restart"): "monitoring_restart_events",
    ("native", "local"): "monitoring_set_local_events",
    ("engine", "first"): "builtin_sum",
    ("native", "first"): "builtin_sum",
}


def count(python: str, phase: str, objects: int, functions: int) -> str:
    """Instructions inside the call of `phase`, or why there is no count."""
    if phase.endswith("-next"):
        # The second restart alone: what two rounds cost beyond one.
        two, one = (count(python, phase[:-5] + str(n), objects, functions) for n in (2, 1))
        if two.startswith("error") or one.startswith("error"):
            return two if two.startswith("error") else one
        return "{:,}".format(int(two.replace(",", "")) - int(one.replace(",", "")))
    native = subprocess.run([python, "-c", "import sys; print(hasattr(sys, 'monitoring'))"],
                            capture_output=True, text=True).stdout.strip() == "True"
    kind = "native" if native else "engine"
    function = FUNCTIONS[kind, phase if phase in ("enable", "local", "first") else "restart"]
    script = CHILD.format(here=HERE, objects=objects, functions=functions, phase=phase)
    # A link-time-optimised build renames a static function it keeps
    # (set_events.lto_priv.0): both names are toggled.
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           "--collect-atstart=no", "--toggle-collect=" + function,
                           "--toggle-collect=%s.lto_priv.*" % function,
                           python, "-c", script], capture_output=True, text=True)
    found = COLLECTED.findall(proc.stderr)
    if proc.returncode != 0 or not found:
        return "error: " + ((proc.stderr.strip().splitlines() or ["no output"])[-1])
    return "{:,}".format(int(found[-1]))


def version_of(python: str) -> str:
    """The column heading of *python*: its version (venvs all say "python")."""
    proc = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                          capture_output=True, text=True)
    return proc.stdout.strip() or os.path.basename(python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", help="interpreter (repeatable)")
    parser.add_argument("--objects", type=int, default=200_000)
    parser.add_argument("--functions", type=int, default=5_000)
    parser.add_argument("--phase", action="append",
                        choices=("enable", "1", "2", "bdb1", "bdb-next", "bdb-c1", "bdb-c-next",
                                 "local", "first"),
                        help="only these rows (repeatable): set_events, restart_events after "
                             "1 or 2 calls or under bdb's pattern, set_local_events, first calls")
    args = parser.parse_args()
    pythons = args.python or default_pythons()
    phases = [("set_events(LINE)", "enable"), ("restart_events(), after one call each", "1"),
              ("restart_events(), after two calls each", "2"),
              ("restart_events(), PY_START disabled everywhere (bdb)", "bdb1"),
              ("the next restart_events(), PY_START disabled again", "bdb-next"),
              ("the same from a function C code called", "bdb-c1"),
              ("  and the next one", "bdb-c-next"),
              ("set_local_events(LINE) from PY_START, 100 codes", "local"),
              ("first call of each function after set_events(LINE)", "first")]
    phases = [(label, phase) for label, phase in phases
              if not args.phase or phase in args.phase]
    print("Instructions inside the call, %d objects, %d functions (callgrind)\n"
          % (args.objects, args.functions))
    print("| call | " + " | ".join(version_of(p) for p in pythons) + " |")
    print("|---|" + "---:|" * len(pythons))
    for label, phase in phases:
        cells = [count(p, phase, args.objects, args.functions) for p in pythons]
        print("| %s | %s |" % (label, " | ".join(cells)))


if __name__ == "__main__":
    main()
