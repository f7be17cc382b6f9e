"""Call counts and callers equal cProfile's on the same programs, and the
times add up."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from profile_helpers import PROGRAMS, counts, load, needs_engine, profile_both, python

pytestmark = needs_engine

JSON_DIR = os.path.dirname(json.__file__) + os.sep


@pytest.mark.parametrize("program", ["recursive.py", "generators.py", "classes.py",
                                     "exceptions.py", "jsonround.py"])
def test_counts_and_callers_equal_cprofiles(program, tmp_path):
    oracle, stats = profile_both(program, tmp_path)
    scope = [str(PROGRAMS / program), JSON_DIR]
    expected, got = counts(oracle, scope), counts(stats, scope)
    assert got == expected
    # Not vacuous: the program's functions and C calls are in it.
    assert any(key[0] == "~" for key in expected)
    assert sum(1 for key in expected if key[0] == str(PROGRAMS / program)) >= 3


def test_recursion_is_counted_as_cprofile_does(tmp_path):
    _oracle, stats = profile_both("recursive.py", tmp_path)
    fib = [v for k, v in stats.items() if k[2] == "fib"][0]
    # fib(15) makes 1973 calls, one of them primitive.
    assert fib[:2] == (1, 1973)


def test_times_are_consistent(tmp_path):
    _oracle, stats = profile_both("recursive.py", tmp_path)
    for key, (cc, nc, tt, ct, callers) in stats.items():
        assert 0 <= tt <= ct + 1e-9, key
        assert sum(v[0] for v in callers.values()) <= nc
    # Every call's own time is somebody's: the own times add up to the
    # total time of the outermost calls (exec and the profiler's disable).
    roots = [v[3] for v in stats.values() if not v[4]]
    assert sum(v[2] for v in stats.values()) == pytest.approx(sum(roots), rel=1e-6)


def test_time_suspended_is_not_the_generators(tmp_path):
    oracle, stats = profile_both("suspended.py", tmp_path)
    for result in (oracle, stats):
        by_name = {k[2]: v for k, v in result.items()}
        assert by_name["ticks"][1] == 5    # a start and four resumptions
        assert by_name["ticks"][3] < 0.05
        assert by_name["main"][3] >= 0.2
    sleep = [v for k, v in stats.items() if k[2] == "<built-in method time.sleep>"][0]
    assert sleep[1] == 4 and sleep[3] >= 0.2


def test_threads_have_their_own_stacks(tmp_path):
    oracle, stats = profile_both("threads.py", tmp_path)
    by_name = {k[2]: (k, v) for k, v in stats.items() if k[0] == str(PROGRAMS / "threads.py")}
    work_key, work = by_name["work"]
    leaf_key, leaf = by_name["leaf"]
    # What the program does, whatever the interleaving: 4 x 1 and 4 x 500,
    # no call counted as recursive and every leaf called by work.
    assert work[:2] == (4, 4)
    assert leaf[:2] == (2000, 2000)
    assert {c: v[:2] for c, v in leaf[4].items()} == {work_key: (2000, 2000)}
    assert leaf[3] <= work[3]
    # The main thread's functions as cProfile counts them.
    main = [(k, v[:2]) for k, v in stats.items() if k[2] == "main"]
    assert main == [(k, v[:2]) for k, v in oracle.items() if k[2] == "main"]


def test_stdlib_json_suite_counts_equal_cprofiles(tmp_path):
    runner = str(Path(__file__).parent / "suite_runner.py")
    python([runner, "cprofile", str(tmp_path / "c")], tmp_path)
    python([runner, "lowimpact", str(tmp_path / "l")], tmp_path)
    expected, got = load(tmp_path / "c"), load(tmp_path / "l")
    assert len(expected) >= 30
    assert got == expected
