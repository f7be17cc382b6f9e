"""JUMP and BRANCH.

``offset`` is the jumping instruction, ``destination`` where execution
continues.  Expected destinations come from dis: a branch not taken goes to
the next instruction (after any inline cache), a taken one to the jump
target; an exhausted FOR_ITER skips the loop cleanup
(:func:`helpers.for_iter_exit_offset`).  Which way is "taken" depends on
the compiler (it may invert conditions), so tests name the destination by
what runs there (a line, a constant) rather than by taken/not taken.
"""

from __future__ import annotations

from typing import Any

from .helpers import (
    Event,
    Recorder,
    Tool,
    branch_destinations,
    first_offset_of_line,
    for_iter_exit_offset,
    instructions,
    is_branch_opname,
    is_jump_opname,
    jump_target,
    next_instruction_offset,
    offset_of,
    offsets_of,
    opname_at,
)


def JB(M: Any) -> int:
    return M.events.JUMP | M.events.BRANCH


def const_offset(target: Any, value: Any) -> int:
    """Offset of the instruction that loads (or returns) the constant *value*."""
    found = [i.offset for i in instructions(target) if i.opname in ("LOAD_CONST", "RETURN_CONST") and i.argval == value]
    assert len(found) == 1, found
    return found[0]


def check_well_formed(events: list[Event]) -> None:
    """Every BRANCH/JUMP names a branch/jump instruction and a destination dis allows."""
    for e in events:
        op = opname_at(e.code, e.offset)
        if e.name == "BRANCH":
            assert is_branch_opname(op), (e, op)
            assert e.value in branch_destinations(e.code, e.offset), (e, op)
        else:
            assert is_jump_opname(op), (e, op)
            assert e.value == jump_target(e.code, e.offset), (e, op)


# --------------------------------------------------------------------------
# if statements and conditional expressions


def test_if_branch_both_directions(M: Any, tool: Tool) -> None:
    def f(a: bool) -> int:
        x = 0
        if a:
            x = 1
        return x

    with Recorder(tool, JB(M), f) as rec:
        f(True)
        f(False)
    check_well_formed(rec.events)
    assert [e.name for e in rec.events] == ["BRANCH", "BRANCH"]
    assert rec.events[0].offset == rec.events[1].offset
    assert rec.events[0].value == first_offset_of_line(f, 3)
    assert rec.events[1].value == first_offset_of_line(f, 4)
    assert rec.events[0].args == (rec.events[0].offset, rec.events[0].value)


def test_branch_destinations_are_next_instruction_or_target(M: Any, tool: Tool) -> None:
    def f(a: bool) -> int:
        if a:
            return 1
        return 2

    with Recorder(tool, M.events.BRANCH, f) as rec:
        f(True)
        f(False)
    [b1, b2] = rec.events
    assert b1.offset == b2.offset
    assert {b1.value, b2.value} == {next_instruction_offset(f, b1.offset), jump_target(f, b1.offset)}


def test_if_elif_else_chain(M: Any, tool: Tool) -> None:
    def f(n: int) -> str:
        if n == 0:
            r = "zero"
        elif n == 1:
            r = "one"
        else:
            r = "many"
        return r

    for n, then_line, count in ((0, 2, 1), (1, 4, 2), (5, 6, 2)):
        with Recorder(tool, M.events.BRANCH, f) as rec:
            f(n)
        check_well_formed(rec.events)
        assert len(rec.events) == count, n
        assert rec.events[-1].value == first_offset_of_line(f, then_line), n


def test_conditional_expression(M: Any, tool: Tool) -> None:
    def f(c: Any) -> str:
        r = "yes" if c else "no"
        return r

    with Recorder(tool, JB(M), f) as rec:
        assert f(1) == "yes"
        assert f(0) == "no"
    check_well_formed(rec.events)
    # 3.11 also jumps over the else part (a JUMP event); 3.12 and 3.13 do not.
    branches = rec.only("BRANCH")
    assert len(branches) == 2
    assert [e.value for e in branches] == [const_offset(f, "yes"), const_offset(f, "no")]


def test_and_short_circuit(M: Any, tool: Tool) -> None:
    def f(x: Any, y: Any) -> Any:
        r = x and y
        return r

    store = offset_of(f, "STORE_FAST")
    with Recorder(tool, JB(M), f) as rec:
        assert f(0, 1) == 0
        assert f(1, 2) == 2
    check_well_formed(rec.events)
    assert rec.names() == ["BRANCH", "BRANCH"]
    short, full = rec.events
    assert short.value == store
    assert full.value == next_instruction_offset(f, full.offset)


def test_or_short_circuit(M: Any, tool: Tool) -> None:
    def f(x: Any, y: Any) -> Any:
        r = x or y
        return r

    store = offset_of(f, "STORE_FAST")
    with Recorder(tool, JB(M), f) as rec:
        assert f(3, 1) == 3
        assert f(0, 2) == 2
    check_well_formed(rec.events)
    short, full = rec.events
    assert short.value == store
    assert full.value == next_instruction_offset(f, full.offset)


def test_is_none_test(M: Any, tool: Tool) -> None:
    def f(x: Any) -> str:
        if x is None:
            return "none"
        return "some"

    with Recorder(tool, M.events.BRANCH, f) as rec:
        f(None)
        f(1)
    check_well_formed(rec.events)
    assert [e.value for e in rec.events] == [first_offset_of_line(f, 2), first_offset_of_line(f, 3)]


def test_branch_precedes_line_of_destination(M: Any, tool: Tool) -> None:
    def f(a: bool) -> int:
        if a:
            return 1
        return 2

    with Recorder(tool, M.events.BRANCH | M.events.LINE, f) as rec:
        f(False)
    assert [e[0] if e[0] == "BRANCH" else e for e in rec.compact()] == [
        ("LINE", "f", 1),
        "BRANCH",
        ("LINE", "f", 3),
    ]


# --------------------------------------------------------------------------
# Loops


def test_for_loop_branches_and_jumps(M: Any, tool: Tool) -> None:
    def f() -> int:
        total = 0
        for i in range(3):
            total += i
        return total

    for_iter = offset_of(f, "FOR_ITER")
    with Recorder(tool, JB(M), f) as rec:
        f()
    check_well_formed(rec.events)
    cont = ("BRANCH", "f", for_iter, next_instruction_offset(f, for_iter))
    back = [e for e in rec.compact() if e[0] == "JUMP"][0]
    assert back[3] == for_iter
    assert rec.compact() == [cont, back] * 3 + [("BRANCH", "f", for_iter, for_iter_exit_offset(f, for_iter))]


def test_for_loop_exit_goes_to_code_after_loop(M: Any, tool: Tool) -> None:
    def f() -> int:
        for i in range(2):
            pass
        return 7

    with Recorder(tool, M.events.BRANCH, f) as rec:
        f()
    assert rec.events[-1].value == first_offset_of_line(f, 3)


def test_empty_for_loop(M: Any, tool: Tool) -> None:
    def f() -> int:
        for i in ():
            return 1
        return 2

    with Recorder(tool, JB(M), f) as rec:
        assert f() == 2
    for_iter = offset_of(f, "FOR_ITER")
    assert rec.compact() == [("BRANCH", "f", for_iter, first_offset_of_line(f, 3))]


def test_while_loop(M: Any, tool: Tool) -> None:
    def f() -> int:
        i = 0
        while i < 3:
            i += 1
        return i

    with Recorder(tool, JB(M), f) as rec:
        f()
    check_well_formed(rec.events)
    branches = rec.only("BRANCH")
    # One test per iteration and one that leaves the loop.
    assert len(branches) == 4
    assert branches[-1].value == first_offset_of_line(f, 4)
    body = first_offset_of_line(f, 3)
    for b in branches[:-1]:
        # Straight into the body, or onto a jump back to it (loop test at the bottom).
        assert b.value == body or (is_jump_opname(opname_at(f, b.value)) and jump_target(f, b.value) == body), b


def test_while_true_with_break(M: Any, tool: Tool) -> None:
    def f() -> int:
        i = 0
        while True:
            i += 1
            if i == 3:
                break
        return i

    with Recorder(tool, JB(M), f) as rec:
        assert f() == 3
    check_well_formed(rec.events)
    branches = rec.only("BRANCH")
    assert len(branches) == 3
    assert branches[-1].value == first_offset_of_line(f, 5)
    body = first_offset_of_line(f, 3)
    for b in branches[:-1]:
        dest = b.value
        assert dest == body or (is_jump_opname(opname_at(f, dest)) and jump_target(f, dest) == body), b
    # The jumps back to the loop's body, one per branch to a jump (3.9's
    # branches go to the body themselves; 3.11 also jumps out at `break`).
    via_jump = [b for b in branches[:-1] if b.value != body]
    assert len([j for j in rec.only("JUMP") if j.value == body]) == len(via_jump)


def test_for_loop_with_continue(M: Any, tool: Tool) -> None:
    def f() -> list:
        out = []
        for i in range(4):
            if i % 2:
                continue
            out.append(i)
        return out

    with Recorder(tool, JB(M), f) as rec:
        assert f() == [0, 2]
    check_well_formed(rec.events)
    for_iter = offset_of(f, "FOR_ITER")
    assert [e.offset for e in rec.only("BRANCH")].count(for_iter) == 5
    assert len(rec.only("BRANCH")) == 9
    assert all(e.value == for_iter for e in rec.only("JUMP"))


def test_nested_loops(M: Any, tool: Tool) -> None:
    def f() -> int:
        n = 0
        for i in range(2):
            for j in range(3):
                n += 1
        return n

    with Recorder(tool, JB(M), f) as rec:
        assert f() == 6
    check_well_formed(rec.events)
    outer, inner = offsets_of(f, "FOR_ITER")
    assert [e.offset for e in rec.only("BRANCH")].count(outer) == 3
    assert [e.offset for e in rec.only("BRANCH")].count(inner) == 8
    assert len(rec.only("JUMP")) == 8


def test_list_comprehension_branches(M: Any, tool: Tool) -> None:
    # The comprehension is its own code object on 3.11 and inlined from 3.12.
    def f(data: list) -> list:
        return [x for x in data if x]

    with Recorder(tool, JB(M), f, nested=True) as rec:
        assert f([0, 1, 2]) == [1, 2]
    check_well_formed(rec.events)
    branches = rec.only("BRANCH")
    for_iters = [b for b in branches if opname_at(b.code, b.offset) == "FOR_ITER"]
    assert len(for_iters) == 4
    assert len(branches) - len(for_iters) == 3


def test_generator_expression_branches(M: Any, tool: Tool) -> None:
    def f(data: list) -> int:
        return sum(x for x in data)

    with Recorder(tool, M.events.BRANCH, f, nested=True) as rec:
        assert f([1, 2]) == 3
    check_well_formed(rec.events)
    assert [opname_at(e.code, e.offset) for e in rec.events] == ["FOR_ITER"] * 3
    assert all(e.code.co_name == "<genexpr>" for e in rec.events)


def test_branches_in_generator_across_yields(M: Any, tool: Tool) -> None:
    def g(n: int) -> Any:
        for i in range(n):
            if i % 2:
                yield i

    with Recorder(tool, JB(M), g) as rec:
        assert list(g(4)) == [1, 3]
    check_well_formed(rec.events)
    for_iter = offset_of(g, "FOR_ITER")
    assert [e.offset for e in rec.only("BRANCH")].count(for_iter) == 5
    assert len(rec.only("BRANCH")) == 9


# --------------------------------------------------------------------------
# Unconditional jumps


def test_jump_over_else(M: Any, tool: Tool) -> None:
    def f(v: bool) -> int:
        if v:
            x = 1
        else:
            x = 2
        for i in range(1):
            x += i
        return x

    with Recorder(tool, M.events.JUMP, f) as rec:
        f(True)
    check_well_formed(rec.events)
    forward = [e for e in rec.events if opname_at(f, e.offset) == "JUMP_FORWARD"]
    assert len(forward) == 1
    assert forward[0].value == first_offset_of_line(f, 5)


def test_no_jump_or_branch_for_yield_from(M: Any, tool: Tool) -> None:
    def inner() -> Any:
        yield 1
        yield 2

    def outer() -> Any:
        yield from inner()

    with Recorder(tool, JB(M), outer) as rec:
        assert list(outer()) == [1, 2]
    assert rec.events == []


def test_no_jump_or_branch_for_await(M: Any, tool: Tool) -> None:
    import types

    @types.coroutine
    def suspend() -> Any:
        yield

    async def c() -> int:
        await suspend()
        await suspend()
        return 1

    with Recorder(tool, JB(M), c) as rec:
        coro = c()
        coro.send(None)
        coro.send(None)
        try:
            coro.send(None)
        except StopIteration:
            pass
    assert rec.events == []


def test_straight_line_code_has_no_jumps(M: Any, tool: Tool) -> None:
    def f(a: int) -> int:
        b = a + 1
        c = b * 2
        return c

    with Recorder(tool, JB(M), f) as rec:
        f(1)
    assert rec.events == []


# --------------------------------------------------------------------------
# Local events and DISABLE


def test_local_branch_only_that_code(M: Any, tool: Tool) -> None:
    def g(a: bool) -> int:
        return 1 if a else 2

    def f(a: bool) -> int:
        if a:
            return g(a)
        return g(a)

    with Recorder(tool, JB(M), f, local=True, record_all=True) as rec:
        f(True)
    assert {e.code for e in rec.events} == {f.__code__}
    assert len(rec.events) == 1


def test_disable_branch_silences_both_directions(M: Any, tool: Tool) -> None:
    def f(a: bool) -> int:
        if a:
            return 1
        return 2

    with Recorder(tool, M.events.BRANCH, f, returns=M.DISABLE) as rec:
        f(True)
        f(False)
        f(True)
    assert len(rec.events) == 1


def test_disable_one_branch_keeps_others(M: Any, tool: Tool) -> None:
    def f(a: bool, b: bool) -> int:
        r = 0
        if a:
            r += 1
        if b:
            r += 2
        return r

    first = [o for o in offsets_of(f, *{i.opname for i in instructions(f) if is_branch_opname(i.opname)})][0]
    with Recorder(tool, M.events.BRANCH, f, returns=lambda e: M.DISABLE if e.offset == first else None) as rec:
        f(True, True)
        f(False, False)
    assert [e.offset for e in rec.events].count(first) == 1
    assert len(rec.events) == 3


def test_disable_jump_then_restart(M: Any, tool: Tool) -> None:
    def f() -> int:
        n = 0
        for i in range(3):
            n += i
        return n

    with Recorder(tool, M.events.JUMP, f, returns=M.DISABLE) as rec:
        f()
        assert len(rec.events) == 1
        M.restart_events()
        f()
    assert len(rec.events) == 2


def test_for_loop_with_disabled_branch_still_iterates(M: Any, tool: Tool) -> None:
    def f() -> list:
        return [i for i in range(5)]

    with Recorder(tool, JB(M), f, nested=True, returns=M.DISABLE):
        assert f() == [0, 1, 2, 3, 4]
        assert f() == [0, 1, 2, 3, 4]


def test_disabled_branches_of_a_long_function_run_right_and_come_back(M: Any, tool: Tool) -> None:
    # Jumps over a long body need EXTENDED_ARG: a disabled branch or jump
    # must still go where the program goes, both ways, until restart_events().
    lines = ["def f(a, n):", "    t = 0", "    for i in range(n):", "        if a > i:"]
    lines += ["            t += %d" % k for k in range(120)]
    lines += ["        else:", "            t -= 1", "    return t"]
    namespace: dict = {}
    exec(compile("\n".join(lines) + "\n", "<long>", "exec"), namespace)
    f = namespace["f"]
    assert any(i.opname == "EXTENDED_ARG" for i in instructions(f))
    expected = [f(a, 4) for a in range(5)]
    with Recorder(tool, JB(M), f, returns=M.DISABLE) as rec:
        assert [f(a, 4) for a in range(5)] == expected
        check_well_formed(rec.events)
        first = sorted(e.args for e in rec.events)
        assert len({e.offset for e in rec.events}) == len(first)
        assert [f(a, 4) for a in range(5)] == expected
        assert sorted(e.args for e in rec.events) == first
        M.restart_events()
        assert [f(a, 4) for a in range(5)] == expected
    assert sorted(e.args for e in rec.events) == sorted(first * 2)


def test_except_clause_tests_are_branches(M: Any, tool: Tool) -> None:
    # 3.12 tests the exception's type with a conditional jump (3.10 with
    # JUMP_IF_NOT_EXC_MATCH): a BRANCH per clause tried, match or not.
    def f(e: BaseException) -> str:
        try:
            raise e
        except KeyError:
            return "key"
        except Exception:
            return "other"

    with Recorder(tool, M.events.BRANCH, f) as rec:
        assert f(KeyError()) == "key"
        assert f(ValueError()) == "other"
    check_well_formed(rec.events)
    key_match, key_miss, other_match = rec.events
    assert key_match.offset == key_miss.offset != other_match.offset
    assert key_match.value != key_miss.value
    assert other_match.offset > key_miss.offset
