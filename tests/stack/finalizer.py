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


def returns(*args):
    held = Finalized()  # noqa: F841 (finalized when the frame is cleared)
    return 1


if sys.argv[1:] == ["from-c"]:
    # (The returning frame called from C: an entry frame below it.)
    list(map(returns, [1]))  # at: caller_c
else:
    returns()  # at: caller
