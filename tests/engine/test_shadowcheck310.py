"""shadowcheck310 finds what is wrong in a 3.9 or 3.10 shadow.

Each test damages the shadow the back end builds for a small function the
way a bug of shadow.c would (a jump off by one unit, a stack too small, a
line moved, a map entry, two sites swapped, an argument changed) and
asserts that the check names it; the undamaged shadow passes.
"""

from __future__ import annotations

import dis
import sys
import types

import pytest

if sys.version_info[:2] not in ((3, 9), (3, 10)):
    pytest.skip("the checker of the block-stack back end's shadows (3.9, 3.10)",
                allow_module_level=True)

from lowimpact import _engine  # noqa: E402

from . import shadowcheck310  # noqa: E402


def helper(i):
    return i


def sample(items):
    total = 0
    try:
        for i in items:
            if i:
                total += helper(i)
    except ValueError:
        pass
    return total


def check_damaged(monkeypatch, damage):
    """Problems the check finds in the shadow of `sample` once `damage`
    (shadow, orig_of, shadow_of) -> the same has changed it."""
    def debug_shadow(code, events):
        return damage(*_engine._debug_shadow(code, events))
    monkeypatch.setattr(shadowcheck310, "_engine",
                        types.SimpleNamespace(_debug_shadow=debug_shadow))
    return shadowcheck310.check(sample.__code__)


def first(shadow, opname):
    return next(i for i in dis.get_instructions(shadow) if i.opname == opname)


def with_byte(shadow, offset, value):
    code = bytearray(shadow.co_code)
    code[offset] = value
    return shadow.replace(co_code=bytes(code))


def test_the_shadow_as_built_passes(monkeypatch):
    assert check_damaged(monkeypatch, lambda *shadow: shadow) == []


def test_a_jump_one_unit_off(monkeypatch):
    def damage(shadow, orig_of, shadow_of):
        jump = first(shadow, "JUMP_ABSOLUTE")
        one_unit = shadowcheck310.JUMP_SCALE
        return with_byte(shadow, jump.offset + 1, jump.arg + one_unit), orig_of, shadow_of
    problems = check_damaged(monkeypatch, damage)
    assert any("lands at shadow" in p for p in problems), problems


def test_a_handler_set_up_elsewhere(monkeypatch):
    def damage(shadow, orig_of, shadow_of):
        setup = first(shadow, "SETUP_FINALLY")
        three_units = 3 * shadowcheck310.JUMP_SCALE
        return with_byte(shadow, setup.offset + 1, setup.arg - three_units), orig_of, shadow_of
    problems = check_damaged(monkeypatch, damage)
    assert any("the handler set up by" in p for p in problems), problems


def test_a_stack_one_slot_short(monkeypatch):
    def damage(shadow, orig_of, shadow_of):
        return shadow.replace(co_stacksize=shadow.co_stacksize - 1), orig_of, shadow_of
    problems = check_damaged(monkeypatch, damage)
    assert any("deep, its co_stacksize is" in p for p in problems), problems


def test_a_stack_one_slot_too_many(monkeypatch):
    def damage(shadow, orig_of, shadow_of):
        return shadow.replace(co_stacksize=shadow.co_stacksize + 1), orig_of, shadow_of
    problems = check_damaged(monkeypatch, damage)
    assert any(p.startswith("co_stacksize") for p in problems), problems


def test_a_probe_on_another_line(monkeypatch):
    def damage(shadow, orig_of, shadow_of):
        # The first entry's line delta (3.9's co_lnotab pairs and 3.10's
        # co_linetable entries are both (bytes, line delta)).
        name = "co_lnotab" if sys.version_info[:2] == (3, 9) else "co_linetable"
        table = bytearray(getattr(shadow, name))
        table[1] += 1
        return shadow.replace(**{name: bytes(table)}), orig_of, shadow_of
    problems = check_damaged(monkeypatch, damage)
    assert any("is on line" in p for p in problems), problems
    assert any("dis line starts differ" in p for p in problems), problems


def test_a_unit_mapped_to_another_instruction(monkeypatch):
    def damage(shadow, orig_of, shadow_of):
        orig_of = list(orig_of)
        orig_of[5] += 1
        return shadow, orig_of, shadow_of
    problems = check_damaged(monkeypatch, damage)
    assert any("orig_of[5]" in p for p in problems), problems


def test_two_sites_swapped(monkeypatch):
    def damage(shadow, orig_of, shadow_of):
        consts = list(shadow.co_consts)
        n = len(sample.__code__.co_consts)
        consts[n], consts[n + 1] = consts[n + 1], consts[n]
        return shadow.replace(co_consts=tuple(consts)), orig_of, shadow_of
    problems = check_damaged(monkeypatch, damage)
    assert any("probes before original instruction 0" in p for p in problems), problems


def test_an_argument_changed(monkeypatch):
    def damage(shadow, orig_of, shadow_of):
        load = first(shadow, "LOAD_FAST")
        return with_byte(shadow, load.offset + 1, 1 - load.arg), orig_of, shadow_of
    problems = check_damaged(monkeypatch, damage)
    assert any("copied with other bytes" in p for p in problems), problems
