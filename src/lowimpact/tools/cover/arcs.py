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
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Set, Tuple

from lowimpact import _cover
from lowimpact.tools.cover import bytecode

__all__ = ["Arc", "BranchPoint", "CodeMap", "walk_in_python"]

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
# (Real instructions on 3.9 and 3.10, where they are read.)
_SETUP_FINALLY = dis.opmap.get("SETUP_FINALLY", -1)
_END_ASYNC_FOR = dis.opmap.get("END_ASYNC_FOR", -1)

# The branch instructions the monitoring BRANCH event reports (the engine on
# 3.10 and 3.11, 3.12/3.13 natively), with what each direction means for the
# value tested: (when it jumps, when it goes on to the next instruction).
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
    **bytecode.BRANCHES,
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


class _Format:
    """What the walk needs to know of each opcode byte, read once from
    :mod:`dis`'s tables (some of them private) so that it agrees with
    ``dis.get_instructions``, as tests/cover/test_arcs.py checks.

    This is the one place that knows what differs between bytecode
    versions; each table is indexed by the opcode byte as it stands in
    ``co_code``.  As in :mod:`dis`, an instruction's name is that of its own
    byte, while its argument, inline caches and jump target are those of its
    base (de-specialized) instruction.
    """

    # What an instruction does to the trail of an arc (see CodeMap.arc).
    # (src/cover/codewalk.c reads these values in the tables.)
    PLAIN, UNCONDITIONAL, RETURN, RAISE, BRANCH, OTHER_JUMP = range(6)
    # How an instruction's argument gives its jump target.
    NO_JUMP, ABSOLUTE, FORWARD, BACKWARD = range(4)

    def __init__(self) -> None:
        names = getattr(dis, "_all_opname", dis.opname)
        deopt = getattr(dis, "_deoptop", lambda op: op)
        cache_entries = getattr(dis, "_inline_cache_entries", None)
        # 3.12 added dis.hasarg; before it, an opcode has an
        # argument from HAVE_ARGUMENT on.
        has_arg = set(getattr(dis, "hasarg", range(dis.HAVE_ARGUMENT, 256)))
        jrel, jabs = set(dis.hasjrel), set(dis.hasjabs)
        # Relative jumps go backward from 3.11 on.
        backward = getattr(dis, "_is_backward_jump", lambda op: False)
        self.kind = bytearray(256)
        self.caches = bytearray(256)
        self.has_arg = bytearray(256)
        self.jump = bytearray(256)
        self.is_extended_arg = bytearray(256)
        self.meanings: List[Optional[Tuple[str, str]]] = [None] * 256
        self.for_iter = dis.opmap["FOR_ITER"]
        extended_arg = dis.opmap["EXTENDED_ARG"]
        # dis keeps EXTENDED_ARG's accumulated argument a C int.
        self.int_overflow = getattr(dis, "_INT_OVERFLOW", 2 ** 31)
        for op in range(256):
            name = names[op] if op < len(names) else "<%d>" % op
            base = deopt(op)
            if isinstance(cache_entries, dict):
                # 3.13 keys the cache sizes by name.
                self.caches[op] = cache_entries.get(names[base], 0)
            elif cache_entries is not None:
                self.caches[op] = cache_entries[base]
            self.has_arg[op] = base in has_arg
            self.is_extended_arg[op] = base == extended_arg
            if base in jabs:
                self.jump[op] = self.ABSOLUTE
            elif base in jrel:
                self.jump[op] = self.BACKWARD if backward(base) else self.FORWARD
            self.meanings[op] = _BRANCH_MEANINGS.get(name)
            if name in bytecode.FALLS_THROUGH:
                self.kind[op] = self.PLAIN
            elif name in _UNCONDITIONAL:
                self.kind[op] = self.UNCONDITIONAL
            elif name in _RETURNS:
                self.kind[op] = self.RETURN
            elif name in _NO_FALL_THROUGH:
                self.kind[op] = self.RAISE
            elif name in _BRANCH_MEANINGS:
                self.kind[op] = self.BRANCH
            elif op in _JUMPS:
                self.kind[op] = self.OTHER_JUMP
        #: The tables as ``_cover.walk_code`` takes them.
        self.tables = (bytes(self.kind), bytes(self.caches), bytes(self.has_arg),
                       bytes(self.jump), bytes(self.is_extended_arg), self.int_overflow,
                       bytecode.JUMP_BYTES, _SETUP_FINALLY)


_FORMAT = _Format()


#: What a walk of one code object gives (:func:`walk_in_python`, and
#: ``_cover.walk_code``, the same in C): the line and the statement's first
#: line of each code unit (None where none); the offsets where line tracing
#: reports a line entered by a forward step (None: anywhere); offset ->
#: opcode byte of each instruction, in order; offset -> jump target;
#: ``(offset, previous instruction's offset)`` of each branch instruction;
#: the sequential arcs that may be recorded; the runs that give theirs only
#: if no branch targets their start, as ``(start, arcs)``; and the steps
#: whose arc is known only once the walk is done, as ``(arcs they go to,
#: line, destination, whether it is a handler)``.
#: (For type checkers alone: subscripting typing's generics costs 1.8 M
#: instructions at import on 3.11.)
if TYPE_CHECKING:
    Walked = Tuple[List[Optional[int]], List[Optional[int]], Optional[Set[int]],
                   Dict[int, int], Dict[int, int], List[Tuple[int, Optional[int]]], List[Arc],
                   List[Tuple[int, List[Arc]]], List[Tuple[List[Arc], int, Optional[int], bool]]]


def walk_in_python(raw: bytes, lines: Iterable[Tuple[int, int, Optional[int]]],
                   first_line: Callable[[int], int], line_starts: bool) -> Walked:
    """One pass over the line table *lines* (``co_lines()``) of the bytecode
    *raw*, then one over its instructions (those ``dis.get_instructions``
    gives: an ``EXTENDED_ARG`` is one, inline caches are not); *line_starts*:
    whether tracing reports a line entered by a forward step only at its
    starts (3.9).  :class:`CodeMap` uses the same walk in C,
    ``_cover.walk_code``; this one is the reference the tests compare it
    with (tests/cover/test_arcs.py).

    The sequential arcs are the steps from each run of a statement's
    instructions to the next statement, up to the run's first branch
    instruction.  A run entered at a branch's target, of a statement that
    had an earlier run (the clean-up of a ``for`` loop that only its
    exhaustion reaches), gives none: whether it ran, the BRANCH events say.
    Branch targets are known at the end, so such runs are *pending* until
    then.  Where tracing reports only line starts, the steps into another
    line past its start and the exhaustion of ``async for`` (an exception,
    whose handler's first instruction has the line after the loop's on 3.9)
    are *trails*, followed at the end.
    """
    size = len(raw)
    unit_line: List[Optional[int]] = [None] * (size // 2)
    unit_statement: List[Optional[int]] = [None] * (size // 2)
    statement: Dict[int, int] = {}
    starts: Optional[Set[int]] = set() if line_starts else None
    previous_line = None
    for start, end, line in lines:
        if starts is not None and end > start:
            if line != previous_line:
                starts.add(start)
            previous_line = line
        if line is not None and end > start:
            if line not in statement:
                statement[line] = first_line(line)
            unit_line[start // 2:end // 2] = [line] * ((end - start) // 2)
            unit_statement[start // 2:end // 2] = [statement[line]] * ((end - start) // 2)
    fmt = _FORMAT
    kinds, caches, has_arg, jumps = fmt.kind, fmt.caches, fmt.has_arg, fmt.jump
    is_extended, overflow = fmt.is_extended_arg, fmt.int_overflow
    BRANCH, UNCONDITIONAL, PLAIN = fmt.BRANCH, fmt.UNCONDITIONAL, fmt.PLAIN
    ABSOLUTE, FORWARD = fmt.ABSOLUTE, fmt.FORWARD
    jump_bytes = bytecode.JUMP_BYTES
    units = len(unit_statement)
    ops: Dict[int, int] = {}
    targets: Dict[int, int] = {}
    branches: List[Tuple[int, Optional[int]]] = []
    candidates: List[Arc] = []
    pending: List[Tuple[int, List[Arc]]] = []
    trails: List[Tuple[List[Arc], int, Optional[int], bool]] = []
    setup_finally = _SETUP_FINALLY if starts is not None else -1
    into = candidates
    seen_lines: Set[Optional[int]] = set()
    run_line: Optional[int] = -1   # no line's
    skipping = True
    previous: Optional[int] = None
    offset = accumulated = 0
    while offset < size:
        op = raw[offset]
        arg = None
        if has_arg[op]:
            arg = raw[offset + 1] | accumulated
            accumulated = 0
            if is_extended[op]:
                accumulated = arg << 8
                if accumulated >= overflow:
                    accumulated -= 2 * overflow
        else:
            accumulated = 0
        following = offset + 2 + 2 * caches[op]
        ops[offset] = op
        target = None
        how = jumps[op]
        if how and arg is not None:
            if how == ABSOLUTE:
                target = arg * jump_bytes
            else:
                # A relative jump counts from after its inline caches
                # (3.12; 3.11's relative jumps have none).
                target = following + (arg * jump_bytes if how == FORWARD else -arg * jump_bytes)
            targets[offset] = target
        kind = kinds[op]
        if kind == BRANCH:
            branches.append((offset, previous))
        line = unit_statement[offset >> 1]
        if line != run_line:
            run_line = line
            if line in seen_lines:
                into = []
                pending.append((offset, into))
            else:
                into = candidates
            seen_lines.add(line)
            skipping = line is None
        if op == setup_finally and line is not None:
            trails.append((into, line, target, True))
        if not skipping:
            destination = None
            if kind == BRANCH:
                # What follows a conditional jump in the statement's run
                # of instructions may never have run (3.12 puts `if`'s
                # jump back to the loop there); the BRANCH events tell
                # what did.
                skipping = True
            elif kind == UNCONDITIONAL:
                destination = target
            elif kind == PLAIN and following < size:
                destination = following
            if destination is not None and 0 <= destination >> 1 < units:
                next_line = unit_statement[destination >> 1]
                if next_line is not None and next_line != line:
                    if starts is None or destination in starts or destination < offset:
                        into.append((line, next_line))  # type: ignore[arg-type]
                    else:
                        trails.append((into, line, destination, False))  # type: ignore
        previous = offset
        offset = following
    return (unit_line, unit_statement, starts, ops, targets, branches, candidates, pending,
            trails)


class CodeMap:
    """The bytecode of one code object, read once, for resolving its arcs.

    *first_line* maps a line to the first line of its statement (coverage.py
    reports multi-line statements by their first line).

    Everything that does not depend on what ran is computed here, in one
    walk of ``co_code``: the statement line of each code unit, the
    instructions' kinds, jump targets and successors, the sequential arcs
    that may be recorded, the branch instructions (``_cover.walk_code``; see
    :func:`walk_in_python`).  The exception table and the branch points'
    columns are read when first asked for.
    """

    def __init__(self, code: types.CodeType, first_line: Callable[[int], int] = lambda n: n) -> None:
        self.code = code
        self.first_line = first_line
        raw = code.co_code
        line_starts = not bytecode.MID_LINE_ENTRY
        walked = _cover.walk_code(raw, bytecode.line_ranges(code), first_line, line_starts,
                                  _FORMAT.tables)
        if walked is None:
            # Bytecode no compiler makes, which the C walk leaves to this one.
            walked = walk_in_python(raw, bytecode.line_ranges(code), first_line, line_starts)
        (self._unit_line, self._unit_statement, self._starts, self._op, self._target,
         branches, candidates, pending, trails) = walked
        self._size = len(raw)
        self._handlers: Optional[List[Tuple[int, int, int]]] = None
        for into, line, destination, handler in trails:
            if handler and self._op.get(destination) != _END_ASYNC_FOR:
                continue
            arc = self._trail(line, destination, handler)
            if arc is not None and arc[0] != arc[1]:
                into.append(arc)
        branch_targets = {self._target[offset] for offset, _ in branches}
        for start, arcs in pending:
            if start not in branch_targets:
                candidates.extend(arcs)
        self._branches: List[Tuple[int, Optional[int]]] = branches
        self._sequential = set(candidates)
        self._points: Optional[List[BranchPoint]] = None
        #: Whether some branch points have no columns where the format has none.
        self.columns_unknown = False
        #: :meth:`implied_directions`'s answer, once asked.
        self.implied: Optional[Dict[int, Tuple[int, int, int]]] = None

    def instructions(self) -> List[Tuple[int, int, Optional[int], Optional[int]]]:
        """``(offset, opcode, jump target, next offset)`` of each instruction,
        as read from ``co_code`` (what ``dis.get_instructions`` gives: the
        tests compare them)."""
        return [(offset, op, self._target.get(offset), self._following(offset))
                for offset, op in self._op.items()]

    def statement_line(self, offset: int) -> Optional[int]:
        """The first line of the statement of the instruction at *offset*."""
        if offset & 1 or not 0 <= offset < self._size:
            return None
        return self._unit_statement[offset >> 1]

    def arc(self, source: int, destination: int) -> Optional[Arc]:
        """The line arc of the branch at *source* going to *destination*, or
        None when the trail meets another branch of the same statement."""
        from_line = self.statement_line(source)
        if from_line is None:
            return None
        return self._trail(from_line, destination, destination < source)

    def _trail(self, from_line: int, destination: int, entered: bool) -> Optional[Arc]:
        """The line arc of a step from the statement *from_line* to
        *destination* (*entered*: by a backward jump or as an exception's
        handler), or None when the trail meets a branch."""
        fmt = _FORMAT
        kinds = fmt.kind
        starts = self._starts
        # Where tracing reports only line starts (3.9), it also reports any
        # line a backward jump lands on, even the same, and a handler's.
        entered = entered and starts is not None
        offset: Optional[int] = destination
        seen: Set[int] = set()
        while offset is not None and offset in self._op and offset not in seen:
            seen.add(offset)
            line = self.statement_line(offset)
            if line is not None and (entered or line != from_line
                                     and (starts is None or offset in starts)):
                return (from_line, line)
            kind = kinds[self._op[offset]]
            entered = False
            if kind == fmt.UNCONDITIONAL:
                target = self._target.get(offset)
                entered = starts is not None and target is not None and target < offset
                offset = target
                continue
            if kind == fmt.RETURN:
                return (from_line, -self.code.co_firstlineno)
            if kind == fmt.RAISE:
                # A raise goes to its handler (the except clause, a with's
                # exit, a clean-up that re-raises), or out of the frame.
                offset = self._handler(offset)
                if offset is None:
                    return (from_line, -self.code.co_firstlineno)
                entered = starts is not None
                continue
            if kind != fmt.PLAIN:
                return None
            offset = self._following(offset)
        return None

    def _following(self, offset: int) -> Optional[int]:
        """The instruction after the one at *offset*, None after the last."""
        following = offset + 2 + 2 * _FORMAT.caches[self._op[offset]]
        return following if following < self._size else None

    def _handler_table(self) -> List[Tuple[int, int, int]]:
        if self._handlers is None:
            self._handlers = bytecode.handlers(self.code)
        return self._handlers

    def _handler(self, offset: int) -> Optional[int]:
        for start, end, target in self._handler_table():
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
        to it, as it does unless it raised every time; one followed by a
        return (where a jump past a line's start reports no line, 3.9) is
        taken to have returned.
        """
        return {arc for arc in self._sequential if arc[0] in ran and (arc[1] in ran or arc[1] < 0)}

    def exit_arc(self, offset: int, ran: Set[int]) -> Optional[Arc]:
        """The arc of a frame returning or yielding at *offset* (*ran*: the
        first lines of the statements that ran).  Where tracing reports
        only line starts (3.9), the frame left from the last line reported,
        which is that of *offset* if that line ran, as it does unless a
        jump enters it past its start: that jump's trail gives the arc."""
        line = self.statement_line(offset)
        if line is None or self._starts is not None and line not in ran:
            return None
        return (line, -self.code.co_firstlineno)

    def implied_directions(self) -> Dict[int, Tuple[int, int, int]]:
        """The branch directions whose line arc the LINE events tell:
        ``{source: (next offset, jump's statement, going on's statement)}``,
        a statement's first line where running it means that the branch
        went that way (0 where not), for branches with at least one such.

        A direction tells its arc when its trail (as :meth:`arc` follows it)
        reaches another statement through instructions that nothing else
        reaches, and nothing outside that statement but the trail reaches
        any of its instructions: no other jump, fall-through, exception
        handler or entry of the frame.  Then the statement ran if and only
        if the branch went that way.  The collector stops a branch's events
        (DISABLE) once one way keeps repeating and the other way is implied
        so, and the arc of that way is taken from the lines at saving.
        """
        if self.implied is not None:
            return self.implied
        implied: Dict[int, Tuple[int, int, int]] = {}
        self.implied = implied
        if self._starts is not None or not self._branches:
            # (3.9's tracing reports lines only at their starts: not worth
            # following here.)
            return implied
        kinds = _FORMAT.kind
        stops = (_FORMAT.UNCONDITIONAL, _FORMAT.RETURN, _FORMAT.RAISE)
        outside = -1   # an entry from no instruction: the frame's start, an exception
        predecessors: Dict[int, List[int]] = {offset: [] for offset in self._op}
        members: Dict[int, List[int]] = {}
        for offset, op in self._op.items():
            following = self._following(offset)
            if following is not None and kinds[op] not in stops:
                predecessors[following].append(offset)
            target = self._target.get(offset)
            if target is not None and target in predecessors:
                predecessors[target].append(offset)
            line = self._unit_statement[offset >> 1]
            if line is not None:
                members.setdefault(line, []).append(offset)
        predecessors[next(iter(self._op))].append(outside)
        for _, _, handler in self._handler_table():
            if handler in predecessors:
                predecessors[handler].append(outside)

        def told_by(source: int, destination: Optional[int]) -> int:
            """The statement whose running tells that *source* went to
            *destination*, or 0."""
            from_line = self._unit_statement[source >> 1]
            previous, offset = source, destination
            trail: Set[int] = set()
            while offset is not None and offset not in trail:
                if predecessors.get(offset) != [previous]:
                    return 0
                trail.add(offset)
                line = self._unit_statement[offset >> 1]
                if line is not None and line != from_line:
                    for member in members[line]:
                        for before in predecessors[member]:
                            if (self._unit_statement[before >> 1] != line if before >= 0
                                    else True) and not (member == offset and before == previous):
                                return 0
                    return line if self.arc(source, destination) == (from_line, line) else 0
                kind = kinds[self._op[offset]]
                previous = offset
                if kind == _FORMAT.UNCONDITIONAL:
                    offset = self._target.get(offset)
                elif kind == _FORMAT.PLAIN:
                    offset = self._following(offset)
                else:
                    return 0
            return 0

        for source, _ in self._branches:
            if self._unit_statement[source >> 1] is None:
                continue
            following = self._following(source)
            jump_line = told_by(source, self._target[source])
            next_line = told_by(source, following)
            if jump_line or next_line:
                implied[source] = (following if following is not None else source + 2,
                                   jump_line, next_line)
        return implied

    def branch_points(self) -> List[BranchPoint]:
        """Every branch instruction of the code object, in offset order.

        A conditional jump is placed where the value it tests is computed
        (the instruction before it): its own location is the whole statement
        on 3.11, and ``if not x`` compiles to a jump on ``x`` being true, so
        the value tested is ``x``, not the statement.  ``FOR_ITER`` has the
        iterable's location itself.
        """
        if self._points is not None:
            return self._points
        points = []
        meanings_of, for_iter = _FORMAT.meanings, _FORMAT.for_iter
        # (offset, line, opcode, offset of the instruction it is placed at)
        placed: List[Tuple[int, int, int, int]] = []
        for offset, tested in self._branches:
            line = self._unit_line[offset >> 1]
            if line is None:
                continue
            op = self._op[offset]
            located = offset
            if op != for_iter and tested is not None:
                located = tested
            placed.append((offset, line, op, located))
        positions = placed and bytecode.positions(self.code,
                                                  [located >> 1 for *_, located in placed])
        for index, (offset, line, op, _) in enumerate(placed):
            col = end_col = None   # where the format has no columns
            if positions:
                lineno, end_lineno, col, end_col = positions[index]
                if lineno != line:
                    col = end_col = None   # not on the branch's own line: no columns
                elif end_lineno != lineno:
                    end_col = None   # the value spans lines: from col on
            points.append(BranchPoint(offset, line, col, end_col, self._target[offset],
                                      self._following(offset) or offset + 2, meanings_of[op]))
        self.columns_unknown = not bytecode.locate(self.code, points)
        self._points = points
        return points
