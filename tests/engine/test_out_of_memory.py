"""The engine out of memory: a MemoryError where an allocation fails, then
business as usual.

Each attempt turns LINE on, makes one allocation fail somewhere in the calls
that follow (where an update left for later brings frames into line, builds
copies, lands frames), and checks that the program saw a MemoryError or
nothing, never an error without its exception, and that events come and go
as asked afterwards.  A child process runs the attempts: a crash fails the
test rather than the suite.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_testcapi = pytest.importorskip("_testcapi")

CHILD = r"""
import sys, _testcapi
from lowimpact import monitoring as M
E = M.events
T = 3
M.use_tool_id(T, "oom")
keep = [eval("lambda: %d" % i) for i in range(2000)]

def gen():
    for i in range(3):
        yield i

def tick(x):
    return x + 1

lines = []

def on_line(code, line):
    if code is tick.__code__:
        lines.append(line)

M.register_callback(T, E.LINE, on_line)

def drive(g):
    for i in range(300):
        tick(i)
    list(g)

def attempt(start):
    g = gen()
    next(g)
    M.set_events(T, E.LINE)
    failed = None
    try:
        # (From the first line in the try block on: the failed allocation
        # may be a callback's, whose exception comes from the next line.)
        _testcapi.set_nomemory(start, start + 1)
        drive(g)
    except MemoryError:
        pass
    except BaseException as exc:
        failed = exc
    finally:
        _testcapi.remove_mem_hooks()
    if failed is not None:
        sys.exit("allocation %d: %r" % (start, failed))
    lines.clear()
    tick(1)
    if not lines:
        sys.exit("allocation %d: no LINE event afterwards" % start)
    M.set_events(T, 0)
    lines.clear()
    tick(1)
    if lines:
        sys.exit("allocation %d: LINE events after set_events(0)" % start)

for start in range(int(sys.argv[1]), int(sys.argv[2])):
    attempt(start)
"""


@pytest.mark.parametrize("first", range(0, 400, 100))
def test_failed_allocation_raises_memory_error(first: int) -> None:
    result = subprocess.run([sys.executable, "-c", CHILD, str(first), str(first + 100)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
