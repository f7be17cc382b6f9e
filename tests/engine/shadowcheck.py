"""Consistency checks of instrumented copies (shadows) against their originals.

Used by the tests and runnable alone over a whole directory tree:
``python tests/engine/shadowcheck.py /path/to/Lib``.
"""

from __future__ import annotations

import dis
import sys
from types import CodeType
from typing import Iterator, List, Tuple

from lowimpact import _engine, monitoring

ALL_PROBED = (
    monitoring.events.PY_START
    | monitoring.events.PY_RESUME
    | monitoring.events.PY_RETURN
    | monitoring.events.PY_YIELD
    | monitoring.events.LINE
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


def check(code: CodeType, events: int = ALL_PROBED) -> List[str]:
    """Problems found in the shadow of ``code`` (empty when consistent)."""
    shadow, orig_of = _engine._debug_shadow(code, events)
    problems = []
    units = len(code.co_code) // 2
    if len(orig_of) != len(shadow.co_code) // 2:
        return ["map length differs"]
    orig_pos = list(code.co_positions())
    shadow_pos = list(shadow.co_positions())
    for su, u in enumerate(orig_of):
        if not 0 <= u < units:
            problems.append("unit %d maps outside the original" % su)
            continue
        if shadow_pos[su] != orig_pos[u]:
            problems.append("positions of shadow unit %d %r != original unit %d %r"
                            % (su, shadow_pos[su], u, orig_pos[u]))
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
    for su, u in enumerate(orig_of):
        want = handler_at(orig_entries, u)
        got = handler_at(shadow_entries, su)
        if (want is None) != (got is None):
            problems.append("handler coverage differs at shadow unit %d" % su)
            break
        if want is not None:
            if want[1:] != got[1:] or instruction_of(orig_of[got[0]]) != want[0]:
                problems.append("handler differs at shadow unit %d: %r vs %r" % (su, got, want))
                break
    orig_jumps = {}
    for ins in dis.get_instructions(code):
        if ins.opcode in dis.hasjrel:
            orig_jumps[ins.offset // 2] = ins.argval // 2
    for ins in dis.get_instructions(shadow):
        src = orig_of[ins.offset // 2]
        # Jumps of the original; the JUMP_FORWARDs of disabled probes and of
        # line skips stand for other instructions.
        if ins.opcode not in dis.hasjrel or src not in orig_jumps or \
                code.co_code[src * 2] != ins.opcode:
            continue
        landing = orig_of[ins.argval // 2]
        if instruction_of(landing) != instruction_of(orig_jumps[src]):
                problems.append("jump at shadow %d lands on original %d, wanted %d"
                                % (ins.offset, landing, orig_jumps[src]))
                break
    if shadow.co_stacksize < code.co_stacksize:
        problems.append("stack size shrank")
    return problems


def main(root: str) -> int:
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
