"""A breakpoint stops the thread that reaches it while another thread is
stepping through the same function (lowimpact debug's promise: breakpoints
in every thread, as test_oracle.test_thread_stops_where_it_breaks checks
when no thread steps)."""

from __future__ import annotations

import sys

import pytest

from .helpers import LOWIMPACT, PROGRAMS, session

pytestmark = pytest.mark.skipif(sys.version_info < (3, 9),
                                reason="lowimpact.monitoring needs CPython 3.9+")


def test_breakpoint_in_a_thread_while_another_steps(tmp_path):
    # The main thread stops at the breakpoint in work() and steps to the
    # line that lets the worker run work() and waits for it; the last 'n'
    # steps over that wait, during which the worker reaches the breakpoint.
    out = session(LOWIMPACT, [str(PROGRAMS / "step_beside_thread.py")],
                  ["b 9", "c", "p tag", "n", "n", "n", "n", "p tag", "q"], tmp_path)
    assert "(Pdb) 'main'" in out
    assert "(Pdb) 'worker'" in out, out
