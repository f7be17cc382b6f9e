"""``lowimpact.profile.Profile`` is used as ``cProfile.Profile`` is."""

from __future__ import annotations

import cProfile
import io
import marshal
import pstats
import sys
import threading

import pytest

from profile_helpers import needs_engine

pytestmark = needs_engine


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def workload():
    fib(10)
    words = "a b c".split()
    words.append("d")
    return len(words) + sum(x for x in range(5))


def here(stats):
    """Counts and callers of this file's functions and of what they call."""
    def mine(key):
        return key[0] == __file__

    result = {}
    for key, (cc, nc, _tt, _ct, callers) in stats.items():
        kept = {c: v[:2] for c, v in callers.items() if mine(c)}
        if mine(key) or kept:
            result[key] = (cc, nc, kept) if not mine(key) else (cc, nc, kept)
    return result


def profiled(module, how):
    profile = module.Profile()
    if how == "runcall":
        assert profile.runcall(workload) == 14
    elif how == "context":
        with profile:
            workload()
    elif how == "enable":
        profile.enable()
        workload()
        profile.disable()
    elif how == "runctx":
        profile.runctx("workload()", globals(), None)
    profile.create_stats()
    return profile


@pytest.mark.parametrize("how", ["runcall", "context", "enable", "runctx"])
def test_same_stats_as_cprofile(how):
    import lowimpact.profile as lprofile

    expected = here(profiled(cProfile, how).stats)
    got = here(profiled(lprofile, how).stats)
    assert got == expected
    assert expected[(__file__, fib.__code__.co_firstlineno, "fib")][:2] == (1, 177)


def test_print_and_dump_stats(tmp_path):
    import lowimpact.profile as lprofile

    profile = profiled(lprofile, "runcall")
    out = io.StringIO()
    saved, sys.stdout = sys.stdout, out
    try:
        profile.print_stats("tottime")
    finally:
        sys.stdout = saved
    assert "Ordered by: internal time" in out.getvalue()
    assert "177/1" in out.getvalue() and "(fib)" in out.getvalue()
    path = tmp_path / "api.prof"
    profile.dump_stats(str(path))
    with open(path, "rb") as f:
        assert marshal.load(f) == profile.stats
    assert pstats.Stats(str(path)).total_calls == sum(v[1] for v in profile.stats.values())


def test_clear_and_reuse():
    import lowimpact.profile as lprofile

    profile = lprofile.Profile()
    profile.runcall(fib, 5)
    profile.clear()
    profile.runcall(fib, 3)
    profile.create_stats()
    counts = [v[:2] for k, v in profile.stats.items() if k[2] == "fib"]
    assert counts == [(1, 5)]


def test_thread_started_while_profiling():
    import lowimpact.profile as lprofile

    def worker():
        for _ in range(3):
            fib(6)

    with lprofile.Profile() as profile:
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    profile.create_stats()
    fib_stats = [v for k, v in profile.stats.items() if k[2] == "fib"][0]
    # 3 x fib(6) = 3 x 25 calls, 3 of them primitive.
    assert fib_stats[:2] == (3, 75)


def test_no_custom_timer():
    import lowimpact.profile as lprofile

    with pytest.raises(TypeError, match="no custom timer"):
        lprofile.Profile(timer=lambda: 0)
    with pytest.raises(ValueError, match="clock must be 'wall' or 'cpu'"):
        lprofile.Profile(clock="sundial")


def test_tool_id_in_use_is_named(M):
    import lowimpact.profile as lprofile

    M.use_tool_id(2, "someone else")
    try:
        with pytest.raises(ValueError, match="tool id 2.*someone else"):
            lprofile.Profile().enable()
    finally:
        M.free_tool_id(2)


def test_formats_need_the_tree(tmp_path):
    import lowimpact.profile as lprofile

    profile = lprofile.Profile()
    profile.runcall(fib, 3)
    with pytest.raises(ValueError, match="needs Profile\\(tree=True\\)"):
        profile.write("svg", io.StringIO())
