"""The cost of turning events on, measured inside a fresh child process.

Two measurements:

* ``heap``: ``set_events(tool, LINE)`` and back to 0 in a process holding a
  large heap and thousands of distinct Python functions, and
  ``restart_events()`` in between; then ``restart_events()`` after
  ``PY_START`` returned DISABLE in every function (3.14's bdb).  An engine that
  walks the heap or re-instruments every code object eagerly pays here;
  native 3.12+ instruments lazily, on the next call of each function, so the
  first calls after enabling are timed too.
* ``imports``: importing a set of big stdlib packages with global LINE,
  or LINE+BRANCH, on (callbacks return DISABLE), against the same imports
  unmonitored.  Every module body runs once, so this is dominated by the
  cost of instrumenting code the first time it runs.  Measured twice: all
  modules, and all but the few that are one huge literal table.

This module imports nothing but ``gc``, ``os``, ``sys`` and ``time``: the
imports measurement must not preload any module it times.
"""

from __future__ import annotations

import gc
import os
import sys
import time

# typing is one of the modules the imports measurement times, so it is only
# imported by type checkers (the idiom the stdlib itself uses from 3.14).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

# Modules that are mostly one huge literal table (html5 entities, locale
# aliases, build variables).  Native 3.12/3.13 pay far more per line for the
# first LINE event in such big code objects, and these three modules make up
# most of native's import overhead, so it is measured with and without them.
BIG_TABLE_MODULES = "locale, html.entities, _sysconfigdata_*"

# Big stdlib packages present on 3.11-3.13 (3.9 and 3.10 lack tomllib);
# about 230 modules in all.
IMPORT_MODULES = (
    "asyncio email.parser email.policy email.mime.multipart http.client http.server json "
    "unittest xml.etree.ElementTree xml.dom.minidom argparse logging.handlers tomllib "
    "zipfile tarfile configparser dataclasses inspect pathlib typing concurrent.futures "
    "urllib.request decimal csv pydoc statistics fractions ipaddress uuid pickletools "
    "ast tokenize difflib"
).split()

_FUNCTION_TEMPLATE = """
def f{i}(x):
    y = x + {i}
    if y % 3 == 0:
        y //= 3
    else:
        y = y * 2 + 1
    for k in range(2):
        y ^= k
    return y
"""


def build_heap(objects: int, functions: int) -> tuple[list[Any], list[Callable[[int], int]]]:
    """Allocate about *objects* live objects and *functions* distinct functions.

    The functions are compiled from generated source (250 per pseudo-module)
    so that each has its own code object, as imported modules would.
    """
    keep: list[Any] = []
    for i in range(objects // 4):
        # dict + str + list + tuple: four objects per record
        keep.append({"k": "key%d" % i, "v": [i, (i, -i)]})
    funcs: list[Callable[[int], int]] = []
    per_module = 250
    for start in range(0, functions, per_module):
        stop = min(start + per_module, functions)
        source = "".join(_FUNCTION_TEMPLATE.format(i=i) for i in range(start, stop))
        namespace: dict[str, Any] = {}
        exec(compile(source, "<bench-heap-%d>" % start, "exec"), namespace)
        funcs.extend(namespace["f%d" % i] for i in range(start, stop))
    return keep, funcs


def _call_all(funcs: list[Callable[[int], int]]) -> float:
    """Call every function once; return the seconds it took."""
    t0 = time.perf_counter()
    for i, f in enumerate(funcs):
        f(i)
    return time.perf_counter() - t0


def _time_restarts(M: Any, funcs: list[Callable[[int], int]]) -> tuple[float, float]:
    """Seconds of restart_events() once every function has disabled its
    lines, and the median over calls of one function each (which disables
    its lines again) followed by restart_events(), as a debugger that
    restarts at every call of a function holding a breakpoint does."""
    t0 = time.perf_counter()
    M.restart_events()
    restart_all = time.perf_counter() - t0
    each = []
    for i, f in enumerate(funcs[:1000]):
        f(i)
        t0 = time.perf_counter()
        M.restart_events()
        each.append(time.perf_counter() - t0)
    each.sort()
    return restart_all, each[len(each) // 2]


def measure_heap(M: Any, objects: int, functions: int) -> dict[str, Any]:
    """Time enabling and disabling global LINE (DISABLE callback) over a big heap."""
    E = M.events
    tool = M.COVERAGE_ID
    keep, funcs = build_heap(objects, functions)
    _call_all(funcs)  # warm: functions have run (and specialised) before the tool attaches
    gc.collect()
    seen = 0
    DISABLE = M.DISABLE

    def on_line(code: Any, line: int) -> object:
        nonlocal seen
        seen += 1
        return DISABLE

    M.use_tool_id(tool, "bench-enable")
    M.register_callback(tool, E.LINE, on_line)
    calls_off = _call_all(funcs)
    t0 = time.perf_counter()
    M.set_events(tool, E.LINE)
    t1 = time.perf_counter()
    calls_on = _call_all(funcs)
    t2 = time.perf_counter()
    restart_all, restart_each = _time_restarts(M, funcs)
    t2b = time.perf_counter()
    M.set_events(tool, 0)
    t3 = time.perf_counter()
    calls_after = _call_all(funcs)
    M.register_callback(tool, E.LINE, None)
    # 3.14's bdb: PY_START everywhere, disabled in every function without a
    # breakpoint, restart_events() at each call of one with a breakpoint.
    M.register_callback(tool, E.PY_START, lambda code, offset: DISABLE)
    M.set_events(tool, E.PY_START)
    _call_all(funcs)
    bdb_all, bdb_each = _time_restarts(M, funcs)
    M.set_events(tool, 0)
    M.register_callback(tool, E.PY_START, None)
    M.free_tool_id(tool)
    return {
        "gc_objects": len(gc.get_objects()),
        "functions": len(funcs),
        "objects": 4 * len(keep),
        "enable_ms": (t1 - t0) * 1e3,
        "first_calls_on_ms": (t2 - t1) * 1e3,
        "restart_all_ms": restart_all * 1e3,
        "restart_each_us": restart_each * 1e6,
        "restart_bdb_ms": bdb_all * 1e3,
        "restart_bdb_each_us": bdb_each * 1e6,
        "disable_ms": (t3 - t2b) * 1e3,
        "calls_off_ms": calls_off * 1e3,
        "calls_after_ms": calls_after * 1e3,
        "events": seen,
    }


def preimport_big_tables() -> None:
    """Import the modules of BIG_TABLE_MODULES, untimed."""
    import html.entities  # noqa: F401
    import locale  # noqa: F401
    import sysconfig

    sysconfig.get_config_vars()  # loads the _sysconfigdata_* module


def measure_imports(M: Any, events: str, modules: list[str],
                    without_big_tables: bool) -> dict[str, Any]:
    """Import *modules* with *events* on ("LINE+BRANCH", "LINE"; "" for none).

    Modules already loaded (e.g. by lowimpact itself, which both modes import
    first) are left out and reported, so both modes time the same set.
    """
    if without_big_tables:
        preimport_big_tables()
    preloaded = [name for name in modules if name in sys.modules]
    # Packages an older stdlib lacks (tomllib before 3.11) are left out; the
    # finders already loaded look a top-level name up without importing it.
    absent = [name for name in modules if "." not in name and name not in sys.modules
              and not any(finder.find_spec(name, None) for finder in sys.meta_path)]
    modules = [name for name in modules if name not in sys.modules and name not in absent]
    seen = 0
    bits = [getattr(M.events, name) for name in events.split("+") if name]
    if bits:
        tool = M.COVERAGE_ID
        DISABLE = M.DISABLE

        def on_event(code: Any, *args: Any) -> object:
            nonlocal seen
            seen += 1
            return DISABLE

        M.use_tool_id(tool, "bench-imports")
        for bit in bits:
            M.register_callback(tool, bit, on_event)
        M.set_events(tool, sum(bits))
    before = set(sys.modules)
    t0 = time.perf_counter()
    for name in modules:
        __import__(name)  # not importlib: it might not be loaded yet
    seconds = time.perf_counter() - t0
    uncompiled = []
    for name in set(sys.modules) - before:
        spec = getattr(sys.modules[name], "__spec__", None)
        cached = getattr(spec, "cached", None)
        if cached and not os.path.exists(cached):
            uncompiled.append(name)
    if bits:
        M.set_events(tool, 0)
        for bit in bits:
            M.register_callback(tool, bit, None)
        M.free_tool_id(tool)
    return {
        "seconds": seconds,
        "modules": len(set(sys.modules) - before),
        "events": seen,
        "preloaded": preloaded,
        "absent": absent,
        "uncompiled": sorted(uncompiled),
    }

