"""The program of the debugpy sessions (test_sessions.py): argv[1] picks a
part.  Lines the sessions stop at carry a ``# at: NAME`` marker."""

import os
import sys
import time


def first_call(x):
    y = x * 2  # at: first_call
    return y + 1


def square(n):
    result = n * n  # at: square
    return result  # at: square_return


def hot(n):
    total = 0
    for i in range(n):
        total += square(i) % 7  # at: hot_loop
    return total


def stepping(a):
    b = square(a)  # at: step_start
    c = b + 1  # at: step_next
    return c


def tick(i):
    return i + 1  # at: tick


def spin(ready, flag, limit):
    """Loop until *flag* exists (or *limit* seconds passed), having said
    that it runs by creating *ready*."""
    open(ready, "w").close()
    i = 0
    deadline = time.monotonic() + limit
    while not os.path.exists(flag) and time.monotonic() < deadline:
        i = tick(i)  # at: spin_loop
    return i


def caught(x):
    try:
        raise ValueError("bad %d" % x)  # at: raise
    except ValueError:
        return -1


def crash(x):
    return {}[x]  # at: crash


part = sys.argv[1]
start = first_call(3)  # at: module
if part == "calls":
    print(hot(300), stepping(4))
elif part == "spin":
    print(spin(sys.argv[2], sys.argv[3], 20.0) > 0)
elif part == "caught":
    print(caught(5))
elif part == "crash":
    crash("key")
print("end", start)  # at: end
