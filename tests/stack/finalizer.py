"""A main thread parked in a finalizer that a function's return runs, for
the stack reader's tests: the interpreter unlinks the returning frame,
then clears its locals, whose __del__ runs in a frame pushed above the
returning one, not where its caller's frame ends.  ``python finalizer.py``
prints "ready" from the finalizer and waits there until its stdin closes."""

import sys


class Finalized:
    def __del__(self):
        # (One line: the stack is the same before and after the print.)
        print("ready", flush=True); sys.stdin.read()  # noqa: E702  # at: finalizer


def returns():
    held = Finalized()  # noqa: F841 (finalized when the frame is cleared)
    return 1


returns()  # at: caller
