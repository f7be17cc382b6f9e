"""The bytecode format of the running interpreter, for :mod:`.arcs`.

Chosen once, here: :mod:`.bytecode39` (CPython 3.9: 3.10's, with jumps
counted in bytes), :mod:`.bytecode310` (CPython 3.10: a block stack, no
columns) or :mod:`.bytecode311` (3.11+: an exception table, columns).
Each module gives the same small interface:

``JUMP_BYTES``
    bytes per unit of a jump instruction's argument;
``MID_LINE_ENTRY``
    whether line tracing (coverage.py's C tracer) reports a line that a
    forward jump enters past its start (3.10+), or only at a line's start
    in the line table and wherever a backward jump lands (3.9);
``FALLS_THROUGH``
    names of jump instructions that go on to the next instruction when
    executed (they only name a handler);
``BRANCHES``
    branch instructions of that format alone: name -> (what the jump
    means, what going on means);
``line_ranges(code)``
    ``code.co_lines()``: its ``(start, end, line)`` ranges of bytes;
``handlers(code)``
    ``[(start, end, target)]``: the handler an exception raised at an
    offset in ``[start, end)`` goes to, innermost first;
``positions(code, units)``
    ``(line, end_line, col, end_col)`` of each code unit of *units* (as
    ``co_positions()`` gives them), or None where the format has no columns.
``locate(code, points)``
    gives the branch points of *code* that ``positions`` could not place
    their columns (and 3.11's meanings) by other means; False if it could
    not.
"""

import sys

if sys.version_info >= (3, 11):
    from lowimpact.tools.cover.bytecode311 import (BRANCHES, FALLS_THROUGH, JUMP_BYTES,
                                                   MID_LINE_ENTRY, handlers, line_ranges,
                                                   locate, positions)
elif sys.version_info >= (3, 10):
    from lowimpact.tools.cover.bytecode310 import (BRANCHES, FALLS_THROUGH, JUMP_BYTES,
                                                   MID_LINE_ENTRY, handlers, line_ranges,
                                                   locate, positions)
else:
    from lowimpact.tools.cover.bytecode39 import (BRANCHES, FALLS_THROUGH, JUMP_BYTES,
                                                  MID_LINE_ENTRY, handlers, line_ranges,
                                                  locate, positions)

__all__ = ["BRANCHES", "FALLS_THROUGH", "JUMP_BYTES", "MID_LINE_ENTRY", "handlers",
           "line_ranges", "locate", "positions"]
