"""CPython 3.10 bytecode for :mod:`.arcs` (see :mod:`.bytecode`).

3.10 has no exception table: ``SETUP_FINALLY``, ``SETUP_WITH`` and
``SETUP_ASYNC_WITH`` push a block naming their target as the handler and
go on; ``POP_BLOCK`` pops it.  Which handler protects an instruction is
the block stack there, the same on every path the compiler makes to it, so
one walk of the code finds it.  Entering a handler pops its block (and
pushes an except-handler block, which catches nothing: ``POP_EXCEPT`` pops
that one, and an exception raised meanwhile goes past it to the next
handler), so a handler runs under the blocks its ``SETUP_*`` ran under.

3.10 has no columns: :mod:`.columns310` recovers those of branch points
from the source.
"""

from __future__ import annotations

# (Neither dis, typing nor the column finder's ast when imported: `cover
# run`'s program process reads MID_LINE_ENTRY alone before the program starts.)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from typing import Dict, Iterator, List, Optional, Sequence, Tuple

__all__ = ["BRANCHES", "FALLS_THROUGH", "JUMP_BYTES", "MID_LINE_ENTRY", "handlers",
           "line_ranges", "locate", "positions"]

# Jump arguments count code units (3.9 counted bytes).
JUMP_BYTES = 2
# Line tracing reports a line however it is entered.
MID_LINE_ENTRY = True

FALLS_THROUGH = frozenset({"SETUP_FINALLY", "SETUP_WITH", "SETUP_ASYNC_WITH"})

# `except E:` tests the exception with a jump of its own (3.11 has
# CHECK_EXC_MATCH and a conditional jump instead).
BRANCHES: Dict[str, Tuple[str, str]] = {"JUMP_IF_NOT_EXC_MATCH": ("no match", "match")}

_ENDS = frozenset({"RETURN_VALUE", "RERAISE", "RAISE_VARARGS"})
_GOES_TO = frozenset({"JUMP_ABSOLUTE", "JUMP_FORWARD"})


def handlers(code: types.CodeType) -> List[Tuple[int, int, int]]:
    """``(start, end, target)``: the innermost handler of each run of
    instructions that has one (unreachable code has none)."""
    import dis

    jumps = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)
    found = list(dis.get_instructions(code))
    index = {ins.offset: i for i, ins in enumerate(found)}
    # offset -> the handlers of its block stack, innermost last
    blocks_at: Dict[int, Tuple[int, ...]] = {}
    work: List[Tuple[int, Tuple[int, ...]]] = [(0, ())]
    while work:
        offset, blocks = work.pop()
        while offset in index and offset not in blocks_at:
            blocks_at[offset] = blocks
            i = index[offset]
            ins = found[i]
            name = ins.opname
            if name in _ENDS:
                break
            if name in FALLS_THROUGH:
                work.append((ins.argval, blocks))
                blocks = blocks + (ins.argval,)
            elif name == "POP_BLOCK":
                blocks = blocks[:-1]
            elif name in _GOES_TO:
                offset = ins.argval
                continue
            elif ins.opcode in jumps:
                work.append((ins.argval, blocks))
            if i + 1 == len(found):
                break
            offset = found[i + 1].offset
    ranges: List[Tuple[int, int, int]] = []
    for ins in found:
        blocks = blocks_at.get(ins.offset)
        if not blocks:
            continue
        end = ins.offset + 2
        if ranges and ranges[-1][1] == ins.offset and ranges[-1][2] == blocks[-1]:
            ranges[-1] = (ranges[-1][0], end, blocks[-1])
        else:
            ranges.append((ins.offset, end, blocks[-1]))
    return ranges


def locate(code: types.CodeType, points: Sequence) -> bool:
    """The columns of *points* found in the source (:mod:`.columns310`)."""
    from lowimpact.tools.cover.columns310 import locate as locate_in_source

    return locate_in_source(code, points)


def positions(code: types.CodeType, units: Sequence[int]) -> Optional[List[tuple]]:
    """None: 3.10 has lines but no columns."""
    return None


def line_ranges(code: types.CodeType) -> Iterator[Tuple[int, int, Optional[int]]]:
    """``code.co_lines()``."""
    return code.co_lines()
