"""Consistency checks of instrumented copies (shadows) against their originals.

Used by the tests and runnable alone over a whole directory tree:
``python tests/engine/shadowcheck.py /path/to/Lib``.
"""

from __future__ import annotations

import dis
import inspect
import sys
from types import CodeType
from typing import Iterator, List, Tuple

from lowimpact import _engine, monitoring

#: Every event that can be selected (C_RETURN and C_RAISE come with CALL).
ALL_PROBED = sum(
    value for name, value in vars(monitoring.events).items()
    if name.isupper() and name not in ("NO_EVENTS", "C_RETURN", "C_RAISE")
)


def walk_code(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from walk_code(const)


def parse_exception_table(code: CodeType) -> List[Tuple[int, int, int, int, bool]]:
    """(start, end, target, depth, lasti) in code units."""
    table = code.co_exceptiontable
    entries = []
    i = 0

    def varint() -> int:
        nonlocal i
        b = table[i]
        i += 1
        val = b & 63
        while b & 64:
            b = table[i]
            i += 1
            val = (val << 6) | (b & 63)
        return val

    while i < len(table):
        start = varint()
        length = varint()
        target = varint()
        dl = varint()
        entries.append((start, start + length, target, dl >> 1, bool(dl & 1)))
    return entries


def handler_at(entries, unit):
    for start, end, target, depth, lasti in entries:
        if start <= unit < end:
            return target, depth, lasti
    return None


#: How a probe ends: a jump to a stub that moves its frame elsewhere, taken
#: when the probe says so (a jump by 0 where it cannot).
PROBE_ENDS = ("POP_JUMP_FORWARD_IF_TRUE", "POP_JUMP_BACKWARD_IF_TRUE")
#: How a probe starts: armed, or disarmed (a jump over it).
PROBE_STARTS = ("EXTENDED_ARG", "LOAD_CONST", "JUMP_FORWARD")


def probe_units(shadow: CodeType, at: int) -> int:
    """Length of the probe starting at unit ``at`` (2, or more with EXTENDED_ARG)."""
    op = dis.opname[shadow.co_code[at * 2]]
    if op == "JUMP_FORWARD":
        n = shadow.co_code[at * 2 + 1] + 1
    else:
        n = 1
        while dis.opname[shadow.co_code[(at + n - 1) * 2]] == "EXTENDED_ARG":
            n += 1
        assert dis.opname[shadow.co_code[(at + n - 1) * 2]] == "LOAD_CONST"
        n += 1
    assert dis.opname[shadow.co_code[(at + n - 1) * 2]] in PROBE_ENDS
    return n


def check(code: CodeType, events: int = ALL_PROBED) -> List[str]:
    """Problems found in the shadow of ``code`` (empty when consistent)."""
    shadow, orig_of, shadow_of = _engine._debug_shadow(code, events)
    problems = []
    units = len(code.co_code) // 2
    if len(orig_of) != len(shadow.co_code) // 2:
        return ["map length differs"]
    orig_pos = list(code.co_positions())
    shadow_pos = list(shadow.co_positions())
    no_position = (None, None, None, None)
    for su, u in enumerate(orig_of):
        if not 0 <= u < units:
            problems.append("unit %d maps outside the original" % su)
            continue
        # Copies of original units keep their positions; probe units have
        # those of the instruction they report on, or none.
        copy = shadow_of[u] == su
        if shadow_pos[su] != orig_pos[u] and (copy or shadow_pos[su] != no_position):
            problems.append("positions of shadow unit %d %r != original unit %d %r"
                            % (su, shadow_pos[su], u, orig_pos[u]))
            break
    # Inline caches are as in the original when it was created (co_code
    # shows them zeroed whatever they hold, _co_code_adaptive as they are).
    cache = dis.opmap["CACHE"]
    fresh = code.replace()
    for su, u in enumerate(orig_of):
        if shadow_of[u] == su and code.co_code[2 * u] == cache:
            if shadow._co_code_adaptive[2 * su:2 * su + 2] != fresh._co_code_adaptive[2 * u:2 * u + 2]:
                problems.append("inline cache at shadow unit %d is not the original's (unit %d)" % (su, u))
                break
    # Instruction starts, an EXTENDED_ARG prefix counting as part of its
    # instruction (dis lists prefixes separately).
    starts = []
    previous = None
    for ins in dis.get_instructions(code):
        if previous is None or previous.opname != "EXTENDED_ARG":
            starts.append(ins.offset // 2)
        previous = ins

    def instruction_of(u: int) -> int:
        return max(s for s in starts if s <= u)
    orig_entries = parse_exception_table(code)
    shadow_entries = parse_exception_table(shadow)

    def effective(su: int, seen: int = 0):
        """Where an exception raised at shadow unit su ends up, following
        lowimpact's stubs (which re-raise) to the original handler."""
        got = handler_at(shadow_entries, su)
        if got is None or seen > 4:
            return None
        target = got[0]
        if target >= first_original_end:
            # A stub: probe then RERAISE (C_RAISE, UNWIND) or a jump (TAKEN).
            tail = target + probe_units(shadow, target)
            if dis.opname[shadow.co_code[tail * 2]] == "RERAISE":
                return effective(tail, seen + 1)
        return got

    first_original_end = max(shadow_of) + 1
    for su, u in enumerate(orig_of):
        if su >= first_original_end or shadow_of[u] != su:
            continue   # probes and stubs: their routes are lowimpact's own
        want = handler_at(orig_entries, u)
        got = effective(su)
        if (want is None) != (got is None):
            problems.append("handler coverage differs at shadow unit %d: %r vs %r" % (su, got, want))
            break
        if want is not None:
            if want[1:] != got[1:] or instruction_of(orig_of[got[0]]) != want[0]:
                problems.append("handler differs at shadow unit %d: %r vs %r" % (su, got, want))
                break
    orig_jumps = {}
    for ins in dis.get_instructions(code):
        if ins.opcode in dis.hasjrel:
            orig_jumps[ins.offset // 2] = ins.argval // 2
    shadow_instructions = list(dis.get_instructions(shadow))

    def follow(landing_unit: int, src: int) -> int:
        """A taken-branch stub (after the code, or just before the target of
        a forward jump) jumps on where the original jump goes."""
        if landing_unit >= len(orig_of) - 1 or orig_of[landing_unit] != src:
            return landing_unit
        if dis.opname[shadow.co_code[landing_unit * 2]] not in PROBE_STARTS:
            return landing_unit
        tail = landing_unit + probe_units(shadow, landing_unit)
        jump = next(i for i in shadow_instructions
                    if i.offset >= tail * 2 and i.opname != "EXTENDED_ARG")
        if jump.opcode not in dis.hasjrel or orig_of[jump.offset // 2] != src:
            return landing_unit
        return jump.argval // 2

    for ins in shadow_instructions:
        src = orig_of[ins.offset // 2]
        # Jumps of the original only: probes, line skips and stubs stand for
        # other instructions.
        if ins.opcode not in dis.hasjrel or src not in orig_jumps or \
                shadow_of[src] != ins.offset // 2:
            continue
        at = follow(ins.argval // 2, src)
        # A probe for the jump itself may come first where it lands (the
        # STOP_ITERATION probe of a SEND): what follows it is the target.
        while shadow_of[orig_of[at]] != at and orig_of[at] == src:
            at += 1
        # After it, a jump over the LINE probe when the jump comes from the
        # target's own line.
        if dis.opname[shadow.co_code[at * 2]] == "JUMP_FORWARD" and shadow_of[orig_of[at]] != at:
            at += 1 + shadow.co_code[at * 2 + 1]
        landing = orig_of[at]
        if instruction_of(landing) != instruction_of(orig_jumps[src]):
                problems.append("jump at shadow %d lands on original %d, wanted %d"
                                % (ins.offset, landing, orig_jumps[src]))
                break
    # throw() into a frame suspended in a `yield from` loop that the
    # subiterator ends resumes it with the exception at the unit before where
    # the loop's SEND jumps: that unit must be handled as the SEND is.
    for ins in shadow_instructions:
        if ins.opname == "SEND":
            before_target = ins.argval // 2 - 1
            if handler_at(shadow_entries, before_target) != handler_at(shadow_entries, ins.offset // 2):
                problems.append("the unit before where the SEND at shadow %d jumps is handled otherwise"
                                % ins.offset)
                break
    # A probe that can move its frame jumps to a stub calling the landing
    # function (from a depth that leaves room for the call).
    probes = shadow.co_consts[len(code.co_consts)]
    landing = shadow.co_consts[len(code.co_consts) + 1]
    for before, ins, after in zip(shadow_instructions, shadow_instructions[1:],
                                  shadow_instructions[2:]):
        if ins.opname not in PROBE_ENDS or before.opname != "LOAD_CONST" or \
                before.argval is not probes:
            continue
        # One that cannot divert jumps by 0, or, before the YIELD_VALUE of
        # a `yield from`, carries the distance CPython reads there.
        if ins.argval == after.offset or after.opname == "YIELD_VALUE":
            continue
        stub = [i for i in shadow_instructions if i.offset >= ins.argval][:5]
        names = [i.opname for i in stub]
        if names != ["PUSH_NULL", "LOAD_CONST", "PRECALL", "CALL", "RETURN_VALUE"] or \
                stub[1].argval is not landing:
            problems.append("probe jump at shadow %d goes to %r, not a divert stub" % (ins.offset, names))
            break
    if shadow.co_stacksize < code.co_stacksize:
        problems.append("stack size shrank")
    # Entry trampolines size frames by this bound; generator-like objects
    # have two spare slots.
    spare = 2 if code.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR) else 1
    if shadow.co_stacksize > max(code.co_stacksize + spare, 3):
        problems.append("stack size %d beyond the bound" % shadow.co_stacksize)
    return problems


def main(root: str, check=check) -> int:
    """Checks every code object of the .py files under root (with ``check``)."""
    import pathlib

    bad = files = codes = 0
    for path in sorted(pathlib.Path(root).rglob("*.py")):
        try:
            source = path.read_text(encoding="utf-8")
            top = compile(source, str(path), "exec")
        except Exception:
            continue
        files += 1
        for code in walk_code(top):
            codes += 1
            problems = check(code)
            if problems:
                bad += 1
                print(path, code.co_name, code.co_firstlineno, problems[:3])
    print("%d files, %d code objects, %d with problems" % (files, codes, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
