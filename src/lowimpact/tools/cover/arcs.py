"""From what the C core records to what coverage.py's reporting reads.

The core records, per code object, the lines that ran and, per branch
instruction, the destination offsets that ran.  coverage.py's reporting
(7.17) reads line arcs: ``(line, line)`` for a line that ran (it resolves
such a self-arc to the line's only possible exit), and ``(from, to)`` for
the directions of lines with several exits, where ``to`` is the next line
executed, or ``-co_firstlineno`` when the code object returns first.

A branch direction becomes an arc by following the bytecode from the
destination, through unconditional jumps and raises (to their handler in
the exception table, or out of the frame), to the first instruction of
another statement (a new line) or to a return.  A trail that reaches
another conditional branch of the same statement gives no arc: that branch
reports its own directions.

This runs once per recorded (source, destination) pair when the data is
saved, never per event.
"""

from __future__ import annotations

import dis
import types
from typing import Callable, Dict, List, Optional, Set, Tuple

__all__ = ["Arc", "BranchPoint", "CodeMap"]

Arc = Tuple[int, int]

_UNCONDITIONAL = {
    name
    for name in (
        "JUMP_FORWARD",
        "JUMP_BACKWARD",
        "JUMP_BACKWARD_NO_INTERRUPT",
        "JUMP_ABSOLUTE",
        "JUMP_NO_INTERRUPT",
        "JUMP",
    )
    if name in dis.opmap
}
_RETURNS = {name for name in ("RETURN_VALUE", "RETURN_CONST") if name in dis.opmap}
_NO_FALL_THROUGH = {name for name in ("RERAISE", "RAISE_VARARGS") if name in dis.opmap}
_JUMPS = set(dis.hasjrel) | set(dis.hasjabs)

# The branch instructions the monitoring BRANCH event reports (3.11's engine
# and 3.12/3.13 natively), with what each direction means for the value
# tested: (when it jumps, when it goes on to the next instruction).
_BRANCH_MEANINGS = {
    "FOR_ITER": ("exhausted", "next item"),
    "POP_JUMP_IF_FALSE": ("false", "true"),
    "POP_JUMP_IF_TRUE": ("true", "false"),
    "POP_JUMP_IF_NONE": ("None", "not None"),
    "POP_JUMP_IF_NOT_NONE": ("not None", "None"),
    "POP_JUMP_FORWARD_IF_FALSE": ("false", "true"),
    "POP_JUMP_FORWARD_IF_TRUE": ("true", "false"),
    "POP_JUMP_FORWARD_IF_NONE": ("None", "not None"),
    "POP_JUMP_FORWARD_IF_NOT_NONE": ("not None", "None"),
    "POP_JUMP_BACKWARD_IF_FALSE": ("false", "true"),
    "POP_JUMP_BACKWARD_IF_TRUE": ("true", "false"),
    "POP_JUMP_BACKWARD_IF_NONE": ("None", "not None"),
    "POP_JUMP_BACKWARD_IF_NOT_NONE": ("not None", "None"),
    "JUMP_IF_FALSE_OR_POP": ("false", "true"),
    "JUMP_IF_TRUE_OR_POP": ("true", "false"),
}


class BranchPoint:
    """One branch instruction: where it is in the source and its two ways on."""

    __slots__ = ("offset", "line", "col", "end_col", "jump_target", "next_offset", "meanings")

    def __init__(
        self,
        offset: int,
        line: int,
        col: Optional[int],
        end_col: Optional[int],
        jump_target: int,
        next_offset: int,
        meanings: Tuple[str, str],
    ) -> None:
        self.offset = offset
        self.line = line
        self.col = col
        self.end_col = end_col
        self.jump_target = jump_target
        self.next_offset = next_offset
        self.meanings = meanings

    def direction(self, destination: int) -> int:
        """0 for the jump, 1 for going on, given a BRANCH event's destination.

        An exhausted ``FOR_ITER`` reports the instruction after the loop's
        clean-up, not its own jump target, so anything but the next
        instruction is the jump.
        """
        return 1 if destination == self.next_offset else 0


class CodeMap:
    """The bytecode of one code object, read once, for resolving its arcs.

    *first_line* maps a line to the first line of its statement (coverage.py
    reports multi-line statements by their first line).
    """

    def __init__(self, code: types.CodeType, first_line: Callable[[int], int] = lambda n: n) -> None:
        self.code = code
        self.first_line = first_line
        self.instructions: Dict[int, dis.Instruction] = {}
        self.following: Dict[int, int] = {}
        previous: Optional[int] = None
        for instruction in dis.get_instructions(code):
            self.instructions[instruction.offset] = instruction
            if previous is not None:
                self.following[previous] = instruction.offset
            previous = instruction.offset
        # (start, end, handler) of the exception table: where a raise goes.
        self.handlers: List[Tuple[int, int, int]] = [
            (entry.start, entry.end, entry.target)
            for entry in getattr(dis.Bytecode(code), "exception_entries", ())
        ]
        self.line_at: Dict[int, int] = {}
        for start, end, line in code.co_lines():
            if line is not None:
                for offset in range(start, end, 2):
                    self.line_at[offset] = line

    def _statement_line(self, offset: int) -> Optional[int]:
        line = self.line_at.get(offset)
        return None if line is None else self.first_line(line)

    def arc(self, source: int, destination: int) -> Optional[Arc]:
        """The line arc of the branch at *source* going to *destination*, or
        None when the trail meets another branch of the same statement."""
        from_line = self._statement_line(source)
        if from_line is None:
            return None
        offset: Optional[int] = destination
        seen: Set[int] = set()
        while offset is not None and offset in self.instructions and offset not in seen:
            seen.add(offset)
            line = self._statement_line(offset)
            if line is not None and line != from_line:
                return (from_line, line)
            instruction = self.instructions[offset]
            name = instruction.opname
            if name in _UNCONDITIONAL:
                offset = instruction.argval
                continue
            if name in _RETURNS:
                return (from_line, -self.code.co_firstlineno)
            if name in _NO_FALL_THROUGH:
                # A raise goes to its handler (the except clause, a with's
                # exit, a clean-up that re-raises), or out of the frame.
                offset = self._handler(offset)
                if offset is None:
                    return (from_line, -self.code.co_firstlineno)
                continue
            if instruction.opcode in _JUMPS:
                return None
            offset = self.following.get(offset)
        return None

    def _handler(self, offset: int) -> Optional[int]:
        for start, end, target in self.handlers:
            if start <= offset < end:
                return target
        return None

    def sequential_arcs(self, ran: Set[int]) -> Set[Arc]:
        """Arcs between statements that follow each other with no branch
        instruction between them, where both ran (*ran*: first lines).

        LINE is disabled after a line's first run, so the core does not see
        one statement going on to the next; for a statement with a single
        exit coverage.py infers it from the self-arc, but a statement such as
        ``class C: pass`` has two exits (the class body's end, the next
        statement), and the step to the next statement must be recorded.  A
        statement that ran with a successor that ran is taken to have gone on
        to it, as it does unless it raised every time.
        """
        arcs: Set[Arc] = set()
        run_line: Optional[int] = None
        after_branch = False
        seen_lines: Set[Optional[int]] = set()
        branch_targets = {
            instruction.argval
            for instruction in self.instructions.values()
            if instruction.opname in _BRANCH_MEANINGS
        }
        for offset, instruction in self.instructions.items():
            line = self._statement_line(offset)
            if line != run_line:
                # Another run of a line that ran elsewhere, entered where a
                # branch goes (the clean-up of a `for` loop that only its
                # exhaustion reaches): whether it ran, the BRANCH events say.
                after_branch = line in seen_lines and offset in branch_targets
                run_line = line
                seen_lines.add(line)
            if line is None or line not in ran or after_branch:
                continue
            name = instruction.opname
            if name in _BRANCH_MEANINGS:
                # What follows a conditional jump in the statement's run of
                # instructions may never have run (3.12 puts `if`'s jump back
                # to the loop there); the BRANCH events tell what did.
                after_branch = True
                continue
            if name in _UNCONDITIONAL:
                destination = instruction.argval
            elif instruction.opcode in _JUMPS or name in _RETURNS or name in _NO_FALL_THROUGH:
                continue
            else:
                destination = self.following.get(offset)
            if destination is None:
                continue
            next_line = self._statement_line(destination)
            if next_line is not None and next_line != line and next_line in ran:
                arcs.add((line, next_line))
        return arcs

    def exit_arc(self, offset: int) -> Optional[Arc]:
        """The arc of a frame returning or yielding at *offset*."""
        line = self._statement_line(offset)
        return None if line is None else (line, -self.code.co_firstlineno)

    def branch_points(self) -> List[BranchPoint]:
        """Every branch instruction of the code object, in offset order.

        A conditional jump is placed where the value it tests is computed
        (the instruction before it): its own location is the whole statement
        on 3.11, and ``if not x`` compiles to a jump on ``x`` being true, so
        the value tested is ``x``, not the statement.  ``FOR_ITER`` has the
        iterable's location itself.
        """
        points = []
        previous: Optional[dis.Instruction] = None
        for offset, instruction in self.instructions.items():
            tested, previous = previous, instruction
            meanings = _BRANCH_MEANINGS.get(instruction.opname)
            line = self.line_at.get(offset)
            if meanings is None or line is None:
                continue
            located = instruction
            if instruction.opname != "FOR_ITER" and tested is not None:
                located = tested
            positions = getattr(located, "positions", None)
            col = getattr(positions, "col_offset", None)
            end_col = getattr(positions, "end_col_offset", None)
            if positions is None or positions.lineno != line:
                col = end_col = None   # not on the branch's own line: no columns
            elif positions.end_lineno != positions.lineno:
                end_col = None   # the value spans lines: from col on
            next_offset = self.following.get(offset, offset + 2)
            points.append(
                BranchPoint(offset, line, col, end_col, instruction.argval, next_offset, meanings)
            )
        return points
