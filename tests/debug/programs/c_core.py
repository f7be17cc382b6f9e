"""Counts the calls of the debugger's Python callbacks, per thread, where
its C callbacks answer the events: the first pass of code in a file with a
breakpoint elsewhere, and a 'next' over a call that runs the stopped
function's own code in many frames while another thread runs it too."""

import io
import os
import sys
import tempfile
import threading

from lowimpact.debug import Pdb
from callback_counter import calls

FUNCTIONS = 50
SOURCE = "def never():\n    return 0\n\n" + "".join(
    "def f%d(x):\n    y = x + 1\n    for j in range(3):\n        y += j\n    return y\n\n" % i
    for i in range(FUNCTIONS))


def walk(n, top):
    total = 0
    if top:
        total = walk(n, False)  # the stop, then 'next' over it
        return total
    for i in range(n):
        try:
            raise KeyError(i)
        except KeyError:
            total += 1 if i % 2 else walk(0, False)
    return total


stop = threading.Event()
started = threading.Event()


def other_thread():
    started.set()
    while not stop.is_set():
        walk(20, False)


counts = {}


def run(path):
    before = len(calls)
    namespace = {}
    exec(compile(SOURCE, path, "exec"), namespace)
    for i in range(FUNCTIONS):
        namespace["f%d" % i](i)
    counts["first pass"] = [name for name, _ in calls[before:]]
    worker = threading.Thread(target=other_thread)
    worker.start()
    started.wait()
    before = len(calls)
    walk(300, True)
    stop.set()
    worker.join()
    counts["next"] = len(calls) - before
    counts["other thread"] = sum(ident == worker.ident for _, ident in calls)


folder = tempfile.mkdtemp()
path = os.path.join(folder, "many.py")
with open(path, "w") as out:
    out.write(SOURCE)
first = walk.__code__.co_firstlineno
commands = ["b %s:2" % path, "b %d" % (first + 3), "c", "n", "c"]
debugger = Pdb(stdin=io.StringIO("".join(c + "\n" for c in commands)), stdout=io.StringIO(),
               readrc=False)
debugger.runcall(run, path)
os.remove(path)
os.rmdir(folder)
shown = [line for line in debugger.stdout.getvalue().splitlines() if line.startswith("-> ")]
sys.stdout.write("stops: %r\n" % shown)
sys.stdout.write("counts: %r\n" % sorted(counts.items()))
