"""CPython 3.11+ bytecode for :mod:`.arcs` (see :mod:`.bytecode`): handlers
from the exception table, columns from the location table."""

from __future__ import annotations

from lowimpact import _cover

# (Neither dis nor typing when imported: `cover run`'s program process reads
# MID_LINE_ENTRY alone before the program starts, and they cost it ~8 ms.)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from typing import Dict, Iterator, List, Optional, Sequence, Tuple

__all__ = ["BRANCHES", "FALLS_THROUGH", "JUMP_BYTES", "MID_LINE_ENTRY", "handlers",
           "line_ranges", "locate", "positions"]

# Jump arguments count code units.
JUMP_BYTES = 2
# Line tracing reports a line however it is entered.
MID_LINE_ENTRY = True

# The SETUP_* of 3.11+ are pseudo-instructions: never in co_code.
FALLS_THROUGH: frozenset = frozenset()
BRANCHES: Dict[str, Tuple[str, str]] = {}


def handlers(code: types.CodeType) -> List[Tuple[int, int, int]]:
    """The exception table's entries as ``(start, end, target)``."""
    import dis

    return [(entry.start, entry.end, entry.target)
            for entry in dis.Bytecode(code).exception_entries]


def positions(code: types.CodeType, units: Sequence[int]) -> Optional[List[tuple]]:
    """``co_positions()``'s locations of the code units *units*, read from
    the location table (which every 3.11+ has the same) as far as the last."""
    return _cover.code_locations(code.co_linetable, code.co_firstlineno, units)


def locate(code: types.CodeType, points: Sequence) -> bool:
    """Nothing to do: ``positions`` placed every point."""
    return True


def line_ranges(code: types.CodeType) -> Iterator[Tuple[int, int, Optional[int]]]:
    """``code.co_lines()``."""
    return code.co_lines()
