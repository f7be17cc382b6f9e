"""Counts the calls of the debugger core's Python callbacks (``_Core``'s
``_bp_*`` and ``_step_*`` methods): import it before the debugger starts."""

import sys
import threading

from lowimpact.tools import debug as core

#: (callback name, thread id), one per call.
calls = []


class _Sys:
    """The debugger's sys, seen from under one more frame (the counting
    wrapper) when its callbacks look for the program's frame."""

    def __getattr__(self, name):
        return getattr(sys, name)

    def _getframe(self, depth=0):
        return sys._getframe(depth + 2)


def _counting(name):
    original = getattr(core._Core, name)

    def callback(self, *args):
        calls.append((name, threading.get_ident()))
        return original(self, *args)

    return callback


core.sys = _Sys()

for _name in [n for n in vars(core._Core) if n.startswith(("_bp_", "_step_"))]:
    setattr(core._Core, _name, _counting(_name))
