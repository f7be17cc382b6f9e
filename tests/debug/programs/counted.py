"""Counts the debugger's callbacks while a hot function with a never-hit
breakpoint runs, after the debugger stopped in it and continued."""

import io
import sys

from lowimpact.debug import Pdb
from callback_counter import calls


def hot(n):
    total = 0
    for i in range(n):
        total += i % 7
        if total < 0:
            total = -total
    return total


seen = {}


def run():
    hot(10)
    for n in (1000, 100000):
        before = len(calls)
        hot(n)
        seen[n] = len(calls) - before


first = hot.__code__.co_firstlineno
commands = ["b %d" % (first + 5), "tbreak %d" % (first + 1), "c", "n", "n", "c"]
debugger = Pdb(stdin=io.StringIO("".join(c + "\n" for c in commands)), stdout=io.StringIO(),
               readrc=False)
debugger.runcall(run)
sys.stdout.write("stopped in hot: %s\n" % ("hot()" in debugger.stdout.getvalue()))
sys.stdout.write("callbacks per call: %s\n" % sorted(seen.items()))
