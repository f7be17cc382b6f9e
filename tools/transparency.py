"""Run regression tests of the stdlib's own `test` package with monitoring on.

For each module, in fresh subprocesses: once without monitoring, once with
every event but INSTRUCTION enabled globally for one tool whose callbacks
record the events ("record"), and once with callbacks that return DISABLE
wherever that is allowed ("disable").  The results (tests run, failures,
errors, skips) must be the same, except for the tests in KNOWN_NATIVE, which
fail the same way under the interpreter's own sys.monitoring on 3.12 and 3.13
(run this tool there to see them).  A module that the running version's
test package lacks is listed as absent.  Prints a table; exit status 1 if
any module differs for any other reason.

    python tools/transparency.py [--quick] [module ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from typing import Dict, List

#: Generators, exceptions, async, classes, closures and the machinery that
#: monitoring must not disturb (tracing, frames, tracebacks, code objects).
MODULES = [
    "test.test_generators",
    "test.test_exceptions",
    "test.test_raise",
    "test.test_exception_group",
    "test.test_except_star",
    "test.test_coroutines",
    "test.test_asyncgen",
    "test.test_contextlib",
    "test.test_contextlib_async",
    "test.test_with",
    "test.test_class",
    "test.test_descr",
    "test.test_scope",
    "test.test_funcattrs",
    "test.test_keywordonlyarg",
    "test.test_genexps",
    "test.test_listcomps",
    "test.test_yield_from",
    "test.test_itertools",
    "test.test_functools",
    "test.test_dataclasses",
    "test.test_enum",
    "test.test_grammar",
    "test.test_json",
    "test.test_traceback",
    "test.test_frame",
    "test.test_sys_settrace",
    "test.test_bdb",
    "test.test_pdb",
    "test.test_dis",
    "test.test_inspect",
]

QUICK = MODULES[:8]

_SPECIALIZE = ("asserts that the adaptive interpreter specialised the code it ran; "
               "monitored code runs instrumented instructions that never specialise")
#: Tests that monitoring makes fail natively too, by test method name.
KNOWN_NATIVE = {
    "test_raise_and_yield_from": "a Python callback is where the pending SIGINT handler runs",
    "test_recursion_error_cleanup": "3.12 only: DISABLE in the recursion-limit test",
    "test_binary_specialize": _SPECIALIZE,
    "test_call_specialize": _SPECIALIZE,
    "test_load_attr_specialize": _SPECIALIZE,
    "test_loop_quicken": _SPECIALIZE,
    "test_super_instructions": _SPECIALIZE,
    "test_co_positions_with_lots_of_caches": _SPECIALIZE,
    "test_show_caches": _SPECIALIZE,
}

#: Run in the child: load the module's tests, switch monitoring on, run them.
CHILD = r"""
import json, sys, unittest
mode, name = sys.argv[1], sys.argv[2]
suite = unittest.defaultTestLoader.loadTestsFromName(name)
if suite.countTestCases() == 0:
    # A module of doctests only (test_genexps, test_listcomps before 3.12).
    import doctest, importlib
    suite = doctest.DocTestSuite(importlib.import_module(name))
counts = {}
if mode != "off":
    from lowimpact import monitoring as M
    E = M.events
    local = {"PY_START", "PY_RESUME", "PY_RETURN", "PY_YIELD", "CALL", "LINE",
             "JUMP", "BRANCH", "STOP_ITERATION"}
    names = [n for n in vars(E) if n.isupper() and n not in ("NO_EVENTS", "INSTRUCTION")]
    M.use_tool_id(4, "transparency")
    for n in names:
        result = M.DISABLE if (mode == "disable" and n in local) else None
        def callback(*args, n=n, result=result):
            counts[n] = counts.get(n, 0) + 1
            return result
        M.register_callback(4, getattr(E, n), callback)
    M.set_events(4, sum(getattr(E, n) for n in names))
with open("/dev/null", "w") as sink:
    r = unittest.TextTestRunner(stream=sink, verbosity=0).run(suite)
if mode != "off":
    M.set_events(4, 0)
failed = [str(t) for t, _ in r.failures + r.errors]
print(json.dumps({"run": r.testsRun, "failures": len(r.failures), "errors": len(r.errors),
                  "skipped": len(r.skipped), "failed": failed, "events": sum(counts.values())}))
"""


def run(mode: str, module: str, timeout: float) -> Dict:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, module],
        capture_output=True, text=True, timeout=timeout,
    )
    elapsed = time.perf_counter() - start
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            result["seconds"] = elapsed
            return result
    return {"crash": proc.returncode, "stderr": proc.stderr[-2000:], "seconds": elapsed}


def summary(r: Dict) -> str:
    if "crash" in r:
        return "CRASH(%s)" % r["crash"]
    return "%d/%d/%d/%d" % (r["run"], r["failures"], r["errors"], r["skipped"])


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*")
    parser.add_argument("--quick", action="store_true", help="a short list of modules")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)
    modules = args.modules or (QUICK if args.quick else MODULES)
    print("CPython %d.%d.%d, results as run/failures/errors/skipped" % sys.version_info[:3])
    print("%-32s %-16s %-16s %-16s %12s %s" % ("module", "off", "record", "disable", "events", "same"))
    differ = 0
    for module in modules:
        if importlib.util.find_spec(module) is None:
            # A module of a later version (test_except_star: 3.11+).
            print("%-32s %s" % (module, "absent from this version's test package"))
            continue
        results = {mode: run(mode, module, args.timeout) for mode in ("off", "record", "disable")}
        verdict = compare(results)
        differ += verdict == "NO"
        print("%-32s %-16s %-16s %-16s %12s %s" % (
            module, summary(results["off"]), summary(results["record"]),
            summary(results["disable"]), results["record"].get("events", "-"), verdict))
        if verdict != "yes":
            for mode in ("record", "disable"):
                for name in newly_failed(results, mode):
                    method = name.split()[0]
                    note = KNOWN_NATIVE.get(method)
                    print("    %s: %s%s" % (mode, name, "\n        known, native too: " + note if note else ""))
                if "stderr" in results[mode]:
                    print("    " + results[mode]["stderr"].strip().replace("\n", "\n    ")[-1200:])
    print("%d of %d modules differ (beyond the failures native monitoring shares)" % (differ, len(modules)))
    return 1 if differ else 0


def newly_failed(results: Dict[str, Dict], mode: str) -> List[str]:
    return sorted(set(results[mode].get("failed", [])) - set(results["off"].get("failed", [])))


def compare(results: Dict[str, Dict]) -> str:
    """"yes" if every mode matches the unmonitored run, "known" if the only
    differences are tests in KNOWN_NATIVE failing, "NO" otherwise."""
    if any("crash" in r for r in results.values()):
        return "NO"
    base = results["off"]
    verdict = "yes"
    for mode in ("record", "disable"):
        r = results[mode]
        extra = newly_failed(results, mode)
        if any(name.split()[0] not in KNOWN_NATIVE for name in extra):
            return "NO"
        fixed = set(base["failed"]) - set(r["failed"])
        counts_match = (r["run"], r["skipped"]) == (base["run"], base["skipped"])
        if fixed or not counts_match:
            return "NO"
        if extra:
            verdict = "known"
    return verdict


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
