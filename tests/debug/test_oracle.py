"""Scripted sessions: the same program and the same commands on stdin under
stdlib pdb (the oracle, on this interpreter) and ``lowimpact debug`` must
print the same stops, locations and values."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from .helpers import LOWIMPACT, PDB, PROGRAMS, compare, env_for, session

pytestmark = pytest.mark.skipif(sys.version_info < (3, 9),
                                reason="lowimpact.monitoring needs CPython 3.9+")

SESSIONS = {
    # break (function), condition, where, next, p, return, step, quit
    "break-condition-return": ("basic.py", [
        "b square", "c", "p x", "where", "n", "n", "p y", "c",
        "condition 1 x == 3", "c", "p x", "return", "next", "n", "step", "q"]),
    # tbreak, ignore, disable/enable, clear, commands, until, up/down
    "tbreak-ignore-commands": ("loops.py", [
        "b 10", "ignore 1 2", "c", "p i, total", "until", "until", "until",
        "tbreak 14", "disable 1", "c", "s", "s", "s", "s", "up", "p total", "down",
        "enable 1", "cl 1", "b 16", "commands 3", "p exc", "end", "c", "c", "q"]),
    # step into calls and generators, yield from, --Call--/--Return--
    "step-generators": ("gens.py", [
        "b count", "c"] + ["s"] * 10 + ["r"] * 6 + ["s"] * 10 + ["q"]),
    # next/return through coroutines, Internal StopIteration, clear all
    "next-coroutines": ("gens.py", [
        "b 6", "c"] + ["n"] * 10 + ["clear", "y", "b 17", "c", "where"] + ["n"] * 6
        + ["c", "c", "c", "q"]),
    # uncaught exception: post-mortem, its stack, then restart by 'c'
    "post-mortem": ("loops.py", ["c", "p n", "where", "up", "p n", "c", "q"]),
    # restart, and the breakpoints that survive it
    "restart": ("loops.py", ["b 14", "c", "restart", "c", "c", "c", "q"]),
    # breakpoint() in the program; pp, display/undisplay, up/down
    "breakpoint-display": ("bp_call.py", [
        "c", "p v", "n", "up", "pp data", "display data['a']", "down", "n", "n",
        "undisplay", "c"]),
    # interact: a console in the frame's namespace, then back
    "interact": ("basic.py", ["b 3", "c", "interact", "y * 100", "", "p y", "q"]),
    # jump (f_lineno) backwards and forwards in a loop
    "jump": ("loops.py", [
        "b 10", "c", "n", "n", "n", "until", "until", "until", "p total, i", "jump 9", "n",
        "p total, i", "n", "n", "p total, i", "jump 12", "n", "n", "q"]),
    # loops on one line: each pass is a line of its own for pdb
    "one-line-loops": ("oneline.py", ["b 3", "c", "c", "n", "n", "n", "p x", "cl 1",
                                      "b 4", "c", "c", "disable 2", "n", "n", "p x", "q"]),
    # beside another monitoring tool of the program's own (COVERAGE_ID)
    "beside-a-tool": ("beside.py", ["b 15", "c", "p i", "n", "n", "n", "cl 1", "c", "q"]),
    # until with a line number, from the first line
    "until-lineno": ("loops.py", ["until 12", "p total", "n", "s", "s", "q"]),
    # next, return and until in a recursive function: the deeper frames run
    # the stepped code (their events answered in C) and stop only at a
    # breakpoint
    "recursion": ("recursive.py", [
        "tbreak 9", "c", "b 11", "n", "where", "p depth", "n", "n", "n", "p depth", "cl 2",
        "r", "n", "p depth", "until", "n", "n", "tbreak 9", "c", "n", "p total", "c", "q"]),
    # a breakpoint set while its generator is suspended stops it when resumed
    "suspended-generator": ("suspended.py", ["b 10", "c", "b 3", "c", "p x", "n", "p x", "c",
                                             "q"]),
}


def _pdb39_stale_module_line(text: str) -> str:
    """3.9's pdb shows loops.py's module frame at line 1 after the exception.

    After 'c' the frame keeps pdb's f_trace (bdb deletes it, the trace
    trampoline sets it back from the 'line' callback's result) while
    sys.settrace(None) stops the line events that keep f_lineno current, and
    3.9's PyFrame_GetLineNumber returns the f_lineno field whenever f_trace is
    set (3.10 recomputes it), so the traceback and 'where' name the line the
    session started at.  The program is at line 21 (``fail(7)``), where
    lowimpact debug, which sets no f_trace, and pdb on 3.10+ put it.
    """
    traceback = ('loops.py", line 1, in <module>\n    def fail(n):',
                 'loops.py", line 21, in <module>\n    fail(7)')
    stop = ("loops.py(1)<module>()\n-> def fail(n):", "loops.py(21)<module>()\n-> fail(7)")
    parts = text.split(stop[0])
    # Line 1 is right at the first stop and after the restart; the stops
    # of 'where' and 'up' in between are the stale ones.
    assert text.count(traceback[0]) == 1 and len(parts) == 5, \
        "3.9's pdb no longer shows the stale line as expected"
    text = (parts[0] + stop[0] + parts[1] + stop[1] + parts[2] + stop[1] + parts[3] + stop[0]
            + parts[4])
    return text.replace(traceback[0], traceback[1])


# pdb faults of one version, corrected in its transcript before comparing.
PDB_FAULTS = {(3, 9): {"post-mortem": _pdb39_stale_module_line}}


@pytest.mark.parametrize("name", sorted(SESSIONS))
def test_session_as_pdb(name, tmp_path):
    program, commands = SESSIONS[name]
    out = compare([str(PROGRAMS / program)], commands, tmp_path,
                  fix_pdb=PDB_FAULTS.get(sys.version_info[:2], {}).get(name))
    assert "(Pdb)" in out


def test_pdb_options(tmp_path):
    """-c commands run at the first stop, as pdb's; -m runs a module."""
    compare(["-c", "b 10", "-c", "c", str(PROGRAMS / "loops.py")], ["p i", "q"], tmp_path)
    (tmp_path / "modprog.py").write_text("x = 1\ny = x + 1\nprint('y', y)\n")
    compare(["-m", "modprog"], ["n", "n", "p x", "c", "q"], tmp_path)


def test_missing_script(tmp_path):
    compare([str(tmp_path / "nowhere.py")], [], tmp_path)


@pytest.mark.parametrize("target, error", [
    (["-m", "no_such_module_here"], "ImportError: No module named no_such_module_here"),
    (["."], "Error: . is a directory"),
])
def test_bad_target(tmp_path, target, error):
    """An unknown module or a directory: one line saying so, exit status 1,
    as 3.11's pdb (3.9's and 3.10's print a traceback: there the line is
    lowimpact's, in 3.11's words)."""
    proc = subprocess.run([sys.executable, *LOWIMPACT, *target], input="q\n",
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env=env_for(tmp_path))
    assert (proc.returncode, proc.stdout + proc.stderr) == (1, error + "\n")
    if sys.version_info >= (3, 11):
        assert compare(target, ["q"], tmp_path) == error


def test_help(tmp_path):
    """-h prints pdb's help; up to 3.12 its usage line names this command."""
    expected = session(PDB, ["-h"], [], tmp_path)
    if sys.version_info < (3, 13):
        assert expected.startswith("usage: pdb.py ")
        expected = expected.replace("usage: pdb.py ", "usage: python -m lowimpact debug ", 1)
    assert session(LOWIMPACT, ["-h"], [], tmp_path) == expected


def test_set_trace_and_post_mortem_calls(tmp_path):
    """lowimpact.debug.set_trace(header=...) and post_mortem() called by the
    program stop, step and show the traceback as pdb's functions do."""
    commands = ["n", "s", "n", "p q", "c", "p a, b", "where", "up", "p total", "q"]
    program = [str(PROGRAMS / "direct.py")]
    expected = session(program, ["pdb"], commands, tmp_path)
    actual = session(program, ["lowimpact.debug"], commands, tmp_path)
    assert "-- entering --" in expected and "(Pdb) (2.0, 0)" in expected
    assert actual == expected


def test_set_trace_hook(tmp_path):
    """PYTHONBREAKPOINT=lowimpact.debug.set_trace makes breakpoint() stop
    as PYTHONBREAKPOINT=pdb.set_trace does."""
    commands = ["p v", "n", "n", "n", "where", "c"]
    program = [str(PROGRAMS / "bp_call.py")]
    expected = session([], program, commands, tmp_path,
                       env_for(tmp_path, {"PYTHONBREAKPOINT": "pdb.set_trace"}))
    actual = session([], program, commands, tmp_path,
                     env_for(tmp_path, {"PYTHONBREAKPOINT": "lowimpact.debug.set_trace"}))
    assert actual == expected
    assert "(Pdb)" in actual


def test_thread_stops_where_it_breaks(tmp_path):
    """A breakpoint in a thread stops that thread (pdb's sys.settrace sees
    only the main thread): the stops are those of pdb on the same function
    run in the main thread."""
    commands = ["b 7", "c", "p i, total", "n", "n", "p total", "cl 1", "c", "q"]
    expected = session(["-m", "pdb"], [str(PROGRAMS / "threads.py"), "inline"], commands, tmp_path)
    actual = session(LOWIMPACT, [str(PROGRAMS / "threads.py")], commands, tmp_path)
    assert actual == expected
    name = session(LOWIMPACT, [str(PROGRAMS / "threads.py")],
                   ["b 7", "c", "p threading.current_thread().name", "q"], tmp_path)
    assert "'worker-thread'" in name


def test_breakpoint_reaches_running_loop(tmp_path):
    """A breakpoint set while the main thread runs a loop that started
    before it (here from a breakpoint() in another thread) stops that loop
    on its next pass."""
    out = session(LOWIMPACT, ["-c", "c", str(PROGRAMS / "spin.py")],
                  ["b 9", "c", "p state['passes'] > 0", "state['stop'] = True", "c", "q"],
                  tmp_path)
    helper_stop = out.index("spin.py(1")  # the helper thread's breakpoint()
    loop_stop = out.index("spin.py(9)spin()\n-> state[\"passes\"] += 1", helper_stop)
    assert "(Pdb) True" in out[loop_stop:]
    assert "spun True" in out[loop_stop:]


def test_tool_id_taken(tmp_path):
    """DEBUGGER_ID held by another tool: a clear error, no stop."""
    proc = subprocess.run([sys.executable, str(PROGRAMS / "busy.py")], input="c\n",
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env=env_for(tmp_path, {"PYTHONBREAKPOINT": "lowimpact.debug.set_trace"}))
    assert proc.returncode == 1
    assert ("DebuggerBusy: sys.monitoring tool id 0 (DEBUGGER_ID) is in use by 'other debugger'"
            in proc.stderr)
    assert "(Pdb)" not in proc.stdout


def test_no_callbacks_after_stop_and_continue(tmp_path):
    """After a stop inside a hot function (a temporary breakpoint, two
    'next') and 'continue', the function's next calls with a never-hit
    breakpoint cost the debugger a few callbacks at most (lines disabled on
    their first pass), and none once they have been: not one per line run."""
    proc = subprocess.run([sys.executable, str(PROGRAMS / "counted.py")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env=env_for(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "stopped in hot: True" in proc.stdout
    counts = dict(ast.literal_eval(proc.stdout.split("callbacks per call: ")[1].strip()))
    assert counts[1000] <= 6
    assert counts[100000] == 0


def test_bad_option(tmp_path):
    proc = subprocess.run([sys.executable, *LOWIMPACT, "--bogus", str(PROGRAMS / "basic.py")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env=env_for(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--bogus" in proc.stderr
