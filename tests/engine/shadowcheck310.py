"""Consistency checks of CPython 3.9 and 3.10 shadows against their originals.

The block-stack back end (src/engine/backend310/b310.h) runs frames on a copy of
their code (a shadow) with probes inserted before the instructions that
need them.  This module reads a shadow back, unit by unit, and checks what
the back end promises:

* the shadow is, for each original instruction in order, the probes it gets
  (in delivery order, a JUMP_FORWARD over a LINE probe that falling through
  from the same line skips), the caught marker before a handler, the
  instruction itself (same opcode, same bytes unless it jumps), and after a
  branch its BRANCH probes and stub; the map (``orig_of``, ``shadow_of``)
  names those units;
* every probe's site names the instruction and event it reports, with the
  argument and destination callbacks receive, and knows where it sits;
* jumps land on the instruction the original's land on, past the probes
  that only falling through or starting runs; block handlers land where the
  map translates a handler of a frame moved onto the shadow;
* every unit has the line of its original instruction (``co_lines()``
  and ``dis`` line starts);
* the value stack: the depth before each copied instruction is the
  original's, no path goes deeper than ``co_stacksize``, and a CALL probe
  reads the call at the depth it was built for.

Used by tests/engine/test_shadows.py on 3.9 and 3.10 and runnable alone over a
whole tree: ``python tests/engine/shadowcheck310.py /path/to/Lib``.
"""

from __future__ import annotations

import ast
import dis
import sys
from types import CodeType
from typing import Dict, List, NamedTuple, Optional, Set, Tuple

from lowimpact import _engine, monitoring
from lowimpact._lines import co_lines

try:
    from . import shadowcheck
except ImportError:     # run as a script
    import shadowcheck  # type: ignore[no-redef]

walk_code = shadowcheck.walk_code

#: Event numbers (bit positions), as the sites carry them.
EV = {name: value.bit_length() - 1 for name, value in vars(monitoring.events).items()
      if name.isupper() and value}
EVENT_NAME = {number: name for name, number in EV.items()}

#: Every event a shadow has probes for (the others come from elsewhere).
ALL_PROBED = sum(1 << EV[name] for name in (
    "PY_START", "PY_RETURN", "PY_YIELD", "CALL", "LINE", "INSTRUCTION", "JUMP", "BRANCH",
    "STOP_ITERATION", "RAISE", "EXCEPTION_HANDLED", "RERAISE"))

OP = dis.opmap
#: 3.9 has no GEN_START (its generators push nothing on their first start).
GEN_START = OP.get("GEN_START")
#: Bytes per unit of a jump's argument: 3.9 counts jumps in bytes, 3.10 in units.
JUMP_SCALE = 2 if sys.version_info[:2] == (3, 9) else 1
V39 = sys.version_info[:2] == (3, 9)
NAME_CLEANUPS = {("STORE_FAST", "DELETE_FAST"), ("STORE_NAME", "DELETE_NAME"),
                 ("STORE_GLOBAL", "DELETE_GLOBAL"), ("STORE_DEREF", "DELETE_DEREF")}
EXTENDED_ARG = OP["EXTENDED_ARG"]
JUMPS = set(dis.hasjrel) | set(dis.hasjabs)
SETUPS = {OP["SETUP_FINALLY"], OP["SETUP_WITH"], OP["SETUP_ASYNC_WITH"]}
BRANCHES = {OP[name] for name in ("POP_JUMP_IF_FALSE", "POP_JUMP_IF_TRUE", "JUMP_IF_FALSE_OR_POP",
                                  "JUMP_IF_TRUE_OR_POP", "JUMP_IF_NOT_EXC_MATCH", "FOR_ITER")}
CALLS = {OP[name] for name in ("CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_FUNCTION_EX",
                               "CALL_METHOD")}
NO_FALL_THROUGH = {OP[name] for name in ("JUMP_ABSOLUTE", "JUMP_FORWARD", "RETURN_VALUE",
                                         "RAISE_VARARGS", "RERAISE")}
#: The type of the probes' sites (the constant before a shadow's map).
SITE_TYPE = type(_engine._debug_shadow((lambda: None).__code__, 1 << EV["LINE"])[0].co_consts[-2])


class Ins(NamedTuple):
    start: int      # first unit, EXTENDED_ARG prefixes included
    op: int         # unit of the opcode
    end: int
    opcode: int
    arg: int


def instructions(co_code: bytes) -> List[Ins]:
    """Instructions with their EXTENDED_ARG prefixes, in code units."""
    out = []
    n = len(co_code) // 2
    u = 0
    while u < n:
        start, arg = u, 0
        while u < n - 1 and co_code[2 * u] == EXTENDED_ARG:
            arg = (arg | co_code[2 * u + 1]) << 8
            u += 1
        out.append(Ins(start, u, u + 1, co_code[2 * u], arg | co_code[2 * u + 1]))
        u += 1
    return out


def target_of(ins: Ins) -> Optional[int]:
    """The unit a jump goes to."""
    if ins.opcode in dis.hasjrel:
        return ins.end + ins.arg // JUMP_SCALE
    if ins.opcode in dis.hasjabs:
        return ins.arg // JUMP_SCALE
    return None


def unit_lines(code: CodeType) -> List[Optional[int]]:
    lines: List[Optional[int]] = [None] * (len(code.co_code) // 2)
    for start, end, line in co_lines(code):
        for b in range(start, min(end, 2 * len(lines)), 2):
            lines[b // 2] = line
    return lines


def _span(statements: List[ast.stmt]) -> Tuple[int, int]:
    """The first and last line of *statements* (decorators included)."""
    nodes = [n for statement in statements for n in ast.walk(statement) if hasattr(n, "lineno")]
    return min(n.lineno for n in nodes), max(n.end_lineno or n.lineno for n in nodes)


def finally_bodies_run(tree: ast.AST) -> Dict[int, List[Tuple[int, int]]]:
    """For the line of each return, break and continue of *tree*, the line
    spans of the finally bodies that it runs on its way out (3.9's compiler
    copies each before the code that goes on leaving, which it puts back
    on the statement's line)."""
    found: Dict[int, List[Tuple[int, int]]] = {}

    def block(statements: List[ast.stmt], finals: List[Tuple[int, int]], loop: Optional[int]) -> None:
        for statement in statements:
            visit(statement, finals, loop)

    def visit(node: ast.stmt, finals: List[Tuple[int, int]], loop: Optional[int]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            block(node.body, [], None)
        elif isinstance(node, ast.Return):
            found.setdefault(node.lineno, []).extend(finals)
        elif isinstance(node, (ast.Break, ast.Continue)):
            if loop is not None:
                found.setdefault(node.lineno, []).extend(finals[loop:])
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            block(node.body, finals, len(finals))
            block(node.orelse, finals, loop)
        elif isinstance(node, ast.Try):
            inside = finals + [_span(node.finalbody)] if node.finalbody else finals
            block(node.body, inside, loop)
            for handler in node.handlers:
                block(handler.body, inside, loop)
            block(node.orelse, inside, loop)
            block(node.finalbody, finals, loop)
        elif isinstance(node, (ast.If, ast.With, ast.AsyncWith)):
            block(node.body, finals, loop)
            block(getattr(node, "orelse", []), finals, loop)

    if isinstance(tree, ast.Module):
        block(tree.body, [], None)
    return found


_FINALLY_BODIES_RUN: Dict[str, Optional[Dict[int, List[Tuple[int, int]]]]] = {}


def _finally_bodies_run_in(filename: str) -> Optional[Dict[int, List[Tuple[int, int]]]]:
    """finally_bodies_run() of the source in *filename*; None without one."""
    if filename not in _FINALLY_BODIES_RUN:
        try:
            with open(filename, "rb") as file:
                data = file.read()
        except OSError:
            _FINALLY_BODIES_RUN[filename] = None
        else:
            try:
                tree = ast.parse(data)
            except (SyntaxError, ValueError):     # a coding cookie no codec has
                tree = ast.parse(data.decode("utf-8"))
            _FINALLY_BODIES_RUN[filename] = finally_bodies_run(tree)
    return _FINALLY_BODIES_RUN[filename]


def lineless_310(orig: List[Ins], lines: List[Optional[int]], index: Dict[int, int]) -> Set[int]:
    """The RERAISEs of 3.10 code that start no line as 3.12 reports lines:
    one that only jumps reach, all from one line, takes that line on 3.12
    (3.10 gives it the line of the instruction before it, the last
    statement of a finally body)."""
    sources: Dict[int, Set[Optional[int]]] = {}
    for i in orig:
        t = target_of(i)
        if t is not None and t in index and i.opcode not in SETUPS:
            sources.setdefault(index[t], set()).add(lines[i.op])
    return {k for k, i in enumerate(orig)
            if i.opcode == OP["RERAISE"] and (k == 0 or orig[k - 1].opcode in NO_FALL_THROUGH)
            and len(sources.get(k, ())) == 1 and None not in sources[k]}


def lineless_39(code: CodeType, orig: List[Ins], lines: List[Optional[int]],
                reached: Dict[int, int]) -> Optional[set]:
    """The instructions (indexes into *orig*) of 3.9 code that start no line
    as 3.12 reports lines, however they are reached: code that 3.9's
    compiler gives the line of a statement that need not have run
    (docs/ENGINE.md, "The 3.9 back end").  A with's exception exit, the
    cleanup of `except E as name` (LOAD_CONST None, STORE name, DELETE
    name, RERAISE), and the code back on a return's, break's or continue's
    line after a finally body it runs, found from the source's statements
    (the engine finds it from the block stack): an instruction that some
    path reaches (by its start unit in *reached*) on that line right after
    one on the lines of such a finally body.  None when the source cannot
    be read."""
    runs = _finally_bodies_run_in(code.co_filename)
    if runs is None:
        return None
    found = set()
    for k, i in enumerate(orig):
        if i.opcode == OP["WITH_EXCEPT_START"]:
            found.add(k)
        elif k + 3 < len(orig) and i.opcode == OP["LOAD_CONST"] and i.start == i.op and \
                orig[k + 3].opcode == OP["RERAISE"] and code.co_consts[i.arg] is None and \
                orig[k + 1].arg == orig[k + 2].arg and \
                (dis.opname[orig[k + 1].opcode], dis.opname[orig[k + 2].opcode]) in NAME_CLEANUPS:
            found.add(k)
        elif k > 0 and i.start in reached:
            before = lines[orig[k - 1].op]
            if before is not None and any(lo <= before <= hi for lo, hi in runs.get(lines[i.op], ())):
                found.add(k)
    return found


def stack_depths(code: CodeType, ins: List[Ins]) -> Dict[int, int]:
    """Depth of the value stack before each reachable instruction (by start
    unit), from dis.stack_effect along every path, as the compiler does."""
    at = {i.start: k for k, i in enumerate(ins)}
    depth: Dict[int, int] = {}
    if not ins:
        return depth
    work = [(0, 1 if ins[0].opcode == GEN_START else 0)]
    while work:
        k, d = work.pop()
        i = ins[k]
        if i.start in depth:
            continue
        depth[i.start] = d
        arg = i.arg if i.opcode >= dis.HAVE_ARGUMENT else None
        t = target_of(i)
        if i.opcode not in NO_FALL_THROUGH and k + 1 < len(ins):
            jump = False if t is not None else None
            work.append((k + 1, d + dis.stack_effect(i.opcode, arg, jump=jump)))
        if t is not None and t in at:
            work.append((at[t], d + dis.stack_effect(i.opcode, arg, jump=True)))
    return depth


class Item(NamedTuple):
    kind: str       # "probe", "skip", "caught", "copy", "stub jump"
    unit: int
    size: int
    site: object = None
    shape: str = ""     # a probe's: "value" (DUP_TOP ... CONTAINS_OP), "wrap" (FOR_ITER's), "plain"


def check(code: CodeType, events: int = ALL_PROBED) -> List[str]:
    """Problems found in the shadow of ``code`` (empty when consistent)."""
    shadow, orig_of, shadow_of = _engine._debug_shadow(code, events)
    problems: List[str] = []
    try:
        _check(code, events, shadow, orig_of, shadow_of, problems)
    except _Stop:
        pass
    return problems


class _Stop(Exception):
    """The shadow cannot be read further."""


def _check(code, events, shadow, orig_of, shadow_of, problems):
    def fail(message: str, *args) -> None:
        problems.append(message % args)
        if len(problems) >= 5:
            raise _Stop

    def stop(message: str, *args) -> None:
        problems.append(message % args)
        raise _Stop

    orig = instructions(code.co_code)
    sbytes = shadow.co_code
    n_units, n_shadow = len(code.co_code) // 2, len(sbytes) // 2
    if len(orig_of) != n_shadow or len(shadow_of) != n_units:
        stop("map lengths %d, %d for %d shadow and %d original units",
             len(orig_of), len(shadow_of), n_shadow, n_units)
    n_consts = len(code.co_consts)
    consts = shadow.co_consts
    if len(consts) <= n_consts or any(a is not b for a, b in zip(consts, code.co_consts)):
        stop("the original's constants are not the shadow's first")
    if type(consts[-1]).__name__ != "shadow_map":
        stop("the last constant is %r, not the map", consts[-1])

    def is_site(index: int) -> bool:
        return n_consts <= index < len(consts) and type(consts[index]) is SITE_TYPE

    caught = [c for c in consts[n_consts:-1] if type(c) is not SITE_TYPE]
    if len(caught) > 1 or any(type(c).__name__ != "caught" for c in caught):
        stop("constants after the sites: %r", caught)
    for attr in ("co_argcount", "co_posonlyargcount", "co_kwonlyargcount", "co_nlocals",
                 "co_flags", "co_names", "co_varnames", "co_freevars", "co_cellvars",
                 "co_filename", "co_name", "co_firstlineno"):
        if getattr(shadow, attr) != getattr(code, attr):
            fail("%s differs", attr)

    # The map: shadow_of names the instruction starts, in order.
    starts = {i.start for i in orig}
    for u in range(n_units):
        if (shadow_of[u] >= 0) != (u in starts):
            stop("shadow_of[%d] is %d: instruction starts are %s", u, shadow_of[u],
                 "mapped" if u in starts else "the only units mapped")
    group_starts = [shadow_of[i.start] for i in orig] + [n_shadow]
    if group_starts[0] != 0 or any(a > b for a, b in zip(group_starts, group_starts[1:])):
        stop("instructions are not in order in the shadow: %r", group_starts[:20])

    def unit_ins(u: int) -> Tuple[int, int, int]:
        """(EXTENDED_ARG units, opcode, argument) of the shadow instruction at u."""
        k, arg = u, 0
        while k < n_shadow - 1 and sbytes[2 * k] == EXTENDED_ARG:
            arg = (arg | sbytes[2 * k + 1]) << 8
            k += 1
        return k - u, sbytes[2 * k], arg | sbytes[2 * k + 1]

    def probe_at(u: int, end: int):
        """The probe at shadow unit u (before `end`): (site, size, shape), or None."""
        k = u
        value = sbytes[2 * k] == OP["DUP_TOP"]
        if value:
            k += 1
        if k >= end:
            return None
        prefix, opcode, arg = unit_ins(k)
        if opcode != OP["LOAD_CONST"] or not is_site(arg):
            return None
        k += prefix + 1
        tail = [sbytes[2 * j] for j in range(k, min(k + 2, end))]
        if value:
            shape, want = "value", [OP["CONTAINS_OP"], OP["POP_TOP"]]
        elif tail[:1] == [OP["ROT_TWO"]]:
            shape, want = "wrap", [OP["ROT_TWO"], OP["BINARY_SUBSCR"]]
        else:
            shape, want = "plain", [OP["UNARY_INVERT"], OP["POP_TOP"]]
        if tail != want or (value and sbytes[2 * k + 1] != 0):
            return None
        return consts[arg], k + 2 - u, shape

    def caught_at(u: int, end: int) -> int:
        if not caught or u >= end:
            return 0
        prefix, opcode, arg = unit_ins(u)
        k = u + prefix + 1
        tail = [sbytes[2 * j] for j in range(k, min(k + 2, end))]
        if opcode == OP["LOAD_CONST"] and consts[arg] is caught[0] and \
                tail == [OP["UNARY_INVERT"], OP["POP_TOP"]]:
            return k + 2 - u
        return 0

    # Read each instruction's group of units.
    layout: List[List[Item]] = []
    copy_at: List[int] = []
    for k, i in enumerate(orig):
        begin, end = group_starts[k], group_starts[k + 1]
        for u in range(begin, end):
            if orig_of[u] != i.op:
                stop("orig_of[%d] is %d in the units of original instruction %d",
                     u, orig_of[u], i.op)
        items: List[Item] = []
        u = begin
        copy = None
        while u < end:
            probe = probe_at(u, end)
            if probe is not None:
                items.append(Item("probe", u, probe[1], probe[0], probe[2]))
                u += probe[1]
                continue
            if sbytes[2 * u] == OP["JUMP_FORWARD"] and copy is None:
                probe = probe_at(u + 1, end)
                if probe is not None and probe[0].event == EV["LINE"]:
                    if sbytes[2 * u + 1] // JUMP_SCALE != probe[1]:
                        fail("the JUMP_FORWARD at shadow %d skips %d units, its LINE probe has %d",
                             u, sbytes[2 * u + 1] // JUMP_SCALE, probe[1])
                    items.append(Item("skip", u, 1))
                    u += 1
                    continue
            size = caught_at(u, end)
            if size and copy is None:
                items.append(Item("caught", u, size))
                u += size
                continue
            if copy is not None:
                # After a branch, its stub's jump.
                prefix, opcode, arg = unit_ins(u)
                if opcode not in (OP["JUMP_FORWARD"], OP["JUMP_ABSOLUTE"]):
                    stop("unexpected %s at shadow %d after original instruction %d",
                         dis.opname[opcode], u, i.op)
                items.append(Item("stub jump", u, prefix + 1))
                u += prefix + 1
                continue
            prefix, opcode, arg = unit_ins(u)
            if opcode != i.opcode:
                stop("original instruction %d (%s) is %s at shadow %d", i.op,
                     dis.opname[i.opcode], dis.opname[opcode], u)
            if i.opcode not in JUMPS and sbytes[2 * u:2 * (u + prefix + 1)] != \
                    code.co_code[2 * i.start:2 * i.end]:
                fail("original instruction %d is copied with other bytes at shadow %d", i.op, u)
            copy = u
            items.append(Item("copy", u, prefix + 1))
            u += prefix + 1
        if copy is None:
            stop("original instruction %d has no copy in the shadow", i.op)
        layout.append(items)
        copy_at.append(copy)

    # Lines: each unit has its original instruction's.
    orig_lines, shadow_lines = unit_lines(code), unit_lines(shadow)
    for u in range(n_shadow):
        if shadow_lines[u] != orig_lines[orig_of[u]]:
            fail("shadow unit %d is on line %r, its original unit %d on %r",
                 u, shadow_lines[u], orig_of[u], orig_lines[orig_of[u]])
            break
    # 3.9's compiler can start a line between an EXTENDED_ARG and its
    # instruction (a decorated def's defaults): a copy is on its opcode's
    # line, prefix included, as orig_of maps it.
    start_of = {u: i.start for i in orig for u in range(i.start, i.end)}
    want_starts = {2 * shadow_of[start_of[offset // 2]]: line
                   for offset, line in dis.findlinestarts(code)}
    got_starts = dict(dis.findlinestarts(shadow))
    if got_starts != want_starts:
        extra = sorted(set(got_starts.items()) ^ set(want_starts.items()))[:4]
        fail("dis line starts differ: %r", extra)

    # The probes each instruction should have.
    table_starts = {offset for offset, _ in dis.findlinestarts(code)}
    first = 1 if orig and orig[0].opcode == GEN_START else 0
    index = {i.start: k for k, i in enumerate(orig)}
    targets = {index[t] for t in map(target_of, orig) if t is not None and t in index}
    handlers = {index[target_of(i)] for i in orig
                if i.opcode in SETUPS and target_of(i) in index}
    # Where a line starts for a jump: from another line, or by unwinding
    # (a jump from its own line does not start it, as natively).
    line_entries = {index[target_of(i)] for i in orig
                    if target_of(i) in index and
                    (i.opcode in SETUPS or
                     orig_lines[i.op] != orig_lines[orig[index[target_of(i)]].op]) and
                    (not V39 or i.opcode in SETUPS or target_of(i) <= i.start or
                     2 * target_of(i) in table_starts)}
    depth = stack_depths(code, orig)
    lineless = lineless_39(code, orig, orig_lines, depth) if V39 else lineless_310(orig, orig_lines, index)
    if lineless is None:
        stop("no source for %s, which says where 3.9 has lines 3.12 has not", code.co_filename)

    def wanted(*names: str) -> bool:
        return any(events & (1 << EV[name]) for name in names)

    expected: List[List[Tuple[str, int]]] = [[] for _ in orig]
    skip_line = [False] * len(orig)
    previous_line = None
    for k, i in enumerate(orig):
        want = expected[k]
        line = orig_lines[i.op]
        if k == first and wanted("PY_START"):
            want.append(("PY_START", i.start))
        if k >= first:
            if k in handlers and wanted("RAISE", "EXCEPTION_HANDLED", "RERAISE"):
                want.append(("EXCEPTION_HANDLED", i.start))
            elif i.opcode == OP["FOR_ITER"] and wanted("STOP_ITERATION", "RAISE"):
                want.append(("STOP_ITERATION", i.start))
            elif k > 0 and orig[k - 1].opcode == OP["YIELD_FROM"] and wanted("STOP_ITERATION"):
                want.append(("STOP_ITERATION", i.start))
            if (wanted("LINE") and line is not None and (line != previous_line or k in line_entries)
                    and k not in lineless):
                want.append(("LINE", i.start))
                skip_line[k] = k > first and orig[k - 1].opcode not in NO_FALL_THROUGH and \
                    orig_lines[orig[k - 1].op] == line
            previous_line = line
            if wanted("INSTRUCTION"):
                want.extend(("INSTRUCTION", u) for u in range(i.start, i.end))
        if i.opcode in (OP["JUMP_ABSOLUTE"], OP["JUMP_FORWARD"]) and wanted("JUMP"):
            want.append(("JUMP", i.op))
        if i.opcode == OP["RETURN_VALUE"] and wanted("PY_RETURN"):
            want.append(("PY_RETURN", i.start))
        if i.opcode == OP["YIELD_VALUE"] and wanted("PY_YIELD"):
            want.append(("PY_YIELD", i.start))
        reraise = i.opcode in (OP["RERAISE"], OP["END_ASYNC_FOR"]) or \
            (i.opcode == OP["RAISE_VARARGS"] and i.arg == 0)
        if reraise and wanted("RERAISE", "RAISE", "EXCEPTION_HANDLED"):
            want.append(("RERAISE", i.start))
        if i.opcode in CALLS and wanted("CALL") and i.start in depth:
            # The call of __aexit__ ending an `async with` reads its error
            # after the DUP_TOPs before it: its probe goes before them.
            at = k
            if k >= 2 and k + 1 < len(orig) and i.opcode == OP["CALL_FUNCTION"] and \
                    orig[k + 1].opcode == OP["GET_AWAITABLE"] and \
                    orig[k - 1].opcode == orig[k - 2].opcode == OP["DUP_TOP"] and \
                    k - 1 not in targets and k not in targets:
                at = k - 2
            expected[at].append(("CALL", i.start))

    # Each instruction's items against that.
    def stub_jump_dest(item: Item) -> int:
        prefix, opcode, arg = unit_ins(item.unit)
        arg //= JUMP_SCALE
        return item.unit + item.size + arg if opcode == OP["JUMP_FORWARD"] else arg

    branch_sites = {}
    for k, (i, items) in enumerate(zip(orig, layout)):
        kinds = [it.kind for it in items]
        c = kinds.index("copy")
        before, after = items[:c], items[c + 1:]
        got = [(EVENT_NAME.get(it.site.event, it.site.event), it.site.orig)
               for it in before if it.kind == "probe"]
        if got != expected[k]:
            fail("probes before original instruction %d (%s): %r, wanted %r",
                 i.op, dis.opname[i.opcode], got, expected[k])
        if ("caught" in kinds) != (k in handlers):
            fail("the caught marker is %s before original instruction %d",
                 "present" if "caught" in kinds else "missing", i.op)
        if "caught" in kinds and kinds.index("caught") != c - 1:
            fail("the caught marker is not right before the handler at %d", i.op)
        skips = [n for n, it in enumerate(before) if it.kind == "skip"]
        if bool(skips) != skip_line[k]:
            fail("the LINE probe of original instruction %d is %sskipped by falling through",
                 i.op, "" if skips else "not ")
        is_branch = i.opcode in BRANCHES and target_of(i) in index and wanted("BRANCH")
        shape = [it.kind for it in after]
        if shape != (["probe", "stub jump", "probe", "stub jump"] if is_branch else []):
            stop("after original instruction %d (%s): %r", i.op, dis.opname[i.opcode], shape)
        for it in before + after:
            if it.kind != "probe":
                continue
            s = it.site
            name = EVENT_NAME.get(s.event)
            if s.unit != it.unit or not s.armed:
                fail("the %s site at shadow %d says unit %d, armed %r",
                     name, it.unit, s.unit, s.armed)
            # The value a PY_RETURN, PY_YIELD or a delegate's return comes
            # with stays on the stack, where the site reads it at the depth
            # known there, or goes in with the site where none is; the
            # iterator of a loop goes through it.
            shape = "plain"
            on_stack = False
            if name in ("PY_RETURN", "PY_YIELD", "STOP_ITERATION"):
                for_iter = i.opcode == OP["FOR_ITER"] and name == "STOP_ITERATION"
                on_stack = not for_iter and i.start in depth
                shape = "wrap" if for_iter else "plain" if on_stack else "value"
            if it.shape != shape:
                fail("the %s probe at shadow %d is a %s one, wanted %s",
                     name, it.unit, it.shape, shape)
            if s.value_on_stack != on_stack or (on_stack and s.depth != depth[i.start]):
                fail("the %s site at shadow %d reads its value on the stack: %r at depth %d, "
                     "the instruction is at %r", name, it.unit, s.value_on_stack, s.depth,
                     depth.get(i.start))
            # (The first BRANCH probe's JUMP_FORWARD skips the stub too.)
            if s.size != it.size and not (after and it is after[0]):
                fail("the %s site at shadow %d says %d units, it has %d",
                     name, it.unit, s.size, it.size)
            if it in after:
                continue
            arg = 2 * s.orig
            if name == "LINE":
                arg = orig_lines[i.op]
            elif name == "STOP_ITERATION" and i.opcode != OP["FOR_ITER"]:
                arg = 2 * orig[k - 1].op
            elif name in ("CALL", "RERAISE", "STOP_ITERATION"):
                arg = 2 * orig[index[s.orig]].op
            if s.arg != arg:
                fail("the %s site at shadow %d has argument %r, wanted %r",
                     name, it.unit, s.arg, arg)
            dest = 2 * target_of(i) if name == "JUMP" else None
            if s.dest != dest:
                fail("the %s site at shadow %d has destination %r, wanted %r",
                     name, it.unit, s.dest, dest)
            if name == "CALL":
                call = index[s.orig]
                if s.depth != depth.get(orig[call].start):
                    fail("the CALL site at shadow %d reads depth %d, the call is at %r",
                         it.unit, s.depth, depth.get(orig[call].start))
        if is_branch:
            fall, skip, taken, jump = after
            branch_sites[k] = (fall, taken, jump)
            end_of_stub = jump.unit + jump.size
            if stub_jump_dest(skip) != end_of_stub or skip.unit != fall.unit + fall.size or \
                    taken.unit != skip.unit + 1:
                fail("the BRANCH stub of original instruction %d is not skipped as a whole", i.op)
            if fall.site.size != end_of_stub - fall.unit:
                fail("the first BRANCH probe of %d skips %d units once disarmed, wanted %d",
                     i.op, fall.site.size, end_of_stub - fall.unit)
            if fall.site.twin is not taken.site or taken.site.twin is not fall.site:
                fail("the BRANCH probes of original instruction %d are not twins", i.op)
            for it, dest in ((fall, 2 * i.end), (taken, 2 * target_of(i))):
                if it.site.orig != i.op or it.site.arg != 2 * i.op or it.site.dest != dest or \
                        it.site.event != EV["BRANCH"]:
                    fail("BRANCH site at shadow %d: orig %d, arg %r, dest %r; wanted %d, %d, %d",
                         it.unit, it.site.orig, it.site.arg, it.site.dest, i.op, 2 * i.op, dest)
            if taken.site.jump_unit != items[c].unit or taken.site.jump_size != items[c].size:
                fail("the taken BRANCH site of %d rewrites %d units at %d, the jump has %d at %d",
                     i.op, taken.site.jump_size, taken.site.jump_unit, items[c].size, items[c].unit)

    # Jumps: where each lands.
    def jump_dest(k: int, arg: int) -> int:
        i = orig[k]
        copy = copy_at[k]
        size = next(it.size for it in layout[k] if it.kind == "copy")
        arg //= JUMP_SCALE
        return copy + size + arg if i.opcode in dis.hasjrel else arg

    def entry_check(k: int, t: int, landing: int, via: str) -> None:
        """A jump of instruction k to instruction t lands in t's group: past
        PY_START; on the probe before LINE if it enters a handler, else past
        it; past LINE when it stays on the line (a handler gets LINE), and
        past the jump over LINE otherwise."""
        from_setup = orig[k].opcode in SETUPS
        items = [it for it in layout[t] if it.unit < copy_at[t]]
        n = 0
        if items and items[0].kind == "probe" and items[0].site.event == EV["PY_START"]:
            n = 1
        names = [EVENT_NAME[it.site.event] for it in items if it.kind == "probe"]
        if n < len(items) and items[n].kind == "probe" and \
                items[n].site.event in (EV["EXCEPTION_HANDLED"], EV["STOP_ITERATION"]):
            if from_setup and n + 1 < len(items) and items[n + 1].kind == "skip":
                fail("the handler at original %d skips its LINE probe after its %s probe",
                     orig[t].op, EVENT_NAME[items[n].site.event])
            n += 0 if from_setup else 1
        want = items[n].unit if n < len(items) else copy_at[t]
        line_probe = [it for it in items if it.kind == "probe" and it.site.event == EV["LINE"]]
        if not from_setup and line_probe and orig_lines[orig[k].op] == orig_lines[orig[t].op]:
            want = line_probe[0].unit + line_probe[0].size
        elif n < len(items) and items[n].kind == "skip":
            want += 1
        if landing != want:
            fail("%s of original instruction %d lands at shadow %d, wanted %d (in front of "
                 "original instruction %d, whose probes are %r)", via, orig[k].op, landing,
                 want, orig[t].op, names)

    for k, i in enumerate(orig):
        t_unit = target_of(i)
        if t_unit is None:
            continue
        if t_unit not in index:
            fail("original instruction %d jumps to %d, not an instruction", i.op, t_unit)
            continue
        t = index[t_unit]
        prefix, opcode, arg = unit_ins(copy_at[k])
        dest = jump_dest(k, arg)
        if k in branch_sites:
            fall, taken, jump = branch_sites[k]
            if dest != taken.unit:
                fail("branch %d jumps to shadow %d, its stub is at %d", i.op, dest, taken.unit)
            landing = stub_jump_dest(jump)
            entry_check(k, t, landing, "the BRANCH stub")
            if taken.site.jump_via_stub != arg:
                fail("branch %d: its site's argument through the stub is %d, the jump's %d",
                     i.op, taken.site.jump_via_stub, arg)
            if jump_dest(k, taken.site.jump_direct) != landing:
                fail("branch %d disarmed would jump to shadow %d, the stub goes to %d",
                     i.op, jump_dest(k, taken.site.jump_direct), landing)
            if taken.site.jump_direct >= 1 << (8 * taken.site.jump_size):
                fail("branch %d: its direct argument does not fit its units", i.op)
        else:
            entry_check(k, t, dest, "the jump")
        if i.opcode in SETUPS and dest != group_starts[t]:
            # hook.c maps a handler of a frame moving onto the shadow to
            # the start of its group: the shadow's own SETUP must agree.
            fail("the handler set up by %d is shadow %d, the map says %d",
                 i.op, dest, group_starts[t])

    # The value stack.
    sins = instructions(sbytes)
    sdepth = stack_depths(shadow, sins)
    for k, i in enumerate(orig):
        if i.start not in depth:
            continue
        d = sdepth.get(copy_at[k])
        if d != depth[i.start]:
            fail("depth before original instruction %d: %d, in the shadow %r",
                 i.op, depth[i.start], d)
            break
    deepest = 0
    for k, i in enumerate(sins):
        if i.start not in sdepth:
            continue
        arg = i.arg if i.opcode >= dis.HAVE_ARGUMENT else None
        for jump in (False, True) if target_of(i) is not None else (None,):
            effect = dis.stack_effect(i.opcode, arg, jump=jump)
            deepest = max(deepest, sdepth[i.start] + max(0, effect))
    if deepest > shadow.co_stacksize:
        fail("the shadow goes %d deep, its co_stacksize is %d", deepest, shadow.co_stacksize)
    # A probe no path reaches (a LINE probe that only jumps from its own
    # line lead to, which skip it) is sized where it sits, as if reached.
    sized = deepest
    for k, i in enumerate(orig):
        if i.start in depth:
            for it in layout[k]:
                if it.unit < copy_at[k] and it.kind in ("probe", "caught"):
                    sized = max(sized, depth[i.start] + (2 if it.shape == "value" else 1))
    if shadow.co_stacksize < code.co_stacksize:
        fail("co_stacksize %d below the original's %d", shadow.co_stacksize, code.co_stacksize)
    elif shadow.co_stacksize > max(sized, code.co_stacksize):
        # More would make frames made for the original borrow a value
        # stack for nothing (hook.c).
        fail("co_stacksize %d, the shadow's probes need %d, the original %d",
             shadow.co_stacksize, sized, code.co_stacksize)


if __name__ == "__main__":
    sys.exit(shadowcheck.main(sys.argv[1], check))
