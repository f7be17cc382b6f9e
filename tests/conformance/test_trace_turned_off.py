"""Monitoring turned off while a ``sys.settrace`` function runs must not
break the frame it traces.

On the engine a frame that was running when events came gets trampolines
written over units of its code (docs/ENGINE.md, "Trampolines").  A trace
function may run while its frame stands in those units: ``f_trace_opcodes``
makes an ``opcode`` event at each unit.  If monitoring is turned off meanwhile, from the trace function itself
or by another thread while it waits (a debugger's prompt), putting back what
the trampoline replaced would leave the frame to run an inline cache as
code.  Each case runs in a child process, as a failure is a crash; natively
they are plain programs that must give their result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

PRELUDE = """
import json, sys, threading
if sys.version_info < (3, 12):
    import lowimpact
    lowimpact.install()
M = sys.monitoring
E = M.events
M.use_tool_id(3, "t")
M.register_callback(3, E.LINE, lambda *a: None)
M.register_callback(3, E.PY_YIELD, lambda *a: None)
mode, when = sys.argv[1], int(sys.argv[2])
turned_on = [False]
seen_after = [0]
waiting = threading.Event()
resumed = threading.Event()


def first_call():
    return 1


def turn_off():
    if mode == "thread":
        # As another thread does while a debugger waits at its prompt.
        waiting.set()
        resumed.wait(60)
    elif mode == "subinterpreter":
        try:
            import _interpreters as interpreters        # 3.13
        except ImportError:
            import _xxsubinterpreters as interpreters   # 3.11, 3.12
        M.set_events(3, 0)
        sub = interpreters.create()
        interpreters.run_string(sub, "import sys; sys.settrace(None)")
        interpreters.destroy(sub)
    elif mode == "first-call":
        # Events stay on: a function that first runs now starts on
        # instrumented code as its traced caller stands in a trampoline.
        first_call()
    else:
        M.set_events(3, 0)


def other_thread():
    if waiting.wait(60):
        M.set_events(3, 0)
    resumed.set()


def make_trace(code):
    def trace(frame, event, arg):
        if frame.f_code is code:
            frame.f_trace_opcodes = mode in ("opcode", "first-call", "subinterpreter")
            if turned_on[0] and event in ("line", "opcode"):
                seen_after[0] += 1
                if seen_after[0] == when:
                    turned_on[0] = False
                    turn_off()
        return trace
    return trace


# Prints what run() returns with `code` traced, and how many code objects
# keep a trampoline on the engine.
def traced(code, run):
    sys.settrace(make_trace(code))
    result = run()
    sys.settrace(None)
    resumed.set()
    waiting.set()
    if thread.is_alive():
        thread.join()
    stats = {}
    if sys.version_info < (3, 12) and mode != "first-call":
        # Trampolines kept armed for the frame went as it landed.
        stats = {"trampolined_codes": lowimpact._engine._stats().get("trampolined_codes", 0)}
    print(json.dumps({"result": result, "stats": stats}))


thread = threading.Thread(target=other_thread)
if mode == "thread":
    thread.start()
"""

# A frame waiting under sorted() gets a trampoline in the inline cache of its
# CALL, reached by a jump back over the unit after it.
IN_A_CALL = PRELUDE + """
def key(v):
    if not turned_on[0] and seen_after[0] == 0:
        M.set_events(3, E.LINE)
        turned_on[0] = True
    return v


def outer():
    y = sorted([2, 1], key=key)
    return y


traced(outer.__code__, outer)
"""

# A generator waiting in the SEND of its `yield from` loop gets a one-unit
# jump from the loop's YIELD_VALUE to a trampoline in an inline cache.
IN_A_YIELD_FROM = PRELUDE + """
class O:
    pass


o = O()
o.a = 1


def inner():
    yield 1
    M.set_events(3, E.PY_YIELD)
    turned_on[0] = True
    yield 2
    yield 3


def outer(it):
    x = o.a
    x = yield from it
    return x


traced(outer.__code__, lambda: list(outer(inner())))
"""


def run(tmp_path: Any, program: str, mode: str, when: int) -> dict:
    import lowimpact

    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(lowimpact.__file__)))
    (tmp_path / "prog.py").write_text(program)
    done = subprocess.run([sys.executable, "prog.py", mode, str(when)], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    return json.loads(done.stdout)


# On the engine the first `line` event after the events came is where the
# frame landed; with `f_trace_opcodes` the trace function is called at the
# jump back to the trampoline and at each of its units in turn.
# "first-call": at the trampoline's CALL (event 6 in a call, 7 in a
# `yield from`) the traced frame is on its way to the landing function.
CASES = ([("line", 1), ("thread", 1), ("first-call", 6), ("first-call", 7)] +
         [("opcode", n) for n in range(1, 9)])


@pytest.mark.parametrize("mode, when", CASES)
def test_turned_off_in_a_call(tmp_path: Any, mode: str, when: int) -> None:
    out = run(tmp_path, IN_A_CALL, mode, when)
    assert out["result"] == [1, 2]
    assert out["stats"].get("trampolined_codes", 0) == 0


@pytest.mark.parametrize("mode, when", CASES)
def test_turned_off_in_a_yield_from(tmp_path: Any, mode: str, when: int) -> None:
    out = run(tmp_path, IN_A_YIELD_FROM, mode, when)
    assert out["result"] == [1, 2, 3]
    assert out["stats"].get("trampolined_codes", 0) == 0


# A trace function raises at the trampoline (`f_trace_opcodes`): the frame's
# landing never happens.  Another frame later stands where it stood (of
# other code, or of the same code elsewhere in it), then LINE is turned on
# by a function it calls: it reports the rest of its lines, as natively.
# Before that it calls a function that lands ("lands"), or one too short
# for an entry trampoline, whose shadow is made at once ("short"), or
# nothing ("same-code").
RAISED_AT_THE_TRAMPOLINE = """
import json, sys
import lowimpact
lowimpact.install()
M = sys.monitoring
E = M.events
M.use_tool_id(3, "t")
lines = []
M.register_callback(3, E.LINE, lambda code, line: lines.append((code.co_name, line)))
turned_on = [False]
seen = [0]
variant, when = sys.argv[1], int(sys.argv[2])


def key(v):
    if not turned_on[0]:
        M.set_events(3, E.LINE)
        turned_on[0] = True
    return v


def turns_on():
    M.set_events(3, E.LINE)


def outer(again=False):
    if again:
        turns_on()
        a = 1
        return a
    y = sorted([2, 1], key=key)
    return y


class Boom(Exception):
    pass


def trace(frame, event, arg):
    if frame.f_code is outer.__code__:
        frame.f_trace_opcodes = True
        if turned_on[0] and event == "opcode":
            seen[0] += 1
            if seen[0] == when:
                M.set_events(3, 0)
                raise Boom
    return trace


def lands():
    x = 1
    return x


def short():
    return 1


def later():
    first_call()
    turns_on()
    a = 1
    return a


sys.settrace(trace)
try:
    outer()
except Boom:
    pass
sys.settrace(None)
M.set_events(3, 0)
if variant == "same-code":
    lines.clear()
    outer(True)
    function = outer
else:
    first_call = lands if variant == "lands" else short
    M.set_local_events(3, first_call.__code__, E.LINE)
    lines.clear()
    later()
    M.set_local_events(3, first_call.__code__, 0)
    function = later
M.set_events(3, 0)
first = function.__code__.co_firstlineno
print(json.dumps({"result": sorted({line - first for name, line in lines
                                    if name == function.__name__}),
                  "stats": {}}))
"""


@pytest.mark.parametrize("variant", ["lands", "short", "same-code"])
@pytest.mark.parametrize("when", range(1, 9))
def test_trace_function_raised_at_the_trampoline(tmp_path: Any, variant: str, when: int) -> None:
    assert run(tmp_path, RAISED_AT_THE_TRAMPOLINE, variant, when)["result"] == [3, 4]


# Events are turned off as the traced frame stands in a trampoline, so the
# trampoline stays for it; then its trace function raises there (a
# debugger's quit), and the frame unwinds instead of taking it.  A trace
# function set later sees a new frame of the code run as it did before
# monitoring started, and no trampoline is left.
LEFT_BY_AN_EXCEPTION = IN_A_CALL.replace(
    "M.set_events(3, 0)\n\n\ndef other_thread",
    "M.set_events(3, 0)\n        raise Boom\n\n\ndef other_thread").replace(
    "traced(outer.__code__, outer)\n", "") + """
class Boom(Exception):
    pass


# (Lines only: on 3.12.1 f_trace_opcodes set at a `call` event does not
# always take effect.)
def trace_all(seen):
    def trace(frame, event, arg):
        if frame.f_code is outer.__code__:
            seen.append((event, frame.f_lasti, frame.f_lineno))
        return trace
    return trace


# What a trace function sees of outer() before monitoring starts (key()
# turns nothing on).
before = []
seen_after[0] = -1
sys.settrace(trace_all(before))
outer()
sys.settrace(None)
seen_after[0] = 0
sys.settrace(make_trace(outer.__code__))
raised = False
try:
    outer()
except Boom:
    raised = True
sys.settrace(None)
stats = {}
if sys.version_info < (3, 12):
    stats = {"trampolined_codes": lowimpact._engine._stats().get("trampolined_codes", 0)}
after = []
sys.settrace(trace_all(after))
outer()
sys.settrace(None)
print(json.dumps({"result": after == before or [before, after], "raised": raised,
                  "stats": stats}))
"""


@pytest.mark.parametrize("when", range(1, 9))
def test_trampoline_left_by_an_exception(tmp_path: Any, when: int) -> None:
    out = run(tmp_path, LEFT_BY_AN_EXCEPTION, "opcode", when)
    # (Natively the trace function sees no opcode event there: it does not
    # raise.)
    assert out["raised"] or sys.version_info[:2] != (3, 11)  # trampolines: 3.11 only
    assert out["result"] is True
    assert out["stats"].get("trampolined_codes", 0) == 0


# A trampoline is kept for the traced frame standing in it as its code stops
# needing events, which it needs again before the frame takes it (a debugger
# turns LINE off and on again from its trace function).  Meanwhile another
# tool has PY_START on many functions (a coverage tool): their first calls
# cost as much as before.  (On the engine each first call lands, and every
# landing used to walk the list of all trampolined code objects for as long
# as that trampoline was counted as kept: quadratic in the functions run.)
STILL_NEEDED_AFTER_ALL = """
import gc, json, sys, time
if sys.version_info < (3, 12):
    import lowimpact
    lowimpact.install()
M = sys.monitoring
E = M.events
M.use_tool_id(3, "debugger")
M.use_tool_id(4, "coverage")
M.register_callback(3, E.LINE, lambda *a: None)
M.register_callback(4, E.PY_START, lambda *a: None)
turned_on = [False]
seen = [0]
N = 8000


def key(v):
    if not turned_on[0]:
        M.set_local_events(3, outer.__code__, E.LINE)
        turned_on[0] = True
    return v


def outer():
    y = sorted([2, 1], key=key)
    return y


def trace(frame, event, arg):
    if frame.f_code is outer.__code__:
        frame.f_trace_opcodes = True
        if turned_on[0] and event == "opcode":
            seen[0] += 1
            if seen[0] == 3:
                M.set_local_events(3, outer.__code__, 0)
                M.set_local_events(3, outer.__code__, E.LINE)
    return trace


def functions():
    ns = {}
    exec("\\n".join(f"def f{i}(a=1):\\n    b = a + {i}\\n    c = b * 2\\n    return c\\n"
                   for i in range(N)), ns)
    made = [ns[f"f{i}"] for i in range(N)]
    for f in made:
        M.set_local_events(4, f.__code__, E.PY_START)
    return made


def first_calls(made):
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    for f in made:
        f()
    elapsed = time.perf_counter() - start
    gc.enable()
    return elapsed


def kept_count():
    if sys.version_info >= (3, 12):
        return 0
    from lowimpact import _engine
    return _engine._stats().get("trampolines_kept", 0)


before, after = functions(), functions()
first_calls(before)
sys.settrace(trace)
result = outer()
sys.settrace(None)
kept = kept_count()
first_calls(after)
M.set_local_events(3, outer.__code__, 0)
for f in before + after:
    M.set_local_events(4, f.__code__, 0)
print(json.dumps({"result": result, "kept": kept, "kept_after": kept_count()}))
"""


def test_kept_trampoline_needed_again_costs_nothing(tmp_path: Any) -> None:
    """A trampoline kept for a frame standing in it, whose code needs it
    again before the frame leaves, counts as a plain armed one: it is not
    left among the kept ones, which every landing settles (thousands of
    first calls cost quadratic time when it was)."""
    out = run(tmp_path, STILL_NEEDED_AFTER_ALL, "opcode", 0)
    assert out["result"] == [1, 2]
    assert (out["kept"], out["kept_after"]) == (0, 0), out


# As LEFT_BY_AN_EXCEPTION, on another thread: its trace function raises at
# the trampoline, which the thread's removal of that trace function (the
# audit event "sys.settrace") finds the frame still standing in, before it
# unwinds.  The main thread, traced all along and setting no trace function
# since, then runs the code: it sees what it saw before monitoring started.
LEFT_ON_ANOTHER_THREAD = """
import json, sys, threading
if sys.version_info < (3, 12):
    import lowimpact
    lowimpact.install()
M = sys.monitoring
E = M.events
M.use_tool_id(3, "t")
M.register_callback(3, E.LINE, lambda *a: None)
when = int(sys.argv[2])
state = {"armed": False, "seen": 0, "raised": False}


class Boom(Exception):
    pass


def key(v):
    if state["armed"] and state["seen"] == 0:
        M.set_events(3, E.LINE)
        state["seen"] = 1
    return v


def outer():
    y = sorted([2, 1], key=key)
    return y


def raising_trace(frame, event, arg):
    if frame.f_code is outer.__code__:
        frame.f_trace_opcodes = True
        if state["seen"] and event == "opcode":
            state["seen"] += 1
            if state["seen"] == when + 1:
                M.set_events(3, 0)
                raise Boom
    return raising_trace


def thread_main():
    sys.settrace(raising_trace)
    state["armed"] = True
    try:
        outer()
    except Boom:
        state["raised"] = True
    state["armed"] = False


seen = []
def trace(frame, event, arg):
    if frame.f_code is outer.__code__:
        seen.append((event, frame.f_lasti, frame.f_lineno))
    return trace


sys.settrace(trace)
outer()
before = list(seen)
thread = threading.Thread(target=thread_main)
thread.start()
thread.join()
seen.clear()
outer()
sys.settrace(None)
print(json.dumps({"result": seen == before or [before, seen], "raised": state["raised"]}))
"""


@pytest.mark.parametrize("when", range(1, 9))
def test_trampoline_left_by_an_exception_on_another_thread(tmp_path: Any, when: int) -> None:
    out = run(tmp_path, LEFT_ON_ANOTHER_THREAD, "opcode", when)
    assert out["raised"] or sys.version_info[:2] != (3, 11)  # trampolines: 3.11 only
    assert out["result"] is True



# A subinterpreter sets a trace function of its own after monitoring went
# off, as the frame stands in the trampoline (mode "subinterpreter"): the
# audit event "sys.settrace" comes from an interpreter whose threads do not
# include the frame, which must still find its trampoline there.
@pytest.mark.parametrize("when", range(1, 7))
def test_subinterpreter_setting_a_trace_function_leaves_the_trampoline(tmp_path: Any,
                                                                       when: int) -> None:
    out = run(tmp_path, IN_A_CALL, "subinterpreter", when)
    assert out["result"] == [1, 2]
