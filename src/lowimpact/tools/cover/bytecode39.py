"""CPython 3.9 bytecode for :mod:`.arcs` (see :mod:`.bytecode`): the block
stack of 3.10 (:mod:`.bytecode310`), whose handlers ``dis`` gives in
bytes on both, with jump arguments counted in bytes where 3.10 counts code
units; and 3.9's line tracing, which reports a line only at its start in
``co_lnotab`` or where a backward jump lands, not where a forward jump (or
an exception) enters it past its start; no ``co_lines()``: its line
ranges from ``co_lnotab`` (:func:`lowimpact._lines.co_lines`)."""

from lowimpact._lines import co_lines as line_ranges
from lowimpact.tools.cover.bytecode310 import BRANCHES, FALLS_THROUGH, handlers, locate, positions

__all__ = ["BRANCHES", "FALLS_THROUGH", "JUMP_BYTES", "MID_LINE_ENTRY", "handlers",
           "line_ranges", "locate", "positions"]

JUMP_BYTES = 1
MID_LINE_ENTRY = False
