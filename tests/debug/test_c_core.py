"""The debugger core's C callbacks (src/debug/debug.c) answer the events
whose answer is fixed, so that pdb's Python logic runs only where it may
stop: counted on programs/c_core.py, which counts the calls of the
core's Python callbacks (all of them, before the C core)."""

from __future__ import annotations

import ast
import subprocess
import sys

from .helpers import PROGRAMS, env_for


def test_python_callbacks_only_where_pdb_may_stop(tmp_path):
    proc = subprocess.run([sys.executable, str(PROGRAMS / "c_core.py")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env=env_for(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    stops = ast.literal_eval(proc.stdout.split("stops: ")[1].split("\n")[0])
    # runcall()'s first stop, the breakpoint in the outermost walk(), and
    # 'next' over its call, which runs walk()'s code in 150 more frames.
    assert stops == ["-> before = len(calls)",
                     "-> total = walk(n, False)  # the stop, then 'next' over it",
                     "-> return total"]
    counts = dict(ast.literal_eval(proc.stdout.split("counts: ")[1].strip()))
    # 50 functions run once in a file with a breakpoint elsewhere: every
    # code object discovered and armed, every line and loop seen once,
    # answered in C (before: about 560 Python calls).
    assert counts["first pass"] == []
    # The stepped code's lines, returns and exceptions in the frames the
    # command does not stop in (15,000-17,000 before): only the events of
    # the stopped frame reach Python (its line, after a stop its return).
    assert counts["next"] <= 4
    # Another thread runs walk() all along, the stepped code included:
    # none of its events reaches Python (12,000-15,000 before).
    assert counts["other thread"] == 0
