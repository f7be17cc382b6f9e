"""Columns of CPython 3.10's branch points, recovered from the source.

3.10's code objects have lines but no columns, so the branch points of
one line (``a`` and ``b`` in ``if a and b:``) cannot be told apart from
the code alone.  3.10's compiler gives each instruction the line of the
AST node it compiles, so the source is parsed again and compiled once
more, with every node that a branch can test renumbered: its line is a
number past the file's end, unique to it.  The line table of that code
then names, for each instruction, the node it came from, whose columns
are those 3.11+ give the instruction in ``co_positions()``.

The renumbered code is only trusted where it is the code that ran: the
same ``co_code`` and ``co_name``, and a line table that, mapped back
through the nodes, is the real one, unit for unit.  The compiler compares
lines in a few places (it keeps a ``NOP`` between instructions of
different lines, and a ``return`` whose value is on another line gets one),
so renumbering can change the bytecode; the points of such code objects
keep no columns and count as one per line, as before.

Where 3.10's bytecode tests a value another way than 3.11's, the point is
given 3.11's place and meanings, so that a report reads the same on both:
``x is None`` jumps on ``x`` being None (3.11 folds the comparison into
the jump), an ``except`` clause's match is a true/false test placed at the
clause, a ``with`` exit's test at the statement, and ``FOR_ITER`` at the
``for`` statement or the comprehension.  Where 3.11 and 3.12+ place a
point differently, 3.11's place is taken: 3.10's bytecode is closest to it.

3.9 is read the same way: its compiler also gives each instruction its
node's line (its line table is ``co_lnotab``, read through
``lowimpact._lines.co_lines``), and it has no match statement.

This runs at save time, once per source file (parse and compile), and
once per code object with branch points (a walk of its instructions).
"""

from __future__ import annotations

import ast
import dis
import functools
import types
from typing import Dict, List, Optional, Sequence, Tuple
from lowimpact._lines import co_lines

__all__ = ["locate"]

#: (lineno, end_lineno, col_offset, end_col_offset) of a node.
Position = Tuple[int, int, int, int]

_NONE_TESTS = {
    # (IS_OP's argument, the jump): what the jump means for the value.
    (0, "POP_JUMP_IF_FALSE"): ("not None", "None"),
    (0, "POP_JUMP_IF_TRUE"): ("None", "not None"),
    (1, "POP_JUMP_IF_FALSE"): ("None", "not None"),
    (1, "POP_JUMP_IF_TRUE"): ("not None", "None"),
}
# 3.11's MATCH_CLASS and MATCH_KEYS push None where 3.10's push False.
_MATCHES_NONE = frozenset({"MATCH_CLASS", "MATCH_KEYS"})
_COMPARES = frozenset({"COMPARE_OP", "IS_OP", "CONTAINS_OP"})
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_COMPREHENSION_NAMES = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"})
# The nodes that hold tested nodes (a mapping pattern renumbered keeps a NOP
# before its keys: left as it is).  3.9 has no match statement: none of
# its nodes.
_HOLDERS = frozenset({
    ast.If, ast.While, ast.Assert, ast.IfExp, ast.BoolOp, ast.comprehension, *_COMPREHENSIONS,
    *(getattr(ast, name) for name in ("match_case", "MatchValue", "MatchSingleton",
                                      "MatchSequence", "MatchStar", "MatchClass", "MatchAs",
                                      "MatchOr") if hasattr(ast, name))})
_PATTERN = getattr(ast, "pattern", ())
_MATCH_CASE = getattr(ast, "match_case", ())
# Statements whose own instructions hold a branch: one of each kind a line.
_STATEMENTS = {ast.For: "FOR_ITER", ast.With: "WITH_EXCEPT_START",
               ast.AsyncWith: "WITH_EXCEPT_START", ast.ExceptHandler: "JUMP_IF_NOT_EXC_MATCH"}


def _position(node: ast.AST) -> Position:
    return (node.lineno, node.end_lineno, node.col_offset, node.end_col_offset)


def _method(node: ast.AST) -> Optional[ast.Attribute]:
    """The attribute of a call that 3.10 compiles as ``LOAD_METHOD`` and
    ``CALL_METHOD`` (no keywords, no ``*``, fewer than 30 arguments)."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.ctx, ast.Load) and not node.keywords
            and len(node.args) < 30
            and not any(isinstance(arg, ast.Starred) for arg in node.args)):
        return node.func
    return None


def _placed(node: ast.AST) -> Tuple[Position, int]:
    """Where 3.11 places the last instruction of *node*, and the line 3.10
    gives it.  Both compilers give an attribute's load, and a method call,
    the line where the attribute's name is; 3.11 starts its columns there."""
    attribute = _method(node)
    if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
        attribute = node
    where = _position(node)
    if attribute is None:
        return where, node.lineno
    if attribute.lineno != attribute.end_lineno:
        start = attribute.end_col_offset - len(attribute.attr.encode("utf-8"))
        where = (attribute.end_lineno, where[1], start, where[3])
    return where, attribute.end_lineno


def _renumber(node: ast.AST, line: int) -> None:
    node.lineno = node.end_lineno = line  # type: ignore[attr-defined]
    method = _method(node)
    if method is not None:
        method.end_lineno = line


def _is_none_test(node: ast.AST) -> bool:
    return (isinstance(node, ast.Compare) and len(node.ops) == 1
            and isinstance(node.ops[0], (ast.Is, ast.IsNot))
            and isinstance(node.comparators[0], ast.Constant)
            and node.comparators[0].value is None)


def _nodes(tree: ast.AST) -> List[ast.AST]:
    """Every node of *tree*, breadth first (``ast.walk``'s order, faster)."""
    nodes = [tree]
    append = nodes.append
    for node in nodes:  # grows as it goes
        for field in node._fields:
            value = getattr(node, field, None)
            if value.__class__ is list:
                for item in value:
                    if isinstance(item, ast.AST):
                        append(item)
            elif isinstance(value, ast.AST) and field != "ctx":  # Load/Store: no lines
                append(value)
    return nodes


def _tested(nodes: List[ast.AST], filter_compares: bool) -> List[Tuple[ast.AST, Optional[ast.AST]]]:
    """The nodes whose value a branch instruction can test, in no order
    (some twice): what 3.10's ``compiler_jump_if`` reaches through ``not``,
    ``and``/``or`` and conditional expressions, the operands of ``and``/``or``
    in a value, the left side of ``x is None``, match patterns; and with
    each comprehension's first target, the comprehension, whose code object
    it tells apart from others of the same line (the comprehension itself
    is not renumbered: ``return [...]`` would get a ``NOP``, and its code
    object would be on its new line).

    With *filter_compares*, comparisons in a comprehension's conditions are
    not renumbered: 3.10 gives the instructions after such a condition
    (no line of their own) its line, and a jump from an earlier condition
    to them is then no longer threaded past them.  Their last operand is,
    paired with the comparison."""
    found: List[Tuple[ast.AST, Optional[ast.AST]]] = []
    # and/or reached as a condition: not also an and/or in a value.
    conditions = set()

    def test(node: ast.AST, filtered: bool = False) -> None:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            test(node.operand, filtered)
        elif isinstance(node, ast.BoolOp):
            conditions.add(id(node))
            for operand in node.values:
                test(operand, filtered)
        elif isinstance(node, ast.IfExp):
            test(node.test, filtered)
            test(node.body, filtered)
            test(node.orelse, filtered)
        elif filtered and isinstance(node, ast.Compare):
            found.append((node.comparators[-1], node))
        else:
            computed(node, True)

    def computed(node: ast.AST, condition: bool) -> None:
        # Not renumbered: a constant or __debug__ as a condition (folded, no
        # jump tests it, and the NOP left in its place would stay);
        # and/or, conditional and := expressions (their value is their last
        # instruction's node's, and the compiler threads a jump to a jump
        # only when both have the same line).
        if condition and (isinstance(node, ast.Constant) or (
                isinstance(node, ast.Name) and node.id == "__debug__")):
            return
        if isinstance(node, ast.BoolOp):
            for operand in node.values:
                computed(operand, condition)
        elif isinstance(node, ast.IfExp):
            computed(node.body, condition)
            computed(node.orelse, condition)
        elif isinstance(node, ast.NamedExpr):
            found.append((node.target, None))
        else:
            found.append((node, None))
        if _is_none_test(node):
            found.append((node.left, None))  # type: ignore[attr-defined]

    # Breadth first: a condition is met before the and/or in it.
    for node in nodes:
        if type(node) not in _HOLDERS:
            continue
        if isinstance(node, (ast.If, ast.While, ast.Assert, ast.IfExp)):
            test(node.test)
        elif isinstance(node, ast.BoolOp) and id(node) not in conditions:
            for operand in node.values:
                computed(operand, False)
        elif isinstance(node, ast.comprehension):
            for condition in node.ifs:
                test(condition, filter_compares)
        elif isinstance(node, _COMPREHENSIONS):
            found.append((node.generators[0].target, node))
        elif isinstance(node, _PATTERN):
            found.append((node, None))
        elif isinstance(node, _MATCH_CASE) and node.guard is not None:
            test(node.guard)
    return found


class _Source:
    """One file compiled with its tested nodes renumbered."""

    def __init__(self, source: bytes, filename: str, filter_compares: bool) -> None:
        tree = ast.parse(source, filename)
        nodes = _nodes(tree)
        self.statements: Dict[Tuple[int, str], Position] = {}
        last = 0
        for node in nodes:
            end = getattr(node, "end_lineno", None)
            if end is not None and end > last:
                last = end
            kind = _STATEMENTS.get(type(node))
            if kind is not None:
                self.statements[node.lineno, kind] = _position(node)
        #: Lines from *base* on name a node: nodes[line - base].  (An empty
        #: module's code is on line 1: past its last node's.)
        self.base = max(last, source.count(b"\n")) + 2
        self.nodes: List[Position] = []
        #: The line 3.10 gives each node's last instruction.
        self.lines: List[int] = []
        #: The comprehension, or the comparison, paired with a node's number.
        self.comprehension: Dict[int, Position] = {}
        self.comparison: Dict[int, Position] = {}
        number: Dict[int, int] = {}
        renumbered = []
        # Every position is read before any node is renumbered: a
        # comprehension can be one too.
        for node, owner in _tested(nodes, filter_compares):
            if id(node) not in number:
                number[id(node)] = len(self.nodes)
                where, line = _placed(node)
                self.nodes.append(where)
                self.lines.append(line)
                renumbered.append(node)
            if isinstance(owner, ast.Compare):
                self.comparison[number[id(node)]] = _position(owner)
            elif owner is not None:
                self.comprehension[number[id(node)]] = _position(owner)
        for node in renumbered:
            _renumber(node, self.base + number[id(node)])
        top = compile(tree, filename, "exec", dont_inherit=True)
        self.codes: Dict[Tuple[str, bytes], List[types.CodeType]] = {}
        work = [top]
        while work:
            code = work.pop()
            self.codes.setdefault((code.co_name, code.co_code), []).append(code)
            work.extend(const for const in code.co_consts if isinstance(const, types.CodeType))

    def units(self, code: types.CodeType) -> Optional[List[Optional[int]]]:
        """The number of the node of each code unit of *code* (None: not a
        renumbered node's), or None if no renumbered code object is *code*
        with its lines renumbered (or several are, placed differently)."""
        real = _unit_lines(code)
        found: Optional[List[Optional[int]]] = None
        for twin in self.codes.get((code.co_name, code.co_code), ()):
            units: List[Optional[int]] = []
            for line, twin_line in zip(real, _unit_lines(twin)):
                number = None
                if twin_line is not None and twin_line >= self.base:
                    number = twin_line - self.base
                    twin_line = self.lines[number]
                if twin_line != line:
                    break
                units.append(number)
            else:
                if found is not None and found != units:
                    return None
                found = units
        return found

    def position(self, number: Optional[int]) -> Optional[Position]:
        return None if number is None else self.nodes[number]


def _unit_lines(code: types.CodeType) -> List[Optional[int]]:
    lines: List[Optional[int]] = [None] * (len(code.co_code) // 2)
    for start, end, line in co_lines(code):
        lines[start // 2:end // 2] = [line] * ((end - start) // 2)
    return lines


@functools.lru_cache(maxsize=32)
def _source(filename: str, filter_compares: bool) -> Optional[_Source]:
    try:
        with open(filename, "rb") as stream:
            return _Source(stream.read(), filename, filter_compares)
    except (OSError, SyntaxError, ValueError):
        return None


def locate(code: types.CodeType, points: Sequence) -> bool:
    """Give each :class:`~lowimpact.tools.cover.arcs.BranchPoint` of *code*
    (in offset order) the columns, and meanings, 3.11 gives it; False,
    leaving them as they are, where the columns cannot be recovered."""
    if not points:
        return True
    # The comparisons of comprehensions' conditions keep their columns
    # unless that changes the code; the rest is the same either way.
    for filter_compares in (False, True):
        source = _source(code.co_filename, filter_compares)
        units = source.units(code) if source is not None else None
        if units is not None:
            break
    else:
        return False
    assert source is not None
    found = [ins for ins in dis.get_instructions(code) if ins.opname != "EXTENDED_ARG"]
    index = {ins.offset: i for i, ins in enumerate(found)}
    for point in points:
        i = index[point.offset]
        name = found[i].opname
        before = found[i - 1] if i else None
        where: Optional[Position] = None
        if name == "FOR_ITER":
            where = source.statements.get((point.line, name))
            if code.co_name in _COMPREHENSION_NAMES:
                where = next((source.comprehension[n] for n in units
                              if n in source.comprehension), None)
        elif name == "JUMP_IF_NOT_EXC_MATCH":
            where = source.statements.get((point.line, name))
            point.meanings = ("false", "true")
        elif before is not None and before.opname == "WITH_EXCEPT_START" or (
                i >= 4 and found[i - 4].opname == "WITH_EXCEPT_START"
                and found[i - 1].opname == "YIELD_FROM"):
            # (async with: WITH_EXCEPT_START, GET_AWAITABLE, LOAD_CONST None, YIELD_FROM)
            where = source.statements.get((point.line, "WITH_EXCEPT_START"))
        elif before is None:
            continue
        else:
            if (before.opname == "IS_OP" and i >= 3 and (before.arg, name) in _NONE_TESTS
                    and found[i - 2].opname == "LOAD_CONST" and found[i - 2].argval is None):
                point.meanings = _NONE_TESTS[before.arg, name]
                before = found[i - 3]
            elif before.opname in _MATCHES_NONE and name == "POP_JUMP_IF_FALSE":
                point.meanings = ("None", "not None")
            where = source.position(units[before.offset >> 1])
            if where is None and before.opname in _COMPARES and i >= 2:
                # A comparison left as it was: placed by its last operand.
                where = source.comparison.get(units[found[i - 2].offset >> 1])  # type: ignore
        if where is None or where[0] != point.line:
            continue
        point.col = where[2]
        point.end_col = where[3] if where[1] == where[0] else None
    return True
