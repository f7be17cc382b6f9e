"""What each event source a deterministic profiler could use costs by
itself, with callbacks that do nothing (bench/event_floor.c): instructions
(valgrind's callgrind) of the programs of bench/callgrind_profile.py.

    python bench/callgrind_sources.py [--python PY ...] [--workloads calls objects parser]
                                      [--sources hook c_events ...]

Per source: the whole process's instructions at the larger size over the
plain run's (start-up included: the runner imports lowimpact.monitoring
and runpy), and the marginal instructions per profiled call (the growth of
(source - plain) between the two sizes over the growth of the calls that
lowimpact profile counts), which is what a profiler on that source pays
before doing any work of its own.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from callgrind_profile import SRC, WORKLOADS, measure, per_call, real_python  # noqa: E402

PY_EVENTS = ("PY_START", "PY_RESUME", "PY_THROW", "PY_RETURN", "PY_YIELD", "PY_UNWIND")
C_EVENTS = ("CALL", "C_RETURN", "C_RAISE")
# name -> what the program's process does first
SOURCES = {
    "plain": "",
    "hook": "floor.frame_hook()",
    "py_events": "floor.events(mask(%r))" % (PY_EVENTS,),
    "c_events": "floor.events(mask(%r))" % (C_EVENTS,),
    "hook+c_events": "floor.frame_hook(); floor.events(mask(%r))" % (C_EVENTS,),
    # Not exact (a site that called a Python function and later calls a
    # built-in is not seen): how much limiting CALL could save at most.
    "hook+c_events_disable": "floor.frame_hook(); floor.events(mask(%r), True)" % (C_EVENTS,),
    "all_events": "floor.events(mask(%r))" % (PY_EVENTS + C_EVENTS,),
    "all_events_disable": "floor.events(mask(%r), True)" % (PY_EVENTS + C_EVENTS,),
    "setprofile": "floor.setprofile()",
}
RUNNER = """
import importlib.util, runpy, sys
from lowimpact.monitoring import events
spec = importlib.util.spec_from_file_location("event_floor", sys.argv[1])
floor = importlib.util.module_from_spec(spec); spec.loader.exec_module(floor)
def mask(names):
    m = 0
    for name in names:
        m |= getattr(events, name)
    return m
%s
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def build(python: str) -> str:
    """bench/event_floor.c compiled for `python` (under bench/.build)."""
    code = ("import sysconfig, subprocess, sys; sys.path.insert(0, %r); import lowimpact; "
            "t = %r + sysconfig.get_config_var('EXT_SUFFIX'); "
            "cc = (sysconfig.get_config_var('CC') or 'cc').split(); "
            "subprocess.run(cc + ['-shared', '-fPIC', '-O2', '-I' + sysconfig.get_paths()['include'], "
            "'-I' + lowimpact.get_include(), %r, '-o', t], check=True); print(t)"
            % (str(SRC), str(HERE / ".build" / "event_floor"), str(HERE / "event_floor.c")))
    os.makedirs(HERE / ".build", exist_ok=True)
    return subprocess.run([python, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--sources", nargs="+", default=[s for s in SOURCES if s != "plain"],
                        choices=[s for s in SOURCES if s != "plain"])
    options = parser.parse_args()
    sources = ["plain"] + options.sources
    print("| python | workload | calls | plain Ir | plain Ir/call | "
          + " | ".join("%s | Ir/call" % s for s in sources[1:]) + " |")
    print("|---" * (5 + 2 * len(sources[1:])) + "|")
    with tempfile.TemporaryDirectory(prefix="lowimpact-callgrind-sources") as tmp:
        for python in options.python or [sys.executable]:
            py = real_python(python)
            floor = build(py)
            version = subprocess.run([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                     capture_output=True, text=True).stdout.strip()
            for workload in options.workloads:
                measured = measure(py, workload, {
                    source: [py, "-c", RUNNER % SOURCES[source], floor] for source in sources
                }, tmp)
                if measured is None:
                    print("| %s | %s | failed |" % (version, workload))
                    continue
                ir, n = measured
                _, small, large = WORKLOADS[workload]
                cells = ["%.2fx | %.0f" % (ir[source, large] / ir["plain", large],
                                           per_call(workload, ir, n, source))
                         for source in sources[1:]]
                plain = (ir["plain", large] - ir["plain", small]) / (n[large] - n[small])
                print("| %s | %s | %d | %d | %.0f | %s |" % (version, workload, n[large],
                                                           ir["plain", large], plain,
                                                           " | ".join(cells)), flush=True)

if __name__ == "__main__":
    main()
