"""A main thread parked in a class's __init__ called by a specialised call
(3.13's CALL_ALLOC_AND_ENTER_INIT, which pushes a shim frame of a code
object of its own, _Py_InitCleanup, between the caller's frame and
__init__'s), for the stack reader's tests.  ``python initshim.py`` prints
"ready" from __init__ and waits there until its stdin closes."""

import sys


class Made:
    def __init__(self, park):
        if park:
            # (One line: the stack is the same before and after the print.)
            print("ready", flush=True); sys.stdin.read()  # noqa: E702  # at: init


def make(park):
    return Made(park)  # at: make


for _ in range(1000):  # (enough calls for the call to be specialised)
    make(False)
make(True)  # at: module
