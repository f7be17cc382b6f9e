"""``python -m lowimpact``: run programs with low-impact monitoring.

Usage::

    python -m lowimpact run   [-m] script|module [args ...]
    python -m lowimpact trace [--events NAMES] [--output FILE] [--all-code]
                              [-m] script|module [args ...]
    python -m lowimpact stack [--no-source] PID
    python -m lowimpact sample [--rate HZ] [--duration S]
                               [--format collapsed|speedscope|svg] [-o FILE]
                               (PID | -- script.py [args ...])
    python -m lowimpact debug [-c command] (script.py | -m module) [args ...]
    python -m lowimpact profile [-o FILE] [--format pstats|speedscope|collapsed|svg]
                                [-s SORT] [--limit N] [--clock wall|cpu]
                                [-m] script|module [args ...]
    python -m lowimpact <command> -h

``run`` runs a script (or, with ``-m``, a module) as ``python`` would, with
:mod:`lowimpact.monitoring` installed as ``sys.monitoring``.

``trace`` runs it and prints its ``sys.monitoring`` events, one a line, to
stderr or FILE: event, ``file:line``, function, ``@offset`` and value, source
line.  NAMES is a comma-separated list of event names (any case; ``ALL`` for
all but INSTRUCTION; default ``PY_START,PY_RESUME,PY_RETURN,PY_YIELD,LINE``).
Only the code under the script's directory is traced, not the standard
library or installed packages, unless ``--all-code`` is given.

The program's output, exit status and traceback are as without lowimpact.

``stack`` prints every thread's Python stack in a running CPython 3.9-3.13
process, read from outside without stopping it; ``sample`` samples those
stacks at a fixed rate and writes a profile (collapsed stacks, speedscope
JSON or an SVG flame graph).

``debug`` is pdb (its commands and output) on ``sys.monitoring``: breakpoints
cost nothing until they are hit (docs/DEBUG.md).

``profile`` profiles a script or module deterministically, as
``python -m cProfile`` does (same counts, same pstats file), on C callbacks.
"""

import sys

from lowimpact._cli import main

if __name__ == "__main__":
    sys.exit(main())
