"""INSTRUCTION: one event before each executed instruction (RESUME excluded).

Offsets are compared with dis.get_instructions() of the same interpreter.
Only one tool enables INSTRUCTION at a time: with two tools on the same code
object native 3.12/3.13 drop the first tool's callbacks (gh-157900).
"""

from __future__ import annotations

import sys

from typing import Any

from .helpers import (
    RETURN_OPNAMES,
    Event,
    Recorder,
    Tool,
    instruction_offsets,
    instructions,
    is_branch_opname,
    is_jump_opname,
    line_of_offset,
    next_instruction_offset,
    offset_of,
    offsets_of,
    opname_at,
    resume_offset,
)

NO_RESUME = sys.version_info < (3, 11)


def body_offsets(target: Any) -> list[int]:
    """Instructions after the first RESUME.

    The prologue before it (MAKE_CELL, COPY_FREE_VARS, RETURN_GENERATOR, ...)
    runs before the frame starts and is never reported.  3.10 has no RESUME:
    its frames start at a real instruction, which is reported.
    """
    start = resume_offset(target)
    return [o for o in instruction_offsets(target) if o > start or (NO_RESUME and o == start)]


def executed(rec: Recorder, code: Any = None) -> list[int]:
    return [e.offset for e in rec.only("INSTRUCTION") if code is None or e.code is code]


def check_path(events: list[Event]) -> None:
    """INSTRUCTION offsets follow the code: fall through, or go where a JUMP/BRANCH said.

    Followed per code object: a comprehension is a function of its own before
    3.12, whose events come between those of the code that calls it.
    """
    previous: dict = {}
    redirected: dict = {}
    for e in events:
        if e.name in ("JUMP", "BRANCH"):
            assert previous.get(e.code) == e.offset, "%s not preceded by its INSTRUCTION" % (e,)
            redirected[e.code] = e.value
        elif e.name == "INSTRUCTION":
            if e.code in previous:
                target = redirected.get(e.code)
                expected = target if target is not None else next_instruction_offset(e.code, previous[e.code])
                assert e.offset == expected, (previous[e.code], e.offset, target)
            previous[e.code], redirected[e.code] = e.offset, None


# --------------------------------------------------------------------------


def test_straight_line_function_executes_every_instruction(M: Any, tool: Tool) -> None:
    def f(a: int) -> int:
        b = a + 1
        c = b * 2
        return c

    with Recorder(tool, M.events.INSTRUCTION, f) as rec:
        assert f(1) == 4
    assert executed(rec) == body_offsets(f)
    assert all(len(e.args) == 1 for e in rec.events)


def test_no_instruction_event_for_resume(M: Any, tool: Tool) -> None:
    def f() -> None:
        return None

    with Recorder(tool, M.events.INSTRUCTION, f) as rec:
        f()
    assert (resume_offset(f) in executed(rec)) == NO_RESUME
    assert executed(rec) == body_offsets(f)


def test_offsets_are_instruction_starts_never_caches(M: Any, tool: Tool) -> None:
    def f(d: dict) -> Any:
        total = 0
        for k in d:
            total += d[k] * len(str(k))
        return total

    with Recorder(tool, M.events.INSTRUCTION, f) as rec:
        f({"a": 1, "bb": 2})
    starts = set(instruction_offsets(f))
    assert set(executed(rec)) <= starts


def test_order_line_instruction_own_event(M: Any, tool: Tool) -> None:
    def f(a: int) -> int:
        b = a + 1
        return len([b])

    E = M.events
    events = E.INSTRUCTION | E.LINE | E.CALL | E.C_RETURN | E.C_RAISE | E.PY_RETURN | E.PY_START
    with Recorder(tool, events, f) as rec:
        f(1)
    # Built from dis: LINE at each new line, INSTRUCTION for each instruction,
    # then the instruction's own events.
    expected: list[tuple] = [("PY_START", "f")]
    last_line = None
    for instr in instructions(f):
        if instr.opname == "RESUME":
            continue
        line = line_of_offset(f, instr.offset)
        if line != last_line:
            expected.append(("LINE", "f", line - f.__code__.co_firstlineno))
            last_line = line
        expected.append(("INSTRUCTION", "f", instr.offset))
        if instr.opname in ("CALL", "CALL_KW", "CALL_FUNCTION"):
            expected += [("CALL", "f", len, [2]), ("C_RETURN", "f", len, [2])]
        if instr.opname in RETURN_OPNAMES:
            expected.append(("PY_RETURN", "f", 1))
    assert rec.compact() == expected


def test_branching_path(M: Any, tool: Tool) -> None:
    def f(a: bool) -> str:
        if a:
            r = "yes"
        else:
            r = "no"
        return r

    E = M.events
    for arg in (True, False):
        with Recorder(tool, E.INSTRUCTION | E.BRANCH | E.JUMP, f) as rec:
            f(arg)
        check_path(rec.events)
        ran = executed(rec)
        skipped = [i.offset for i in instructions(f) if i.argval == ("no" if arg else "yes")]
        assert not set(skipped) & set(ran)
        assert ran[-1] in offsets_of(f, *RETURN_OPNAMES)


def test_loop_path(M: Any, tool: Tool) -> None:
    def f() -> int:
        n = 0
        for i in range(3):
            n += i
        return n

    E = M.events
    with Recorder(tool, E.INSTRUCTION | E.BRANCH | E.JUMP, f) as rec:
        assert f() == 3
    check_path(rec.events)
    assert executed(rec).count(offset_of(f, "FOR_ITER")) == 4
    assert [e.name for e in rec.events if e.name != "INSTRUCTION"].count("JUMP") == 3


def test_instruction_before_branch_and_jump(M: Any, tool: Tool) -> None:
    def f() -> list:
        return [x for x in range(2) if x]

    E = M.events
    with Recorder(tool, E.INSTRUCTION | E.BRANCH | E.JUMP, f, nested=True) as rec:
        f()
    check_path(rec.events)
    for i, e in enumerate(rec.events):
        if e.name in ("BRANCH", "JUMP"):
            before = rec.events[i - 1]
            assert before.name == "INSTRUCTION" and before.offset == e.offset
            op = opname_at(e.code, e.offset)
            assert is_branch_opname(op) if e.name == "BRANCH" else is_jump_opname(op)


def test_generator_instructions_across_yield(M: Any, tool: Tool) -> None:
    def g() -> Any:
        x = yield 1
        return x

    E = M.events
    with Recorder(tool, E.INSTRUCTION | E.PY_YIELD | E.PY_RESUME | E.PY_RETURN, g) as rec:
        it = g()
        next(it)
        try:
            it.send(5)
        except StopIteration:
            pass
    names = rec.names()
    y = names.index("PY_YIELD")
    assert rec.events[y - 1].name == "INSTRUCTION" and rec.events[y - 1].offset == rec.events[y].offset
    assert opname_at(g, rec.events[y].offset) == "YIELD_VALUE"
    r = names.index("PY_RESUME")
    resumed_at = rec.events[r].offset
    # Execution continues after the RESUME, which itself is not reported.
    assert rec.events[r + 1].name == "INSTRUCTION"
    if NO_RESUME:
        # 3.10 resumes at the instruction after YIELD_VALUE, a real one.
        assert rec.events[r + 1].offset == resumed_at
    else:
        assert rec.events[r + 1].offset == next_instruction_offset(g, resumed_at)
        assert resumed_at not in executed(rec)
    assert names[-2:] == ["INSTRUCTION", "PY_RETURN"]
    assert set(executed(rec)) <= set(body_offsets(g))


def test_exception_handler_instructions(M: Any, tool: Tool) -> None:
    def f() -> str:
        try:
            raise KeyError
        except KeyError:
            return "caught"

    E = M.events
    with Recorder(tool, E.INSTRUCTION | E.RAISE | E.EXCEPTION_HANDLED, f) as rec:
        f()
    names = rec.names()
    h = names.index("EXCEPTION_HANDLED")
    handler = rec.events[h].offset
    assert names[h - 1] == "RAISE"
    assert rec.events[h + 1].name == "INSTRUCTION" and rec.events[h + 1].offset == handler
    assert opname_at(f, rec.events[h - 2].offset) == "RAISE_VARARGS"


def test_instruction_and_line_are_independent(M: Any, tool: Tool) -> None:
    def f() -> int:
        n = 0
        for i in range(2):
            n += i
        return n

    with Recorder(tool, M.events.LINE, f) as lines_only:
        f()
    with Recorder(tool, M.events.LINE | M.events.INSTRUCTION, f) as both:
        f()
    assert both.compact("LINE") == lines_only.compact()


def test_turning_instruction_off_keeps_line(M: Any, tool: Tool) -> None:
    def f() -> int:
        a = 1
        return a

    with Recorder(tool, M.events.LINE | M.events.INSTRUCTION, f) as rec:
        f()
        rec.clear()
        tool.set_events(M.events.LINE)
        f()
    assert rec.compact() == [("LINE", "f", 1), ("LINE", "f", 2)]


def test_local_instruction_only_that_code(M: Any, tool: Tool) -> None:
    def g() -> int:
        return 1

    def f() -> int:
        return g() + 1

    with Recorder(tool, M.events.INSTRUCTION, f, local=True, record_all=True) as rec:
        f()
    assert {e.code for e in rec.events} == {f.__code__}
    assert executed(rec) == body_offsets(f)


def test_disable_instruction_only_that_offset(M: Any, tool: Tool) -> None:
    def f(a: int) -> int:
        b = a + 1
        return b

    offs = body_offsets(f)
    target = offs[1]
    with Recorder(tool, M.events.INSTRUCTION, f, returns=lambda e: M.DISABLE if e.offset == target else None) as rec:
        f(1)
        f(2)
    assert executed(rec) == offs + [o for o in offs if o != target]


def test_disable_every_instruction_then_restart(M: Any, tool: Tool) -> None:
    def f(a: int) -> int:
        return a + 1

    with Recorder(tool, M.events.INSTRUCTION, f, returns=M.DISABLE) as rec:
        f(1)
        count = len(rec.events)
        f(1)
        assert len(rec.events) == count
        M.restart_events()
        f(1)
    assert len(rec.events) == 2 * count


def test_instruction_callback_frame(M: Any, tool: Tool) -> None:
    import sys

    def f() -> int:
        return 1

    frames: list[bool] = []
    tool.register(M.events.INSTRUCTION, lambda code, off: frames.append(sys._getframe(1).f_code is code))
    tool.set_local(f, M.events.INSTRUCTION)
    f()
    assert frames and all(frames)
